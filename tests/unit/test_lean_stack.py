"""The fused C++ decoder (csrc/lean_stack.cpp) against the lean engine's torch operations: the
same logits for prompts and for batched decode steps with rows at different positions, for
float32, int8 and int4 weights, with q/k/v biases (Qwen2), and clear errors for bad weights."""

from __future__ import annotations

import pytest
import torch

from workbench import cpu_gemv
from workbench.engine.lean import LeanModel

pytestmark = pytest.mark.skipif(
    not cpu_gemv.available(), reason=f"AVX2 kernels unavailable: {cpu_gemv.why_unavailable()}"
)

# At most 8 tokens: longer prompts take torch's int8/int4 kernels in the reference, whose bf16
# activations round differently (the transformers test below covers a longer one).
PROMPTS = [[5, 17, 33, 2, 90, 41, 7], [3, 8], [60, 61, 62, 63, 64, 65, 66, 67]]


def tiny_llama(vocab: int = 128) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def tiny_qwen2(vocab: int = 128) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # biases are zero at initialisation; make them count
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def pair(model, weights: str) -> tuple[LeanModel, LeanModel]:
    fused = LeanModel(model, slots=3, max_len=64, weights=weights)
    reference = LeanModel(model, slots=3, max_len=64, weights=weights, fused=False)
    assert fused.stack is not None and reference.stack is None
    return fused, reference


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=2e-4 * max(1.0, b.abs().max().item()), rtol=1e-4)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("weights", ["model", "int8", "int4"])
@pytest.mark.parametrize("build", [tiny_llama, tiny_qwen2], ids=["llama", "qwen2"])
def test_fused_decoder_gives_the_logits_of_the_torch_operations(build, weights):
    fused, reference = pair(build(), weights)
    for slot, prompt in enumerate(PROMPTS):
        assert close(fused.prefill(slot, prompt), reference.prefill(slot, prompt))
    # Three rows at three different positions, then a few steps of greedy decoding.
    positions = [len(p) for p in PROMPTS]
    tokens = [11, 12, 13]
    for _ in range(5):
        got, expected = fused.decode(tokens, positions), reference.decode(tokens, positions)
        assert got.shape == (3, 128)
        assert close(got, expected)
        tokens = expected.argmax(-1).tolist()
        positions = [p + 1 for p in positions]


def test_fused_decoder_matches_transformers_forward():
    model = tiny_llama()
    fused = LeanModel(model, slots=1, max_len=64, weights="model")
    ids = PROMPTS[0] + PROMPTS[2]
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0]
    got = [fused.prefill(0, ids[:8])]
    for position in range(8, len(ids)):
        got.append(fused.decode([ids[position]], [position])[0])
    assert close(torch.stack(got), expected[7:])


def test_a_single_stream_decodes_with_one_slot_of_several():
    """One request in a 3-slot engine: the loop decodes only slot 0, its neighbours untouched."""
    fused, reference = pair(tiny_llama(), "int4")
    for engine in (fused, reference):
        engine.prefill(0, PROMPTS[0])
    token, position = 9, len(PROMPTS[0])
    for _ in range(4):
        got, expected = fused.decode([token], [position]), reference.decode([token], [position])
        assert close(got, expected)
        token, position = int(expected[0].argmax()), position + 1
    assert torch.count_nonzero(fused.cache_k[:, 1:]) == 0


def test_bad_weights_are_refused_with_the_layer_named():
    model = tiny_llama()
    fused = LeanModel(model, slots=1, max_len=16, weights="model")
    layer = fused.layers[1]
    good = [layer.input_norm, layer.post_norm]
    for m in (layer.qkv, layer.o, layer.gate_up, layer.down):
        good += m.stack_tensors()
    head = [fused.norm, *fused.head.stack_tensors()]
    with pytest.raises(RuntimeError, match="layer 0: expected 18 tensors"):
        cpu_gemv.lean_stack([good[:-1]], head, 4, 2, 16, 1e-5)
    swapped = good[:2] + good[6:10] + good[2:6] + good[10:]  # o where q/k/v should be
    with pytest.raises(RuntimeError, match="layer 0: q/k/v weights do not match"):
        cpu_gemv.lean_stack([swapped], head, 4, 2, 16, 1e-5)
    with pytest.raises(RuntimeError, match="head: 160 inputs for hidden size 64"):
        cpu_gemv.lean_stack([good], [fused.norm, *good[14:]], 4, 2, 16, 1e-5)
    stack = cpu_gemv.lean_stack([good], head, 4, 2, 16, 1e-5)
    x = torch.zeros(1, 64)
    with pytest.raises(RuntimeError, match="position 16 out of range"):
        stack.forward(
            x,
            torch.tensor([0]),
            torch.tensor([16]),
            fused.cache_k[:1].contiguous(),
            fused.cache_v[:1].contiguous(),
            fused.cos,
            fused.sin,
            0,
        )


def forward_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def decode_all(lean: LeanModel, ids: list[int], prompt: int) -> torch.Tensor:
    """Logits at positions prompt-1 .. len(ids)-1: a prefill, then one decode step a token."""
    got = [lean.prefill(0, ids[:prompt])]
    for position in range(prompt, len(ids)):
        got.append(lean.decode([ids[position]], [position])[0])
    return torch.stack(got)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize(
    "formats",
    [
        {"int8": "all"},
        {"int8-g32": "all"},
        {"int4": "all"},
        {"int4": "layers", "int8-g32": "head"},
    ],
    ids=["int8", "int8-g32", "int4", "int4+int8-head"],
)
def test_a_quantized_model_decodes_with_its_own_codes(formats):
    """A model from the Quantize step runs in the fused decoder and gives the logits of its own
    (dequantized) layers: the codes are used as stored, group 64 spread over runs of 32."""
    from workbench.quantize.modules import linear_names, quantize_linears

    model = tiny_llama()
    names = linear_names(model)
    chosen = {}
    for fmt, which in formats.items():
        for name in names:
            is_head = name == "lm_head"
            if which == "all" or (which == "head") == is_head:
                chosen[name] = fmt
    quantize_linears(model, chosen, group=64)
    lean = LeanModel(model, slots=1, max_len=64)
    assert lean.stack is not None and lean.head_dense is None
    ids = PROMPTS[0] + PROMPTS[2] + PROMPTS[1]
    expected = forward_logits(model, ids)  # > 16 rows: the layers' dequantized float maths
    assert close(decode_all(lean, ids, 6), expected[5:])
    with pytest.raises(ValueError, match="already quantized"):
        LeanModel(model, slots=1, max_len=64, weights="int8")


@pytest.mark.usefixtures("cpu_isa")
def test_bfloat16_weights_run_fused_with_float32_activations():
    model = tiny_llama()
    lean = LeanModel(model, slots=1, max_len=64, weights="bfloat16")
    assert lean.stack is not None and lean.act == torch.float32
    with torch.no_grad():  # the reference: the same model with its weights rounded to bf16
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(module.weight.to(torch.bfloat16).float())
    ids = PROMPTS[0] + PROMPTS[2]
    assert close(decode_all(lean, ids, 5), forward_logits(model, ids)[4:])
