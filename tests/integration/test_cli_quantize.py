"""`workbench quantize` as a user runs it: a real subprocess, a real job worker, the embedded
model. The JSON is the report itself; bad input exits with status 2 and says what to do."""

from __future__ import annotations

import json

import pytest

from tests.integration.cli_run import workbench

QUANTIZE_TIMEOUT = 900  # the int8 report measures perplexity and speed


@pytest.mark.integration
def test_int8_of_the_embedded_model_reports_size_perplexity_and_speed(default_workspace):
    result = workbench(
        "quantize",
        "--model",
        "default",
        "--method",
        "int8",
        "--out",
        "default-int8",
        "--ppl-tokens",
        "256",
        "--speed-tokens",
        "4",
        "--json",
        home=default_workspace.root,
        timeout=QUANTIZE_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    for key in ("size_bytes", "source_size_bytes", "ppl", "source_ppl", "tokens_per_s"):
        assert report[key] > 0, key
    assert report["source_tokens_per_s"] > 0
    assert report["size_bytes"] < 0.5 * report["source_size_bytes"]  # fp32 layers -> int8
    assert report["ppl"] < report["source_ppl"] * 1.02  # int8 barely moves perplexity
    assert any("Paris" in row["quantized"] for row in report["answers"])
    # the artifact chats like any model
    chat = workbench(
        "chat", "--model", "default-int8", "--max-new-tokens", "16",
        "What is the capital of France?", home=default_workspace.root, timeout=300,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    assert "Paris" in chat.stdout
    # and quantizing it again is refused, naming its source
    again = workbench(
        "quantize", "--model", "default-int8", "--method", "int4-rtn", "--out", "twice", "--json",
        home=default_workspace.root, timeout=300,
    )  # fmt: skip
    assert again.returncode == 2
    error = json.loads(again.stdout)["error"]
    assert "already quantized" in error["what"] and "'default'" in error["fix"]


def test_missing_calibration_data_and_unknown_method_are_refused(default_workspace):
    missing = workbench(
        "quantize", "--method", "int4-awq", "--calib", "nope", "--out", "x", "--json",
        home=default_workspace.root, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2
    error = json.loads(missing.stdout)["error"]
    assert "no calibration dataset called 'nope'" in error["what"]
    unknown = workbench(
        "quantize", "--method", "int3", "--out", "x", home=default_workspace.root, timeout=300
    )
    assert unknown.returncode == 2 and "int4-awq" in unknown.stderr  # argparse lists the choices
