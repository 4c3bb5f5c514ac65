"""`patch_llama` on real transformers models built from a config: what it patches, that the
patched model trains like the unpatched one step by step (the convergence test), that inference
on int8 / int4 layers matches, and that it is safe on CPU."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("triton")

from kernels import patch_llama  # noqa: E402

TRITON_BACKEND = "triton"  # on CPU: Triton's interpreter; on CUDA: the compiled kernels


def _llama(vocab: int = 64, seed: int = 0, **extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, **extra,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _batches(steps: int, vocab: int, device: str):
    """Batches from four fixed sequences, so the loss has something to learn (memorise)."""
    data = torch.randint(0, vocab, (4, 12), generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        ids = data[[step % 4, (step + 1) % 4]]  # [2, 12]
        labels = ids.clone()
        labels[:, :2] = -100  # a prompt without loss
        yield ids.to(device), labels.to(device)


def _train(model, steps: int, device: str) -> list[float]:
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for ids, labels in _batches(steps, model.config.vocab_size, device):
        items = torch.tensor(float((labels[:, 1:] != -100).sum()), device=device)
        out = model(input_ids=ids, labels=labels, num_items_in_batch=items, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    return losses


def test_convergence_with_and_without_the_kernels(device):
    base = _llama()
    plain = _train(copy.deepcopy(base), 24, device)
    patched_model = copy.deepcopy(base)
    report = patch_llama(patched_model, training=True, backend=TRITON_BACKEND)
    assert report.loss and len(report.rms_norms) == 5 and len(report.mlps) == 2
    fused = _train(patched_model, 24, device)

    assert plain[-1] < 0.7 * plain[0], plain  # it learns, so agreement is not trivial
    for step, (a, b) in enumerate(zip(plain, fused, strict=True)):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (step, a, b)


def test_patch_report_names_the_modules_of_llama_and_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    report = patch_llama(_llama(), training=True)
    assert report.rms_norms == [
        "model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
        "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm",
        "model.norm",
    ]  # fmt: skip
    assert report.mlps == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert report.loss == "LlamaForCausalLM" and report.patched == 8

    qwen = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2,
        )
    )  # fmt: skip
    report = patch_llama(qwen, training=False)
    assert len(report.rms_norms) == 3 and report.mlps == ["model.layers.0.mlp"]
    assert report.loss is None  # inference leaves the loss alone


def test_not_silu_models_keep_their_mlp():
    report = patch_llama(_llama(hidden_act="gelu"), training=False)
    assert report.mlps == [] and set(report.skipped) == {"model.layers.0.mlp", "model.layers.1.mlp"}


def test_safe_on_cpu_same_loss_no_logits_in_training_and_undo():
    model = _llama()
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        before = model.train()(input_ids=ids, labels=ids)
    report = patch_llama(model, training=True)  # auto: CPU tensors take the references
    with torch.no_grad():
        after = model(input_ids=ids, labels=ids)
        positional = model(ids, None, labels=ids)  # input_ids, attention_mask by position
        model.eval()
        evaluated = model(input_ids=ids, labels=ids)
    assert after.logits is None  # the point: no [tokens, vocab] logits in training
    assert torch.allclose(after.loss, before.loss, atol=1e-5)
    assert torch.allclose(positional.loss, before.loss, atol=1e-5)
    assert evaluated.logits.shape == (2, 9, 64)  # eval keeps the eager path and its logits
    report.undo()
    assert "forward" not in vars(model) and "forward" not in vars(model.model.norm)


def test_lora_wrapped_model_trains_like_the_plain_one():
    from peft import LoraConfig, get_peft_model

    def grads(patch: bool):
        model = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj", "up_proj"]))
        if patch:
            assert patch_llama(model, training=True).loss
        model.train()
        ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(3))
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, patched = grads(False), grads(True)
    assert plain.keys() == patched.keys() and plain
    for name in plain:
        torch.testing.assert_close(patched[name], plain[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_inference_matches_the_unpatched_model(fmt, device):
    from workbench.quantize.modules import linear_names, quantize_linears

    model = _llama()
    names = [n for n in linear_names(model) if n.startswith("model.layers.")]
    quantize_linears(model, dict.fromkeys(names, fmt), group=32)
    model.to(device).eval()
    ids = torch.randint(0, 64, (1, 5), device=device)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        report = patch_llama(model, training=False, backend=TRITON_BACKEND)
        assert len(report.quantized) == len(names) == 14
        got = model(input_ids=ids).logits
        step = model(input_ids=ids[:, :1]).logits  # batch 1, one token: the GEMV path
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert step.shape == (1, 1, 64)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        patch_llama(_llama(), training=False, backend="cuda")


def test_full_fine_tuning_under_bf16_autocast_matches_eager(device):
    """The trainer's full fine-tuning: float32 weights, bfloat16 autocast, num_items_in_batch."""
    base = _llama()
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(5)).to(device)
    items = torch.tensor(18.0, device=device)

    def loss_and_grads(model):
        model.to(device).train()
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, num_items_in_batch=items).loss
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    plain_loss, plain = loss_and_grads(copy.deepcopy(base))
    patched_model = copy.deepcopy(base)
    patch_llama(patched_model, training=True, backend=TRITON_BACKEND)
    fused_loss, fused = loss_and_grads(patched_model)

    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-2, atol=1e-2)
    for name, grad in plain.items():
        err = float((fused[name] - grad).norm() / grad.norm().clamp(min=1e-8))
        assert err < 3e-2, (name, err)  # bfloat16 matmuls: a rounding step here and there
