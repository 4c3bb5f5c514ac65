"""The "will it fit?" estimate: parameter counts, how memory moves with the plan, suggestions,
bad input, and a measured check of the activation model on a real (tiny) LoRA step.

No weights are loaded except the tiny random model from conftest; SmolLM2's shapes come from its
config alone. The ±25% check against measured peak memory lives in bench/estimate_memory.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from workbench.errors import InvalidInput
from workbench.estimate import (
    GB,
    ModelShape,
    TrainPlan,
    _activation_bytes,
    estimate_memory,
    estimate_time,
    model_shape,
    will_it_fit,
)
from workbench.hardware import GpuInfo, HardwareInfo

SMOLLM2_135M = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
}


def machine(ram_free_gb: float = 20.0, gpu_free_gb: float | None = None) -> HardwareInfo:
    gpus = [GpuInfo(0, "Test GPU", 80.0, gpu_free_gb, "9.0", True)] if gpu_free_gb else []
    return HardwareInfo("test CPU", 2, 24.0, ram_free_gb, cpu_bf16=False, gpus=gpus)


@pytest.fixture(scope="module")
def smollm2() -> ModelShape:
    return ModelShape.from_config(SMOLLM2_135M)


def _real_param_count(config) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _configs():
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    small = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    return {
        "llama tied": LlamaConfig(**small, tie_word_embeddings=True),
        "llama untied, wide heads, biases": LlamaConfig(
            **small, head_dim=32, attention_bias=True, mlp_bias=True
        ),
        "qwen2 (q/k/v bias)": Qwen2Config(**small),
        "qwen3 (q/k norms)": Qwen3Config(**small, head_dim=16),
    }


@pytest.mark.parametrize("name", list(_configs()))
def test_param_count_equals_a_real_model_built_from_the_config(name):
    config = _configs()[name]
    assert ModelShape.from_config(config.to_dict()).params == _real_param_count(config)


def test_model_shape_of_a_folder_matches_its_weights(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model_shape(tiny_model_dir).params == sum(p.numel() for p in model.parameters())


def test_internlm2_key_names_are_understood():
    config = {"model_type": "internlm2", "vocab_size": 92544, "hidden_size": 2048,
              "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 16,
              "num_key_value_heads": 8, "bias": False, "tie_word_embeddings": False}  # fmt: skip
    shape = ModelShape.from_config(config)
    assert set(shape.linears()) == {"wqkv", "wo", "w1", "w2", "w3"}
    assert 1.8e9 < shape.params < 1.95e9  # internlm2-chat-1_8b: 1.89 B


def test_memory_grows_with_batch_and_cutoff(smollm2):
    hw = machine()
    base = estimate_memory(smollm2, TrainPlan(batch_size=1, seq_len=128), hw).total
    bigger_batch = estimate_memory(smollm2, TrainPlan(batch_size=4, seq_len=128), hw).total
    longer = estimate_memory(smollm2, TrainPlan(batch_size=1, seq_len=512), hw).total
    assert bigger_batch > base and longer > base


def test_gradient_checkpointing_cuts_activations(smollm2):
    plan = TrainPlan(batch_size=4, seq_len=256)
    plain = estimate_memory(smollm2, plan, machine()).parts["activations"]
    checkpointed = estimate_memory(smollm2, replace(plan, gradient_checkpointing=True), machine())
    assert checkpointed.parts["activations"] < plain / 4


def test_qlora_weights_below_lora_below_full_training_state(smollm2):
    plan = TrainPlan(seq_len=128)
    qlora = estimate_memory(smollm2, replace(plan, method="qlora"), machine()).parts
    lora = estimate_memory(smollm2, plan, machine()).parts
    full = estimate_memory(smollm2, replace(plan, method="full"), machine()).parts
    assert qlora["weights"] < lora["weights"]
    assert lora["weights"] < full["weights"] + full["gradients"] + full["optimizer"]


def test_full_fine_tuning_keeps_two_fp32_adamw_states_per_weight(smollm2):
    estimate = estimate_memory(smollm2, TrainPlan(method="full", seq_len=128), machine())
    assert estimate.parts["optimizer"] == 2 * 4 * smollm2.params
    assert estimate.parts["gradients"] == 4 * smollm2.params
    assert estimate.total == sum(estimate.parts.values())


def test_too_little_memory_gives_suggestions_that_each_save_memory(smollm2):
    plan = TrainPlan(method="full", batch_size=8, seq_len=1024)
    hw = machine(ram_free_gb=1.0)
    estimate = estimate_memory(smollm2, plan, hw)
    assert not estimate.fits and estimate.headroom < 0
    assert len(estimate.suggestions) >= 4
    assert any("gradient checkpointing" in s for s in estimate.suggestions)
    assert any("QLoRA" in s for s in estimate.suggestions)
    assert any("Halve the batch to 4" in s and "grad_accum 2" in s for s in estimate.suggestions)
    saved = [c["saves_bytes"] for c in estimate.changes]
    assert saved == sorted(saved, reverse=True)  # biggest saving first
    for change in estimate.changes:
        smaller = estimate_memory(smollm2, replace(plan, **change["change"]), hw)
        assert smaller.total == estimate.total - change["saves_bytes"] < estimate.total


def test_qlora_is_not_suggested_to_a_qlora_plan(smollm2):
    plan = TrainPlan(method="qlora", batch_size=8, seq_len=2048)
    estimate = estimate_memory(smollm2, plan, machine(ram_free_gb=0.5))
    assert not estimate.fits and estimate.suggestions
    assert not any("QLoRA" in s for s in estimate.suggestions)


def test_a_plan_that_fits_says_so_without_suggestions(smollm2):
    estimate = estimate_memory(smollm2, TrainPlan(seq_len=128), machine(ram_free_gb=20))
    assert estimate.fits and not estimate.suggestions
    assert 0.5 * GB < estimate.total < 2 * GB


def test_cuda_plans_are_checked_against_free_gpu_memory(smollm2):
    plan = TrainPlan(device="cuda", dtype="bfloat16", batch_size=8, seq_len=2048)
    assert estimate_memory(smollm2, plan, machine(gpu_free_gb=70)).fits
    assert not estimate_memory(smollm2, plan, machine(gpu_free_gb=2)).fits
    no_gpu = estimate_memory(smollm2, plan, machine())
    assert not no_gpu.fits and "No CUDA GPU" in no_gpu.suggestions[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "plan.batch_size"),
        ({"seq_len": -5}, "plan.seq_len"),
        ({"grad_accum": 0}, "plan.grad_accum"),
        ({"method": "prefix-tuning"}, "plan.method"),
        ({"dtype": "int8"}, "plan.dtype"),
        ({"device": "tpu"}, "plan.device"),
    ],
)
def test_bad_plans_name_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        TrainPlan(**kwargs)
    assert caught.value.where == field and caught.value.fix


def test_unknown_lora_target_names_the_field(smollm2):
    with pytest.raises(InvalidInput) as caught:
        estimate_memory(smollm2, TrainPlan(lora_targets=["q_proj", "attn.c_attn"]), machine())
    assert caught.value.where == "plan.lora_targets" and "q_proj" in caught.value.fix


def test_a_folder_without_config_is_refused(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        will_it_fit(tmp_path, TrainPlan(), tokens=1000, hardware=machine())
    assert caught.value.where == str(tmp_path)


def test_time_follows_the_work(smollm2):
    hw, speed = machine(), 100e9
    lora = estimate_time(smollm2, TrainPlan(seq_len=128), 12_800, hw, flops_per_second=speed)
    full = estimate_time(
        smollm2, TrainPlan(method="full", seq_len=128), 12_800, hw, flops_per_second=speed
    )
    double = estimate_time(smollm2, TrainPlan(seq_len=128), 25_600, hw, flops_per_second=speed)
    assert lora["steps"] == 100 and double["seconds"] == pytest.approx(2 * lora["seconds"], 0.01)
    assert 1.3 < full["seconds"] / lora["seconds"] < 1.6  # 6N against 4N FLOPs per token
    with pytest.raises(InvalidInput) as caught:
        estimate_time(smollm2, TrainPlan(), 0, hw, flops_per_second=speed)
    assert caught.value.where == "tokens"


def test_will_it_fit_on_a_real_folder_is_json_with_a_verdict(tiny_model_dir):
    result = will_it_fit(tiny_model_dir, TrainPlan(seq_len=64), tokens=6400, hardware=machine())
    json.dumps(result)
    assert result["fits"] and result["verdict"].startswith("Fits: needs ~")
    assert result["time"]["seconds"] > 0 and result["time"]["steps"] == 100
    squeezed = will_it_fit(
        tiny_model_dir, TrainPlan(seq_len=64), tokens=6400, hardware=machine(ram_free_gb=0.1)
    )
    assert squeezed["verdict"].startswith("Does not fit")


def test_activation_model_matches_what_a_real_lora_step_saves(tiny_model_dir):
    """Autograd's saved tensors (not parameters) during a real peft LoRA forward with a padded
    batch, against the estimate's activations + the saved log-softmax. Exact bookkeeping, so
    the check is deterministic; the margin covers small tensors the model leaves out."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    batch, seq = 4, 96
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator())
    mask = torch.ones_like(ids)
    mask[-1, seq // 2 :] = 0
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()

    shape = model_shape(tiny_model_dir)
    plan = TrainPlan(batch_size=batch, seq_len=seq)
    activations, _, _ = _activation_bytes(shape, plan)
    expected = activations + batch * seq * shape.vocab_size * 4
    assert 0.75 < sum(saved.values()) / expected < 1.25
