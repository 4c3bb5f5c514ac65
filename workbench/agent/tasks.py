"""The bundled agent task set and its evaluation: the plain model against the same model as an
agent with tools.

    tasks = load_tasks()                            # assets/agent/tasks.jsonl
    report = evaluate_agent(engine, tasks, modes=("plain", "agent"))
    report["summary"]   # {"plain": {"solved": 2, "total": 12, "rate": 0.17}, "agent": {...}}

Each task is {id, category (arithmetic | docs | data), question, answer, check (number |
contains), tools}. Arithmetic needs the calculator, docs questions need the bundled documents
(assets/agent/docs/, facts that no model knows), data tasks need the interpreter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput
from workbench.generate import GenerationSettings

TASKS_FILE = Path(__file__).resolve().parents[2] / "assets" / "agent" / "tasks.jsonl"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class AgentTask:
    id: str
    category: str
    question: str
    answer: str
    check: str = "contains"
    tools: list[str] = field(default_factory=list)


def load_tasks(path: Path | str = TASKS_FILE) -> list[AgentTask]:
    """Tasks from a JSONL file (one object per line).

    Raises:
        InvalidInput: a line that is not JSON or lacks a field, with its line number.
    """
    tasks = []
    for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            tasks.append(AgentTask(**data))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InvalidInput(
                f"Line {number} is not an agent task: {exc}",
                where=f"{path}:{number}",
                fix="Each line is {id, category, question, answer, check, tools}.",
            ) from exc
    return tasks


def is_correct(task: AgentTask, answer: str | None) -> bool:
    """number: some number in the answer equals the expected one; contains: the expected text
    appears in the answer (case-insensitive)."""
    if not answer:
        return False
    if task.check == "number":
        expected = float(task.answer)
        for found in NUMBER.findall(answer):
            try:
                value = float(found.replace(",", ""))
            except ValueError:
                continue
            if abs(value - expected) <= 1e-6 * max(1.0, abs(expected)):
                return True
        return False
    return task.answer.lower() in answer.lower()


def answer_plain(engine: Any, task: AgentTask, settings: GenerationSettings) -> dict:
    started = time.perf_counter()
    messages = [{"role": "user", "content": task.question}]
    text = engine.chat(messages, settings).text()
    return {"answer": text, "tool_calls": 0, "seconds": time.perf_counter() - started}


def answer_agent(engine: Any, task: AgentTask, settings: GenerationSettings, **options: Any):
    from workbench.agent.loop import solve
    from workbench.agent.tools import make_tools

    result = solve(
        engine, task.question, tools=make_tools(task.tools), settings=settings, **options
    )
    return {
        "answer": result.answer,
        "tool_calls": result.tool_calls,
        "seconds": result.seconds,
        "trace": result.to_dict()["trace"],
    }


MODES: dict[str, Callable[..., dict]] = {"plain": answer_plain, "agent": answer_agent}


def evaluate_agent(
    engine: Any,
    tasks: list[AgentTask],
    *,
    modes: tuple[str, ...] = ("plain", "agent"),
    protocol: str = "react",
    max_steps: int = 4,
    max_new_tokens: int = 128,
    progress: Callable[..., None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Answer every task in every mode; rows per (task, mode) and a summary per mode.

    Raises:
        InvalidInput: an unknown mode, or no tasks.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not tasks:
        raise InvalidInput(
            f"Unknown mode(s) {unknown}." if unknown else "There are no tasks to run.",
            where="agent evaluation",
            fix=f"Modes are {', '.join(MODES)}; use the bundled tasks (load_tasks()).",
        )
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    rows, total = [], len(tasks) * len(modes)
    for mode in modes:
        options = {"protocol": protocol, "max_steps": max_steps} if mode == "agent" else {}
        for task in tasks:
            if should_stop is not None and should_stop():
                break
            result = MODES[mode](engine, task, settings, **options)
            rows.append(
                {
                    "task": task.id,
                    "category": task.category,
                    "mode": mode,
                    "correct": is_correct(task, result["answer"]),
                    "answer": (result["answer"] or "")[:300],
                    "expected": task.answer,
                    "tool_calls": result["tool_calls"],
                    "seconds": round(result["seconds"], 2),
                }
            )
            if progress is not None:
                progress(step=len(rows), total=total, message=f"{mode}: {task.id}")
    summary = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        solved = sum(r["correct"] for r in mine)
        summary[mode] = {
            "solved": solved,
            "total": len(mine),
            "rate": round(solved / len(mine), 3) if mine else 0.0,
        }
    return {"rows": rows, "summary": summary, "protocol": protocol, "max_steps": max_steps}
