"""Model names resolve to the right place, bad folders are named, models load, prepare jobs work.

Uses the tiny random Llama from conftest; no network (the hub test points at a closed port).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from workbench.errors import Conflict, InvalidInput, NotFound, WorkbenchError
from workbench.hardware import resolve_dtype
from workbench.models import (
    DEFAULT_MODEL,
    derive_artifact_name,
    download_model,
    embedded_gguf_path,
    ensure_default_model,
    list_models,
    load_model,
    resolve_model,
    run_prepare_model,
)
from workbench.recipes import PrepareModelRecipe


def _copy_model(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name not in skip:
            shutil.copy2(item, dst / item.name)
    return dst


def _never() -> bool:
    return False


class Recorder:
    """A progress sink that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)


# --- resolving -------------------------------------------------------------------------------


def test_resolve_artifact_by_name(workspace, tiny_artifact):
    ref = resolve_model(tiny_artifact, workspace)
    assert ref.origin == "artifact"
    assert ref.path == workspace.path_of("tiny")
    assert ref.manifest.kind == "model" and ref.manifest.variant == "base"


def test_resolve_local_folder(workspace, tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir), workspace)
    assert ref.origin == "folder"
    assert ref.path == tiny_model_dir.resolve()
    assert ref.manifest is None


@pytest.mark.parametrize(
    ("name", "hub", "hub_id"),
    [
        (
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "huggingface",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
        ),
        (
            "modelscope:Shanghai_AI_Laboratory/internlm2_5-1_8b-chat",
            "modelscope",
            "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat",
        ),
    ],
)
def test_resolve_hub_id_shape(workspace, name, hub, hub_id):
    ref = resolve_model(name, workspace)
    assert (ref.origin, ref.hub, ref.hub_id) == ("hub", hub, hub_id)


def test_unknown_name_lists_known_models_and_accepted_forms(workspace, tiny_artifact):
    with pytest.raises(NotFound) as err:
        resolve_model("no-such-model", workspace)
    text = str(err.value)
    assert "no-such-model" in text
    assert "tiny" in text and "default" in text  # the known models
    assert "hub id" in text and "local Hugging Face model folder" in text


def test_missing_path_says_no_folder(workspace, tmp_path):
    with pytest.raises(NotFound, match="no folder"):
        resolve_model(str(tmp_path / "nowhere" / "model"), workspace)


def test_folder_without_config_is_named(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "no-config", skip=("config.json",))
    with pytest.raises(InvalidInput) as err:
        resolve_model(str(folder), workspace)
    assert "has no config.json" in err.value.what
    assert str(folder) in err.value.where


def test_folder_with_broken_config_is_named(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "broken-config")
    (folder / "config.json").write_text('{"model_type": "llama",', "utf-8")
    with pytest.raises(InvalidInput) as err:
        resolve_model(str(folder), workspace)
    assert "config.json" in err.value.what
    assert str(folder / "config.json") == err.value.where


def test_folder_without_weights_is_named(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "no-weights", skip=("model.safetensors",))
    with pytest.raises(InvalidInput) as err:
        resolve_model(str(folder), workspace)
    assert "no weights" in err.value.what
    assert str(folder) == err.value.where


def test_an_adapter_resolves_and_one_without_a_base_is_refused_when_loaded(workspace):
    with workspace.create("adapter", "lora-1") as staging:
        (staging / "adapter_config.json").write_text("{}", "utf-8")
    assert resolve_model("lora-1", workspace).origin == "adapter"
    with pytest.raises(WorkbenchError, match="does not record its base model"):
        load_model("lora-1", workspace)


def test_dataset_artifact_is_not_a_model(workspace):
    with workspace.create("dataset", "alpaca-mini") as staging:
        (staging / "data.jsonl").write_text("{}\n", "utf-8")
    with pytest.raises(InvalidInput, match="dataset artifact, not a model"):
        resolve_model("alpaca-mini", workspace)


# --- loading ---------------------------------------------------------------------------------


def test_load_on_cpu_in_float32(workspace, tiny_artifact):
    import torch

    loaded = load_model(tiny_artifact, workspace, device="cpu", dtype="float32")
    assert (loaded.device, loaded.dtype) == ("cpu", "float32")
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None
    assert loaded.load_seconds < 30


def test_load_with_auto_dtype_follows_the_hardware(workspace, tiny_model_dir):
    import torch

    loaded = load_model(str(tiny_model_dir), workspace, device="cpu", dtype="auto")
    expected = resolve_dtype("auto", "cpu")
    assert loaded.dtype == expected
    assert next(loaded.model.parameters()).dtype == getattr(torch, expected)


def test_pad_token_falls_back_to_eos(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "no-pad")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config), "utf-8")
    loaded = load_model(str(folder), workspace, device="cpu", dtype="float32")
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token


def test_corrupt_weights_name_the_folder(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download
    with pytest.raises(WorkbenchError) as err:
        load_model(str(folder), workspace, device="cpu", dtype="float32")
    assert err.value.where == str(folder)
    assert "again" in err.value.fix


def test_remote_code_needs_consent(workspace, tiny_model_dir, tmp_path):
    folder = _copy_model(tiny_model_dir, tmp_path / "internlm2-like")
    config = json.loads((folder / "config.json").read_text("utf-8"))
    config.update(
        model_type="internlm2",
        auto_map={"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
    )
    (folder / "config.json").write_text(json.dumps(config), "utf-8")
    with pytest.raises(WorkbenchError, match="trust_remote_code") as err:
        load_model(str(folder), workspace, device="cpu", dtype="float32")
    assert "only for models you trust" in err.value.fix


# --- hub -------------------------------------------------------------------------------------


def test_closed_hub_fails_fast_and_names_the_endpoint(workspace, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    ref = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", workspace)
    started = time.perf_counter()
    with pytest.raises(WorkbenchError) as err:
        download_model(ref, workspace)
    assert time.perf_counter() - started < 20
    assert "http://127.0.0.1:9" in err.value.what and "HF_ENDPOINT" in err.value.where
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in err.value.what
    assert "hf-mirror.com" in err.value.fix and "ModelScope" in err.value.fix


def test_modelscope_without_its_package_says_how_to_install(workspace):
    import importlib.util

    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("modelscope is installed here")
    ref = resolve_model("modelscope:Shanghai_AI_Laboratory/internlm2_5-1_8b-chat", workspace)
    with pytest.raises(WorkbenchError) as err:
        download_model(ref, workspace)
    assert "pip install modelscope" in err.value.fix


# --- the prepare job -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2-360M-Instruct"),
        ("modelscope:Shanghai_AI_Laboratory/internlm2_5-7b-chat", "internlm2_5-7b-chat"),
        ("/data/models/my model (v2)!/", "my-model-v2"),
        ("..", "model"),
    ],
)
def test_derived_artifact_names_are_valid(model, name):
    assert derive_artifact_name(model) == name


def test_prepare_from_folder_records_source_and_refuses_a_second_copy(workspace, tiny_model_dir):
    progress = Recorder()
    recipe = PrepareModelRecipe(model=str(tiny_model_dir), name="tiny-copy")
    result = run_prepare_model(
        recipe,
        workspace=workspace,
        progress=progress,
        should_stop=_never,
        run_dir=None,
        job_id="job-1",
    )
    assert result["artifact"] == "tiny-copy" and result["size_mb"] >= 0
    manifest = workspace.get("tiny-copy")
    assert (manifest.kind, manifest.variant) == ("model", "base")
    assert manifest.source == str(tiny_model_dir)
    assert manifest.job == "job-1" and manifest.recipe["model"] == str(tiny_model_dir)
    assert (Path(result["path"]) / "model.safetensors").is_file()
    assert progress.calls and progress.calls[-1]["step"] == progress.calls[-1]["total"]
    before = sorted(p.name for p in Path(result["path"]).iterdir())

    with pytest.raises(Conflict):
        run_prepare_model(
            recipe,
            workspace=workspace,
            progress=progress,
            should_stop=_never,
            run_dir=None,
            job_id="job-2",
        )
    assert workspace.get("tiny-copy").job == "job-1"
    assert sorted(p.name for p in Path(result["path"]).iterdir()) == before
    assert (
        load_model("tiny-copy", workspace, device="cpu", dtype="float32").ref.origin == "artifact"
    )


def test_prepare_derives_the_name(workspace, tiny_model_dir):
    recipe = PrepareModelRecipe(model=str(tiny_model_dir))
    result = run_prepare_model(
        recipe,
        workspace=workspace,
        progress=Recorder(),
        should_stop=_never,
        run_dir=None,
        job_id="",
    )
    assert result["artifact"] == "tiny-llama" and workspace.exists("tiny-llama")


def test_prepare_stopped_leaves_nothing(workspace, tiny_model_dir):
    recipe = PrepareModelRecipe(model=str(tiny_model_dir), name="never-made")
    result = run_prepare_model(
        recipe,
        workspace=workspace,
        progress=Recorder(),
        should_stop=lambda: True,
        run_dir=None,
        job_id="",
    )
    assert result["stopped"] is True
    assert not workspace.exists("never-made")
    assert not any((workspace.root / ".staging").iterdir())


# --- the default model without converting it ---------------------------------------------------


def test_embedded_gguf_is_installed():
    path = embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6


def test_list_models_shows_default_unprepared_and_artifacts(workspace, tiny_artifact):
    rows = list_models(workspace)
    assert rows[0]["name"] == DEFAULT_MODEL and rows[0]["prepared"] is False
    assert "first use" in rows[0]["state"]
    tiny = next(r for r in rows if r["name"] == "tiny")
    assert tiny["prepared"] is True and tiny["variant"] == "base" and tiny["size_mb"] > 0


def test_ensure_default_waits_for_another_preparer(workspace, tiny_model_dir):
    """A second caller blocks on the lock, then finds the model made by the first: no reconversion."""
    found: list[Path] = []
    with workspace.lock(f"prepare-{DEFAULT_MODEL}"):  # as if another process were converting
        waiter = threading.Thread(target=lambda: found.append(ensure_default_model(workspace)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # it waits instead of converting alongside
        with workspace.create("model", DEFAULT_MODEL, variant="base", source="test") as staging:
            for item in tiny_model_dir.iterdir():
                shutil.copy2(item, staging / item.name)
    waiter.join(timeout=20)
    assert not waiter.is_alive()
    assert found == [workspace.path_of(DEFAULT_MODEL)]
    assert workspace.get(DEFAULT_MODEL).source == "test"
