"""`workbench data ...` as a user runs it: real subprocesses, real files, the embedded tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli_run import workbench

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "assets" / "data" / "instructions_bilingual.jsonl"


@pytest.fixture
def messy_file(tmp_path) -> Path:
    rows = [
        json.dumps(
            {
                "conversations": [
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello!"},
                ]
            }
        ),
        '{"conversations": [',  # line 2: malformed
        json.dumps(
            {
                "conversations": [
                    {"from": "gpt", "value": "I speak first"},
                    {"from": "human", "value": "?"},
                ]
            }
        ),
        json.dumps(
            {
                "conversations": [
                    {"from": "human", "value": "你好"},
                    {"from": "gpt", "value": "你好！"},
                ]
            }
        ),
    ]
    path = tmp_path / "chats.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode() + b"\n")
    return path


@pytest.mark.integration
def test_inspect_json_reports_format_rows_errors_and_token_stats(default_workspace, messy_file):
    result = workbench("data", "inspect", str(messy_file), "--json", home=default_workspace.root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "sharegpt"
    assert (report["rows"], report["valid"], report["invalid"]) == (4, 2, 2)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, ""), (3, "conversations[0]")]
    assert any("BOM" in n for n in report["notices"])
    stats = report["stats"]
    assert stats["rows"] == 2
    assert stats["tokens"]["exact"] is True
    assert stats["tokens"]["max"] > 10  # the template's default system prompt is counted too
    assert stats["language"]["zh"] == 1 and stats["language"]["en"] == 1


def test_inspect_of_a_missing_file_fails_clearly(workspace):
    result = workbench("data", "inspect", "nope.jsonl", home=workspace.root)
    assert result.returncode == 2
    assert "no file or folder" in result.stderr and "Traceback" not in result.stderr


def test_convert_writes_the_rows_it_can_and_keeps_the_rest(workspace, messy_file, tmp_path):
    out = tmp_path / "out.csv"
    result = workbench(
        "data",
        "convert",
        str(messy_file),
        "--to",
        "alpaca",
        "--out",
        str(out),
        "--json",
        home=workspace.root,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["written"], report["refused"]) == (2, 2)
    assert Path(report["rejects"]).is_file()
    again = workbench("data", "inspect", str(out), "--json", "--no-stats", home=workspace.root)
    assert json.loads(again.stdout)["format"] == "alpaca"


def test_self_cognition_import_list_and_export(workspace, tmp_path):
    made = workbench(
        "data",
        "self-cognition",
        "--name",
        "Puyu",
        "--author",
        "Shanghai AI Lab",
        "--out",
        "me",
        "--json",
        home=workspace.root,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["train_rows"] >= 100

    imported = workbench(
        "data",
        "import",
        str(BUNDLED),
        "--name",
        "bilingual",
        "--eval-fraction",
        "0.1",
        "--json",
        home=workspace.root,
    )
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["rejected"] == 0 and result["eval_rows"] > 0

    listed = json.loads(workbench("data", "list", "--json", home=workspace.root).stdout)
    assert {row["name"] for row in listed} == {"me", "bilingual"}

    out = tmp_path / "me.sharegpt.jsonl"
    exported = workbench(
        "data", "export", "me", "--to", "sharegpt", "--out", str(out), home=workspace.root
    )
    assert exported.returncode == 0, exported.stderr
    first = json.loads(out.read_text("utf-8").splitlines()[0])
    assert first["conversations"][0]["from"] == "human"


def test_import_runs_as_a_job_from_a_recipe(workspace, tmp_path):
    recipe = tmp_path / "import.yaml"
    recipe.write_text(
        f"kind: import_data\nsource: {BUNDLED}\nname: from-job\neval_fraction: 0\n", "utf-8"
    )
    result = workbench("run", str(recipe), "--json", home=workspace.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert workspace.get("from-job").metrics["train_rows"] >= 220


def test_an_unreachable_hub_dataset_fails_clearly(workspace):
    env_home = workspace.root
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "data", "inspect", "nobody/no-such-dataset"],
        capture_output=True,
        text=True,
        env={**os.environ, "WORKBENCH_HOME": str(env_home), "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 2
    assert "Could not load the hub dataset 'nobody/no-such-dataset'" in result.stderr
    assert "import them from disk" in result.stderr
