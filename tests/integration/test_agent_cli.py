"""`workbench agent` and `workbench tool` as a user runs them: real subprocesses, the embedded
model, the real sandbox."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.cli_run import workbench


@pytest.mark.integration
def test_the_embedded_model_calls_the_calculator_in_a_well_formed_way(default_workspace):
    result = workbench(
        "agent",
        "--model",
        "default",
        "--tools",
        "calculator",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "64",
        "What is 4821 * 379?",
        "--json",
        home=default_workspace.root,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    kinds = [event["kind"] for event in report["trace"]]
    assert kinds[-1] in ("answer", "stopped")
    assert "error" not in kinds  # constrained decoding: every model reply could be used
    actions = [event for event in report["trace"] if event["kind"] == "action"]
    for action in actions:
        assert action["tool"] == "calculator" and isinstance(action["arguments"]["expression"], str)
    assert report["tool_calls"] == len(actions)
    for observation in (e["text"] for e in report["trace"] if e["kind"] == "observation"):
        assert re.fullmatch(r"-?[\d.]+(e[+-]?\d+)?|Error: .+", observation, re.S), observation


@pytest.mark.integration
def test_tool_python_runs_the_sandbox_alone(workspace):
    ok = workbench("tool", "python", "print(6 * 7)", "--json", home=workspace.root)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stdout"] == "42\n"
    refused = workbench(
        "tool", "python", "print(open('/etc/passwd').read())", "--json", home=workspace.root
    )
    data = json.loads(refused.stdout)
    assert refused.returncode == 1 and not data["ok"]
    assert data["error"] == "refused: reading /etc/passwd is outside the sandbox folder"
    calc = workbench("tool", "calculator", "2^10", home=workspace.root)
    assert calc.stdout.strip() == "1024"
    bad = workbench("agent", "--tools", "browser", "hi", "--json", home=workspace.root)
    assert bad.returncode == 2 and "browser" in json.loads(bad.stdout)["error"]["what"]
