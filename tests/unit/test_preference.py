"""Preference tuning on a 2-layer model: the DPO and ORPO numbers against a hand computation,
a few steps of each method (loss goes down, files written, resume continues), and the errors a
person meets (pairs from a 135M model's arena are in test_prefs_data.py)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from workbench.data.prefs import save_pairs
from workbench.errors import InvalidInput, WorkbenchError
from workbench.finetune.preference import (
    REFERENCE_FILE,
    build_pairs,
    dpo_loss,
    orpo_loss,
    pair_batches,
    sequence_logps,
)
from workbench.finetune.trainer import run_train
from workbench.recipes import TrainRecipe

GOOD_BAD = [
    ("What is the capital of France?", "The capital of France is Paris.", "No idea."),
    ("Who are you?", "I am Puyu, a helpful assistant.", "Go away."),
    ("你好", "你好，世界。", "不想说。"),
    ("What is fine-tuning?", "Fine-tuning adapts a pretrained model to new data.", "Boring."),
]


def pair(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": chosen, "rejected": rejected}


@pytest.fixture
def prefs(workspace, tiny_artifact) -> str:
    samples = [{**pair(*p), "row": i} for i, p in enumerate(GOOD_BAD * 4, 1)]
    save_pairs(workspace, "prefs", samples, source="test", steps=[], eval_fraction=0.25)
    return "prefs"


def recipe(**changes) -> TrainRecipe:
    base = {
        "model": "tiny", "data": "prefs", "out": "tiny-dpo", "objective": "dpo",
        "max_steps": 6, "batch_size": 4, "learning_rate": 2e-2, "lora_dropout": 0.0,
        "cutoff": 64, "warmup_ratio": 0.0, "save_every": 3, "beta": 0.5,
    }  # fmt: skip
    return TrainRecipe(**{**base, **changes})


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


def losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if "loss" in e]


def hand_logp(model, tokenizer, sample: dict, which: str) -> tuple[float, int]:
    """Sum of log-probabilities of the answer tokens from the full logits, token by token, on
    the unpadded row (the answer tokens are those the chat-template mask trains)."""
    from workbench.data.template import render_sample

    messages = [*sample["prompt"], {"role": "assistant", "content": sample[which]}]
    rendered = render_sample(tokenizer, {"messages": messages}, train_on="last")
    ids = rendered.input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    answer = [p for p, label in enumerate(rendered.labels) if label != -100]
    assert answer and answer[0] > 0
    total = sum(float(logits[p - 1][ids[p]] - torch.logsumexp(logits[p - 1], 0)) for p in answer)
    return total, len(answer)


def test_log_probs_and_losses_match_a_hand_computation(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    samples = [pair(*p) for p in GOOD_BAD[:3]]
    examples, counts = build_pairs(samples, tokenizer, cutoff=256)
    assert counts["examples"] == 3 and counts["empty"] == 0
    batch = pair_batches(examples, [0, 1, 2], 3, tokenizer.pad_token_id)[0]
    with torch.no_grad():
        sums, n_tokens = sequence_logps(model, batch, "cpu")
    for i, sample in enumerate(samples):
        for row, which in ((i, "chosen"), (i + 3, "rejected")):
            expected, n = hand_logp(model, tokenizer, sample, which)
            assert float(sums[row]) == pytest.approx(expected, abs=1e-3)
            assert int(n_tokens[row]) == n  # right padding changes nothing

    # DPO: -log sigmoid(beta * ((pc - rc) - (pr - rr))), rewards beta * (p - r)
    pc, pr = sums[:3].double(), sums[3:].double()
    rc, rr = pc - torch.tensor([0.5, -1.0, 2.0]), pr + torch.tensor([0.25, 0.0, -3.0])
    loss, good, bad = dpo_loss(pc, pr, rc, rr, beta=0.1)
    for i in range(3):
        z = 0.1 * ((pc[i] - rc[i]) - (pr[i] - rr[i]))
        assert float(loss[i]) == pytest.approx(math.log1p(math.exp(-float(z))), rel=1e-9)
        assert float(good[i]) == pytest.approx(0.1 * float(pc[i] - rc[i]))
        assert float(bad[i]) == pytest.approx(0.1 * float(pr[i] - rr[i]))
    assert float(loss[0]) == pytest.approx(math.log1p(math.exp(-0.1 * 0.75)))

    # ORPO: mean NLL of chosen - lambda * log sigmoid(log odds chosen - log odds rejected)
    nc, nr = n_tokens[:3].double(), n_tokens[3:].double()
    loss, good, bad, ratio = orpo_loss(pc, pr, nc, nr, beta=0.2)
    for i in range(3):
        a, b = float(pc[i] / nc[i]), float(pr[i] / nr[i])
        odds = (a - math.log(1 - math.exp(a))) - (b - math.log(1 - math.exp(b)))
        log_sigmoid = -math.log1p(math.exp(-odds))
        assert float(ratio[i]) == pytest.approx(log_sigmoid, rel=1e-6)
        assert float(loss[i]) == pytest.approx(-a - 0.2 * log_sigmoid, rel=1e-6)
        assert float(good[i]) == pytest.approx(0.2 * a) and float(bad[i]) == pytest.approx(0.2 * b)


def test_dpo_with_lora_learns_writes_its_files_and_scores_the_held_out_pairs(
    workspace, prefs, tmp_path
):
    result, events = train(workspace, tmp_path)
    curve = losses(events)
    assert len(curve) == 6
    assert curve[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    assert curve[-1] < curve[0] - 0.1
    steps = [e for e in events if "loss" in e]
    assert {"reward_chosen", "reward_rejected", "reward_margin", "reward_acc"} <= set(steps[-1])
    assert steps[-1]["reward_margin"] > 0 and steps[-1]["reward_acc"] > 0.5
    held = [e["pref_acc"] for e in events if "pref_acc" in e]
    assert len(held) == 2  # before training and at the end
    assert result["pref_acc_before"] == pytest.approx(held[0], abs=1e-4)
    assert result["pref_acc_after"] == pytest.approx(held[-1], abs=1e-4)
    assert result["objective"] == "dpo" and result["heldout_pairs"] == 4

    manifest = workspace.get("tiny-dpo")
    assert manifest.kind == "adapter" and manifest.parents == ["tiny", "prefs"]
    assert manifest.recipe["objective"] == "dpo" and manifest.recipe["beta"] == 0.5
    assert manifest.metrics["pref_acc_after"] == result["pref_acc_after"]
    assert (workspace.path_of("tiny-dpo") / "adapter_model.safetensors").is_file()
    stored = json.loads((tmp_path / "run" / REFERENCE_FILE).read_text())
    assert len(stored["train"]["logps"]) == 12 and len(stored["heldout"]["logps"]) == 4


def test_a_stopped_dpo_run_resumes_on_the_same_curve(workspace, prefs, tmp_path):
    _, straight = train(workspace, tmp_path, run="straight", out="straight")
    first: list[dict] = []
    stopped = run_train(
        recipe(out="resumed"),
        workspace=workspace,
        progress=lambda **e: first.append(e),
        should_stop=lambda: len(losses(first)) >= 3,
        run_dir=tmp_path / "resumed",
    )
    assert stopped == {"stopped": True, "step": 3, "total_steps": 6}
    assert (tmp_path / "resumed" / "checkpoints" / "step-00003" / "state.json").is_file()
    second: list[dict] = []
    result = run_train(
        recipe(out="resumed"),
        workspace=workspace,
        progress=lambda **e: second.append(e),
        run_dir=tmp_path / "resumed",
    )
    assert any(e.get("resumed") == 3 for e in second)
    assert not any("scoring" in str(e.get("message", "")) for e in second)  # references kept
    assert losses(first) + losses(second) == pytest.approx(losses(straight), abs=1e-4)
    assert result["steps"] == 6 and workspace.exists("resumed")


def test_orpo_with_full_weights_learns_and_saves_a_model(workspace, prefs, tmp_path):
    result, events = train(
        workspace, tmp_path, objective="orpo", method="full", out="tiny-orpo",
        learning_rate=5e-3, beta=0.5,
    )  # fmt: skip
    curve = losses(events)
    assert curve[-1] < curve[0] - 0.1
    assert "nll" in [e for e in events if "loss" in e][-1]
    assert not (tmp_path / "run" / REFERENCE_FILE).read_text().count('"train"')  # no reference
    assert workspace.get("tiny-orpo").kind == "model"
    assert (workspace.path_of("tiny-orpo") / "model.safetensors").is_file()
    assert result["objective"] == "orpo"


def test_auto_picks_dpo_for_pairs_and_refuses_what_cannot_work(workspace, prefs, tmp_path):
    with pytest.raises(InvalidInput) as wrong:
        train(workspace, tmp_path, objective="sft")
    assert "preference pairs" in wrong.value.what and "dpo" in wrong.value.fix

    from workbench.data.prepare import save_samples

    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    save_samples(workspace, "chat", [chat] * 4, source="test")
    with pytest.raises(InvalidInput) as no_pairs:
        train(workspace, tmp_path, data="chat")
    assert "no preference pairs" in no_pairs.value.what and no_pairs.value.where == "data"

    folder = workspace.path_of("tiny")
    with workspace.create("model", "tiny-4bit", variant="quantized", source="test") as staging:
        for item in folder.iterdir():
            if item.is_file() and item.name != "manifest.json":
                shutil.copy2(item, staging / item.name)
        config = json.loads((staging / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
        (staging / "config.json").write_text(json.dumps(config))
    with pytest.raises(WorkbenchError) as quantized:
        train(workspace, tmp_path, model="tiny-4bit", method="full", objective="orpo")
    assert "quantized" in quantized.value.what and "lora" in quantized.value.fix

    result, _ = train(workspace, tmp_path, run="auto", objective="auto", max_steps=1, out="auto")
    assert result["objective"] == "dpo"
    with pytest.raises(WorkbenchError) as adapter:
        train(workspace, tmp_path, run="on-adapter", model="auto", out="again")
    assert "adapter" in adapter.value.what and "workbench merge --adapter auto" in adapter.value.fix
    with pytest.raises(InvalidInput):
        recipe(beta=0)


def test_the_run_frame_holds_rewards_per_step_and_held_out_accuracy_where_measured():
    from workbench.finetune.prefs_view import train_title
    from workbench.finetune.view import PREFERENCE_CHARTS, train_events_frame

    events = [
        {"step": 0, "metrics": {"pref_acc": 0.25, "pref_margin": -3.0}},
        {"step": 1, "metrics": {"loss": 0.69, "reward_margin": 0.0, "reward_acc": 0.0}},
        {"step": 2, "metrics": {"loss": 0.41, "reward_margin": 0.9, "reward_acc": 1.0}},
        {"step": 2, "metrics": {"pref_acc": 0.75, "pref_margin": 2.0}},
    ]
    frame = train_events_frame(events)
    assert frame["reward_margin"].tolist()[1:] == [0.0, 0.9]
    assert frame["pref_acc"].dropna().tolist() == [0.25, 0.75]
    assert frame["loss"].dropna().tolist() == [0.69, 0.41]
    assert set(sum(PREFERENCE_CHARTS.values(), ())) <= set(frame.columns)
    assert train_title(recipe(method="full")) == "train dpo (full): tiny-dpo"
    assert train_title(recipe(objective="sft")) == "train lora: tiny-dpo"
