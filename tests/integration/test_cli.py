"""The `workbench` command as a user runs it: real subprocesses, real workspace, real model."""

from __future__ import annotations

import json

import pytest

from tests.integration.cli_run import workbench


@pytest.mark.integration
def test_chat_default_model_answers_paris(default_workspace):
    result = workbench(
        "chat",
        "--model",
        "default",
        "--max-new-tokens",
        "24",
        "What is the capital of France?",
        home=default_workspace.root,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


@pytest.mark.integration
def test_chat_json_reports_tokens_and_speed(default_workspace):
    result = workbench(
        "chat",
        "--json",
        "--max-new-tokens",
        "16",
        "What is the capital of France?",
        home=default_workspace.root,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "Paris" in data["text"]
    assert 0 < data["completion_tokens"] <= 16
    assert data["device"] == "cpu"


def test_doctor_json_shows_hardware_and_checks(workspace):
    result = workbench("doctor", "--json", home=workspace.root)
    data = json.loads(result.stdout)
    assert data["hardware"]["cpu_cores"] >= 1
    assert data["hardware"]["libraries"]["torch"]
    names = {c["name"] for c in data["checks"]}
    assert {"torch", "embedded model", "workspace", "job queue"} <= names
    assert result.returncode == (0 if all(c["ok"] for c in data["checks"]) else 1)


def test_unknown_model_is_a_clear_error_without_traceback(workspace):
    result = workbench("chat", "--model", "no-such-model", "hi", home=workspace.root)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no-such-model" in result.stderr
    assert "fix:" in result.stderr


def test_bad_recipe_names_the_field_and_json_error_shape(workspace, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("kind: generate\nprompts: [hi]\nmax_new_tokns: 3\n")
    result = workbench("run", str(recipe), "--json", home=workspace.root)
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert "max_new_tokns" in error["what"]
    assert "max_new_tokens" in error["fix"]
    assert str(recipe) in error["where"]


def test_run_recipe_as_job_then_list_and_show(tiny_artifact, workspace, tmp_path):
    recipe = tmp_path / "gen.yaml"
    recipe.write_text(
        f"kind: generate\nmodel: {tiny_artifact}\nprompts: [hello, world]\n"
        "max_new_tokens: 4\ndevice: cpu\n"
    )
    result = workbench("run", str(recipe), "--json", home=workspace.root)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["answers"] == 2

    listed = json.loads(workbench("jobs", "list", "--json", home=workspace.root).stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    shown = workbench("jobs", "show", job["id"], home=workspace.root)
    assert shown.returncode == 0
    assert "succeeded" in shown.stdout
    assert f"workbench run {job['run_dir']}" in shown.stdout

    missing = workbench("jobs", "show", "20260101-000000-generate-abcdef", home=workspace.root)
    assert missing.returncode == 2
    assert "workbench jobs list" in missing.stderr


def test_models_list_shows_default_and_artifacts(tiny_artifact, workspace):
    rows = json.loads(workbench("models", "list", "--json", home=workspace.root).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["default"]["prepared"] is False
    assert by_name[tiny_artifact]["variant"] == "base"


def test_preparing_a_missing_folder_fails_at_once_without_a_job(workspace, tmp_path):
    result = workbench("models", "prepare", str(tmp_path / "nope"), home=workspace.root)
    assert result.returncode == 2
    assert str(tmp_path / "nope") in result.stderr and "fix:" in result.stderr
    listed = workbench("jobs", "list", "--json", home=workspace.root)
    assert json.loads(listed.stdout) == []
