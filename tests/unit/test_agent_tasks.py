"""The bundled agent task set: every task is well formed and answerable with its tools, answers
are checked as a person would, and the set runs from the evaluation framework (plain vs agent)."""

from __future__ import annotations

import json

import pytest

from workbench.agent.search import DocumentIndex
from workbench.agent.tasks import AgentTask, evaluate_agent, is_correct, load_tasks
from workbench.agent.tools import BUILTIN_TOOLS, calculate, make_tools
from workbench.errors import InvalidInput
from workbench.evaluate.suites import resolve_tasks
from workbench.evaluate.tasks import KINDS, RunContext

from .test_agent_loop import ScriptedEngine


def test_every_bundled_task_is_solvable_with_its_own_tools():
    tasks = load_tasks()
    assert {t.category for t in tasks} == {"arithmetic", "docs", "data"}
    index = DocumentIndex.from_folder()
    for task in tasks:
        assert task.tools and all(name in BUILTIN_TOOLS for name in task.tools), task.id
        if task.category == "arithmetic":
            expression = task.question.split("What is ")[-1].rstrip("?")
            if "square root" in task.question:
                expression = "sqrt(55225)"
            elif "power" in task.question:
                expression = "2 ^ 20"
            elif "乘以" in task.question:
                expression = "372 * 58"
            assert calculate(expression) == task.answer, task.id
        if task.category == "docs":
            passages = " ".join(p.text for _, p in index.search(task.question, 2))
            assert task.answer.lower() in passages.lower(), task.id


def test_answers_are_checked_by_number_or_by_text():
    number = AgentTask("t", "arithmetic", "q", "1827159", "number")
    assert is_correct(number, "The answer is 1,827,159.")
    assert is_correct(number, "Final: 1827159.0")
    assert not is_correct(number, "18271590") and not is_correct(number, None)
    text = AgentTask("t", "docs", "q", "flint", "contains")
    assert is_correct(text, "It is called Flint.") and not is_correct(text, "flame")


def test_a_broken_task_file_names_its_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "a", "category": "x", "question": "q", "answer": "1"}\n{oops\n')
    with pytest.raises(InvalidInput) as caught:
        load_tasks(path)
    assert caught.value.where == f"{path}:2"


def test_plain_and_agent_modes_are_compared():
    (task,) = [t for t in load_tasks() if t.id == "calc-1"]
    engine = ScriptedEngine(
        [
            "It is about 1.8 million.",
            'Thought: use it\nAction: calculator\nAction Input: {"expression": "4821 * 379"}',
            "Thought: done\nFinal Answer: 1827159",
        ]
    )
    report = evaluate_agent(engine, [task])
    assert report["summary"] == {
        "plain": {"solved": 0, "total": 1, "rate": 0.0},
        "agent": {"solved": 1, "total": 1, "rate": 1.0},
    }
    assert [r["tool_calls"] for r in report["rows"]] == [0, 1]


def test_the_evaluation_framework_runs_the_agent_task_set():
    plain, tools = resolve_tasks(["agent"])
    assert (plain.name, tools.name) == ("agent-plain", "agent-tools")
    sample = next(s for s in tools.samples if s["id"] == "calc-1")
    assert "Action Input:" in KINDS["agent"].prompt(tools, sample)
    assert KINDS["agent"].prompt(plain, sample).endswith("What is 4821 * 379?")
    engine = ScriptedEngine(
        [
            'Thought: use it\nAction: calculator\nAction Input: {"expression": "4821 * 379"}',
            "Thought: done\nFinal Answer: 1827159",
        ]
    )
    (result,) = KINDS["agent"].score(tools, [sample], engine, RunContext())
    assert result.scores == {"accuracy": 1.0} and result.details["tool_calls"] == 1
    assert json.dumps(result.to_dict())  # stored in the eval results as JSON
    assert make_tools(sample["tools"])[0].name == "calculator"


def test_the_evaluation_engine_is_unwrapped_so_local_models_are_constrained():
    class Wrapper:  # what the evaluation runner passes: the engine opened on first use
        def __init__(self, inner):
            self.inner = inner

        def engine(self):
            return self.inner

    inner = ScriptedEngine(["Thought: done\nFinal Answer: 1827159"], backend="local")
    tools = resolve_tasks(["agent-tools"])[0]
    sample = next(s for s in tools.samples if s["id"] == "calc-1")
    (result,) = KINDS["agent"].score(tools, [sample], Wrapper(inner), RunContext())
    assert result.scores == {"accuracy": 1.0}
    assert inner.settings[0].constraint is not None
