"""Fine-tuning on a 2-layer model: each method learns, resume continues the same curve, merge is exact."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.data.prepare import save_samples
from workbench.errors import InvalidInput, WorkbenchError
from workbench.finetune.batches import build_examples, make_batches
from workbench.finetune.merge import run_merge
from workbench.finetune.trainer import read_probes, run_train
from workbench.models import load_model
from workbench.recipes import MergeRecipe, TrainRecipe

QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Who are you?", "I am Puyu, made by the lab."),
    ("你好", "你好，世界。"),
    ("What is fine-tuning?", "Fine-tuning adapts a pretrained language model to new data."),
]


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


@pytest.fixture
def chat_data(workspace, tiny_artifact) -> str:
    samples = [chat(q, a) for q, a in QA] * 6
    save_samples(workspace, "qa", samples, source="test", eval_fraction=0.2)
    return "qa"


def recipe(**changes) -> TrainRecipe:
    base = {
        "model": "tiny",
        "data": "qa",
        "out": "tiny-lora",
        "max_steps": 8,
        "batch_size": 4,
        "learning_rate": 3e-2,
        "lora_dropout": 0.0,
        "cutoff": 64,
        "warmup_ratio": 0.0,
        "save_every": 3,
    }
    return TrainRecipe(**{**base, **changes})


def losses_of(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if "loss" in e]


def train(workspace, tmp_path, run="run", should_stop=lambda: False, **changes):
    events: list[dict] = []
    result = run_train(
        recipe(**changes),
        workspace=workspace,
        progress=lambda **e: events.append(e),
        should_stop=should_stop,
        run_dir=tmp_path / run,
    )
    return result, events


def test_lora_learns_and_saves_an_adapter_with_its_lineage(workspace, chat_data, tmp_path):
    result, events = train(workspace, tmp_path, probe_prompts=["Who are you?"], probe_every=4)
    losses = losses_of(events)
    assert len(losses) == 8
    assert losses[-1] < losses[0] - 0.1  # a random 2-layer model: a small but clear drop
    assert result["eval_loss"] is not None and result["steps"] == 8
    assert any("eval_loss" in e for e in events)
    steps = [e for e in events if "loss" in e]
    assert all(
        {"lr", "grad_norm", "tokens", "tokens_per_s", "memory_mb", "eta_s"} <= set(e) for e in steps
    )
    assert sum(e["tokens"] for e in steps) == result["train_tokens"]  # each step's own tokens

    manifest = workspace.get("tiny-lora")
    assert manifest.kind == "adapter"
    assert manifest.parents == ["tiny", "qa"]
    assert manifest.recipe["method"] == "lora"
    folder = workspace.path_of("tiny-lora")
    assert (folder / "adapter_model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()

    probes = read_probes(tmp_path / "run")
    assert [(p["step"], p["base"]) for p in probes] == [(0, True), (4, False), (8, False)]

    chatted = load_model("tiny-lora", workspace)  # an adapter is chattable by name
    assert chatted.ref.origin == "adapter"


def test_a_cancelled_run_resumes_on_the_same_curve(workspace, chat_data, tmp_path):
    _, straight = train(workspace, tmp_path, run="straight", out="straight")
    calls = {"n": 0}

    def stop_after_four_steps() -> bool:
        calls["n"] += 1
        return len(losses_of(first)) >= 4

    first: list[dict] = []
    stopped = run_train(
        recipe(out="resumed"),
        workspace=workspace,
        progress=lambda **e: first.append(e),
        should_stop=stop_after_four_steps,
        run_dir=tmp_path / "resumed",
    )
    assert stopped["stopped"] and stopped["step"] == 4
    assert not workspace.exists("resumed")
    assert (tmp_path / "resumed" / "checkpoints" / "step-00004" / "state.json").is_file()

    second: list[dict] = []
    result = run_train(
        recipe(out="resumed"),
        workspace=workspace,
        progress=lambda **e: second.append(e),
        run_dir=tmp_path / "resumed",
    )
    assert any(e.get("resumed") == 4 for e in second)
    assert [e["step"] for e in second if "loss" in e] == [5, 6, 7, 8]
    assert losses_of(first) + losses_of(second) == pytest.approx(losses_of(straight), rel=1e-4)
    assert result["steps"] == 8 and workspace.exists("resumed")


def test_full_fine_tuning_saves_a_model_that_loads(workspace, chat_data, tmp_path):
    result, events = train(workspace, tmp_path, method="full", out="tiny-full", learning_rate=1e-3)
    losses = losses_of(events)
    assert losses[-1] < losses[0]
    manifest = workspace.get("tiny-full")
    assert (manifest.kind, manifest.variant) == ("model", "finetuned")
    loaded = load_model("tiny-full", workspace)
    assert loaded.model.config.num_hidden_layers == 2


def test_qlora_trains_on_a_4bit_base(workspace, chat_data, tmp_path):
    result, events = train(workspace, tmp_path, method="qlora", out="tiny-qlora", max_steps=4)
    assert len(losses_of(events)) == 4
    assert workspace.get("tiny-qlora").recipe["method"] == "qlora"


def test_merge_gives_the_same_logits_as_base_plus_adapter(workspace, chat_data, tmp_path):
    train(workspace, tmp_path)
    run_merge(MergeRecipe(adapter="tiny-lora", out="tiny-merged"), workspace=workspace)
    merged = workspace.get("tiny-merged")
    assert (merged.variant, merged.parents) == ("merged", ["tiny-lora"])
    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    with torch.no_grad():
        # float32: on a CPU with native bf16, load_model's default, the rounding alone differs
        adapted = load_model("tiny-lora", workspace, dtype="float32").model(ids).logits
        plain = load_model("tiny-merged", workspace, dtype="float32").model(ids).logits
        base = load_model("tiny", workspace, dtype="float32").model(ids).logits
    assert torch.allclose(adapted, plain, atol=1e-4)
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapter did change something
    assert (workspace.path_of("tiny-merged") / "tokenizer.json").is_file()


def test_merge_refuses_what_is_not_an_adapter(workspace, tiny_artifact):
    with pytest.raises(InvalidInput, match="not a LoRA adapter"):
        run_merge(MergeRecipe(adapter="tiny", out="x"), workspace=workspace)


def test_continued_pretraining_trains_on_every_token(workspace, tiny_artifact, tmp_path):
    text = "Quantization stores weights in fewer bits so models run faster. " * 12
    save_samples(workspace, "book", [{"text": text}] * 4, source="test")
    result, events = train(workspace, tmp_path, data="book", out="book-lora", max_steps=3)
    assert result["objective"] == "cpt"
    counts = json.loads((tmp_path / "run" / "data_counts.json").read_text())
    assert counts["trained"] == counts["tokens"]
    assert counts["truncated"] == 4  # each document is longer than the cutoff: split, not cut


def test_sft_on_raw_text_is_refused(workspace, tiny_artifact, tmp_path):
    save_samples(workspace, "book", [{"text": "some text"}], source="test")
    with pytest.raises(InvalidInput, match="raw text"):
        train(workspace, tmp_path, data="book", objective="sft")


def test_training_on_a_model_instead_of_a_dataset_is_refused(workspace, tiny_artifact, tmp_path):
    with pytest.raises(InvalidInput, match="not a dataset"):
        train(workspace, tmp_path, data="tiny")


def test_a_taken_output_name_is_refused_before_training(workspace, chat_data, tmp_path):
    with pytest.raises(WorkbenchError, match="exists already"):
        train(workspace, tmp_path, out="qa")


def test_packed_rows_give_the_same_loss_as_separate_rows(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples, counts = build_examples(
        [chat(q, a) for q, a in QA], tokenizer, objective="sft", train_on="assistant", cutoff=64
    )
    common = {"batch_size": 4, "seq_len": 256, "pad_id": 0, "seed": 0, "epoch": 0}
    packed = make_batches(examples, packing=True, **common)
    padded = make_batches(examples, packing=False, **common)
    assert len(packed) == 1 and packed[0].input_ids.shape[0] == 1  # all four fit in one row
    assert packed[0].trained == padded[0].trained == counts["trained"]

    def loss(batch) -> float:
        with torch.no_grad():
            out = model(
                input_ids=batch.input_ids,
                labels=batch.labels,
                position_ids=batch.position_ids,
                attention_mask=batch.attention_mask,
                use_cache=False,
            )
        return out.loss.item()

    assert loss(packed[0]) == pytest.approx(loss(padded[0]), rel=1e-4)
    assert packed[0].input_ids.numel() < padded[0].input_ids.numel()  # no padding spent


def test_running_out_of_memory_is_told_in_plain_words():
    import torch

    from workbench.finetune.trainer import _oom_error, is_out_of_memory

    try:  # the CPU allocator's real failure: far more than any machine has
        torch.empty(2**50, dtype=torch.uint8)
    except RuntimeError as exc:
        assert is_out_of_memory(exc)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    error = _oom_error(TrainRecipe(data="d", out="o", batch_size=8, cutoff=512), "training step 3")
    assert "Out of memory while training step 3" in str(error)
    assert "batch 8 × 512" in str(error) and "resume" in error.fix
