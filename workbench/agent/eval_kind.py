"""The agent task set as evaluation tasks, so the Evaluate page (and `workbench eval`) can compare
the plain model with the same model as an agent:

    workbench eval --models default --tasks agent        # agent-plain and agent-tools

`agent-plain` asks each question as a plain chat turn; `agent-tools` runs the agent loop with
the task's tools (ReAct; constrained decoding on local engines). Both score `accuracy` with the
task set's own check (number or contains) and keep the tool calls and trace in the details.
Importing this module adds the `agent` kind to workbench.evaluate.tasks.KINDS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from workbench.agent.tasks import TASKS_FILE, AgentTask, answer_agent, answer_plain, is_correct
from workbench.agent.tasks import load_tasks as load_agent_tasks
from workbench.errors import InvalidInput
from workbench.evaluate.tasks import (
    KINDS,
    RunContext,
    SampleResult,
    Task,
    bad_sample,
    mean_metrics,
    render_messages,
)
from workbench.generate import GenerationSettings

AGENT_TASKS = {
    "agent-plain": ("plain", "Agent task set answered by the plain model (no tools)."),
    "agent-tools": ("agent", "Agent task set answered as an agent with tools (ReAct)."),
}
MODES = ("plain", "agent")


def agent_task(name: str) -> Task:
    """`agent-plain` or `agent-tools` over assets/agent/tasks.jsonl."""
    mode, description = AGENT_TASKS[name]
    samples = [asdict(task) for task in load_agent_tasks()]
    return Task(
        name=name,
        kind="agent",
        samples=samples,
        capability="agent",
        max_new_tokens=128,
        description=description,
        source=str(TASKS_FILE.relative_to(TASKS_FILE.parents[2])),
        options={"mode": mode, "protocol": "react", "max_steps": 4},
    )


class AgentKind:
    name = "agent"
    version = 2  # 2: local engines constrained inside evaluation runs
    metrics = ("accuracy",)
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    def check(self, task: Task) -> None:
        if task.options.get("mode") not in MODES:
            raise InvalidInput(
                f"Task {task.name!r}: mode {task.options.get('mode')!r} is not plain or agent.",
                where=task.source or task.name,
                fix="Set options.mode to plain or agent.",
            )
        for sample in task.samples:
            for key in ("question", "answer"):
                if not str(sample.get(key, "")).strip():
                    raise bad_sample(task, sample, f"has no `{key}`.", f"Give each a {key}.")

    def prompt(self, task: Task, sample: dict) -> str:
        if task.options["mode"] == "plain":
            return render_messages([{"role": "user", "content": sample["question"]}])
        from workbench.agent.protocols import PROTOCOLS
        from workbench.agent.tools import make_tools

        protocol = PROTOCOLS[task.options.get("protocol", "react")]()
        tools = make_tools(sample.get("tools", []))
        transcript = [{"role": "user", "content": sample["question"]}]
        return render_messages(protocol.messages(tools, transcript, ""))

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        settings = GenerationSettings(max_new_tokens=task.max_new_tokens)
        # The evaluation runner hands over an EvalEngine; the agent needs the engine inside it
        # (a local engine gets constrained decoding, an endpoint native function calling).
        opener = getattr(engine, "engine", None)
        engine = opener() if callable(opener) else engine
        for sample in samples:
            if ctx.should_stop():
                return
            item = AgentTask(
                **{k: sample[k] for k in AgentTask.__dataclass_fields__ if k in sample}
            )
            if task.options["mode"] == "plain":
                result = answer_plain(engine, item, settings)
            else:
                options = {
                    k: task.options[k] for k in ("protocol", "max_steps") if k in task.options
                }
                result = answer_agent(engine, item, settings, **options)
            yield SampleResult(
                id=str(sample["id"]),
                scores={"accuracy": float(is_correct(item, result["answer"]))},
                output=result["answer"] or "",
                target=item.answer,
                details={"tool_calls": result["tool_calls"], "trace": result.get("trace", [])},
            )

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


KINDS["agent"] = AgentKind()
