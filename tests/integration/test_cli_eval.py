"""`workbench eval` as a user runs it: a real subprocess, the job worker, the embedded model."""

from __future__ import annotations

import json

import pytest

from tests.integration.cli_run import workbench


@pytest.mark.integration
def test_eval_json_then_everything_from_the_cache(default_workspace, tmp_path):
    task = tmp_path / "sky.jsonl"
    task.write_text(
        '{"question": "What color is the sky on a clear day?", "choices": ["Blue", "Green"], '
        '"answer": 0}\n{"question": "2+2?", "choices": ["5", "4"], "answer": "B"}\n',
        "utf-8",
    )
    args = ["eval", "--models", "default,no-such-model", "--tasks", f"knowledge-en,{task}"]
    result = workbench(*args, "--limit", "8", "--json", home=default_workspace.root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {(r["task"], r["metric"]): r for r in data["results"]}
    acc = rows[("knowledge-en", "acc")]
    assert acc["model"] == "default" and (acc["n"], acc["samples"]) == (8, 8)
    assert acc["low"] <= acc["value"] <= acc["high"]
    assert rows[("sky", "acc")]["value"] == 1.0  # two easy questions the model gets right
    (error,) = data["errors"]
    assert error["model"] == "no-such-model" and "No model called" in error["error"]
    assert data["computed"] == 10 and data["cached"] == 0
    manifest = json.loads(
        (default_workspace.root / "evals" / data["artifact"] / "manifest.json").read_text("utf-8")
    )
    assert manifest["parents"] == ["default"]

    again = workbench(*args, "--limit", "8", "--json", home=default_workspace.root)
    second = json.loads(again.stdout)
    assert (second["computed"], second["cached"]) == (0, 10)
    assert second["results"] == data["results"]

    table = workbench(*args, "--limit", "8", home=default_workspace.root)
    assert table.returncode == 0
    assert "knowledge-en" in table.stdout and "95% CI" in table.stdout
    assert "failed: no-such-model" in table.stderr


def test_bad_task_file_is_refused_before_any_job(workspace, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": 3}\n', "utf-8")
    result = workbench("eval", "--models", "default", "--tasks", str(bad), home=workspace.root)
    assert result.returncode == 2
    assert "out of range" in result.stderr and f"{bad}:1" in result.stderr
    unknown = workbench(
        "eval", "--models", "default", "--tasks", "knowlege-en", "--json", home=workspace.root
    )
    assert unknown.returncode == 2
    assert "No task called 'knowlege-en'" in json.loads(unknown.stdout)["error"]["what"]
    assert not (workspace.root / "runs").exists() or not any((workspace.root / "runs").iterdir())


def test_list_and_show_prompt(workspace):
    listed = json.loads(workbench("eval", "--list", "--json", home=workspace.root).stdout)
    names = {task["name"] for task in listed["tasks"]}
    assert {"knowledge-zh", "arithmetic-en", "identity-zh", "instructions-en"} <= names
    shown = workbench("eval", "--show-prompt", "arithmetic-zh", home=workspace.root)
    assert "请一步一步算出来，最后一行写“答案：<数字>”。" in shown.stdout


@pytest.mark.integration
def test_answers_in_flight_equal_answers_one_by_one(default_workspace):
    from workbench.evaluate.engines import EvalEngine
    from workbench.evaluate.tasks import generate_all

    prompts = [
        "What is the capital of France?",
        "你好，请介绍一下你自己。",
        "Name a colour.",
        "2+2?",
    ]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    engine = EvalEngine("default", default_workspace)
    try:
        one_by_one = list(generate_all(engine, conversations, 12, window=1))
        together = list(generate_all(engine, conversations, 12, window=4))
    finally:
        engine.close()
    assert all(one_by_one) and "Paris" in one_by_one[0]
    assert together == one_by_one
