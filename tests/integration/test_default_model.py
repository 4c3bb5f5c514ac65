"""The embedded SmolLM2 end to end: converted once from its GGUF, saved cleanly, answers well.

The conversion runs once per test session (the `prepared_default_model` fixture, ~40 s on 2 CPU
cores); every test here then works on hard-linked copies of it.
"""

from __future__ import annotations

import json
import time

import pytest

from workbench.generate import GenerationSettings, build_messages, chat_once, run_generate
from workbench.models import (
    DEFAULT_MODEL,
    EMBEDDED_SOURCE,
    ensure_default_model,
    list_models,
    load_model,
    resolve_model,
)
from workbench.recipes import GenerateRecipe
from workbench.workspace import Workspace

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


def test_the_artifact_is_a_clean_safetensors_model(prepared_default_model):
    folder = prepared_default_model
    assert folder.name == DEFAULT_MODEL
    for name in (
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text("utf-8"))
    assert "quantization_config" not in config  # would make every later load "gguf-quantized"
    assert config["dtype"] == "float32" and config["num_hidden_layers"] == 30
    generation = json.loads((folder / "generation_config.json").read_text("utf-8"))
    assert generation["eos_token_id"] == 2 and generation["pad_token_id"] == 2
    template = folder / "chat_template.jinja"
    text = (
        template.read_text("utf-8")
        if template.is_file()
        else (json.loads((folder / "tokenizer_config.json").read_text("utf-8"))["chat_template"])
    )
    assert "<|im_start|>" in text and "add_generation_prompt" in text
    assert (folder / "model.safetensors").stat().st_size > 400e6  # float32, not the 98 MB Q4_1


def test_the_manifest_records_kind_variant_and_source(default_workspace):
    manifest = default_workspace.get(DEFAULT_MODEL)
    assert (manifest.kind, manifest.variant) == ("model", "base")
    assert manifest.source == EMBEDDED_SOURCE
    assert manifest.metrics["params_m"] == pytest.approx(134.5, abs=1)
    ref = resolve_model(DEFAULT_MODEL, default_workspace)
    assert ref.origin == "embedded" and ref.path == default_workspace.path_of(DEFAULT_MODEL)
    (row,) = [r for r in list_models(default_workspace) if r["name"] == DEFAULT_MODEL]
    assert row["prepared"] is True and row["size_mb"] > 400


def test_default_model_knows_the_capital_of_france(default_workspace):
    loaded = load_model(DEFAULT_MODEL, default_workspace, device="cpu")
    assert loaded.load_seconds < 10
    result = chat_once(loaded, build_messages(QUESTION), GenerationSettings(max_new_tokens=24))
    assert "Paris" in result.text
    assert result.finish_reason == "stop"  # it ends its turn with <|im_end|>
    assert result.completion_tokens <= 24


def test_a_second_ensure_does_not_convert_again(prepared_default_model):
    weights = prepared_default_model / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    again = ensure_default_model(Workspace(prepared_default_model.parents[1]))
    assert time.perf_counter() - started < 1
    assert again == prepared_default_model
    assert weights.stat().st_mtime_ns == before


def test_generate_job_with_the_default_model(default_workspace, tmp_path):
    recipe = GenerateRecipe(
        model=DEFAULT_MODEL, prompts=[QUESTION], max_new_tokens=24, device="cpu", dtype="float32"
    )
    result = run_generate(
        recipe,
        workspace=default_workspace,
        progress=lambda **_: None,
        should_stop=lambda: False,
        run_dir=tmp_path,
        job_id="it-1",
    )
    (line,) = [json.loads(x) for x in (tmp_path / "outputs.jsonl").read_text("utf-8").splitlines()]
    assert "Paris" in line["response"]
    assert result["answers"] == 1 and result["tokens_per_s"] > 0
