"""Quantization on small tensors and a 2-layer model: error bounds per method, kernels against
the reference path, the activation-aware search against round-to-nearest, artifacts that reload
and chat, a GGUF file read back, and every refusal a user can meet."""

from __future__ import annotations

import json

import pytest
import torch

from workbench import cpu_gemv
from workbench.errors import InvalidInput, NotFound, WorkbenchError
from workbench.models import load_model
from workbench.quantize.awq import awq_search, fake_quantize, search_scale
from workbench.quantize.modules import Int4Linear, Int8Linear, linear_names
from workbench.quantize.report import greedy_decode, perplexity
from workbench.quantize.runner import run_quantize
from workbench.quantize.schemes import (
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    pad_columns,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)
from workbench.recipes import QuantizeRecipe, recipe_from_dict

# --- arithmetic --------------------------------------------------------------------------------


def test_int8_round_trip_error_is_at_most_half_a_step_per_row():
    torch.manual_seed(0)
    w = torch.randn(37, 131) * torch.linspace(0.1, 5, 37)[:, None]  # rows of very different size
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    error = (dequantize_int8(q, scale) - w).abs()
    assert (error <= scale[:, None] / 2 + 1e-6).all()
    assert (q.abs().amax(1) == 127).all()  # the range is used fully in every row


def test_int8_per_group_is_finer_than_per_row_and_exact_on_a_q8_0_grid():
    torch.manual_seed(5)
    w = torch.randn(8, 96)
    w[:, 5] *= 20  # an outlier column makes one scale per row coarse
    q, scale = quantize_int8(w, 32)
    assert scale.shape == (8, 3)
    per_group = (dequantize_int8(q, scale) - w).pow(2).mean()
    per_row = (dequantize_int8(*quantize_int8(w)) - w).pow(2).mean()
    assert per_group < per_row / 2
    # weights that already lie on an int8 grid per block of 32 (a dequantized Q8_0 GGUF) survive
    blocks = torch.randint(-127, 128, (8, 96)).float()
    blocks[:, ::32] = 127  # each block uses its full range, as Q8_0's absmax scaling does
    grid = blocks * torch.rand(8, 3).repeat_interleave(32, dim=1)
    assert torch.allclose(dequantize_int8(*quantize_int8(grid, 32)), grid, atol=1e-6)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_round_trip_error_is_at_most_half_a_step_per_group(group):
    torch.manual_seed(1)
    w = torch.randn(19, 256) * 0.05 + 0.01
    q, scales, zeros = quantize_int4(w, group)
    assert q.max() <= 15 and q.min() >= 0 and scales.shape == (19, 256 // group)
    step = scales.repeat_interleave(group, dim=1)
    error = (dequantize_int4(q, scales, zeros, group) - w).abs()
    assert (error <= step / 2 + 1e-6).all()
    # smaller groups follow the weights more closely
    if group == 32:
        coarse = dequantize_int4(*quantize_int4(w, 128), 128)
        fine = dequantize_int4(q, scales, zeros, 32)
        assert (fine - w).pow(2).mean() < (coarse - w).pow(2).mean()


def test_int4_packing_round_trips_and_halves_the_bytes():
    codes = torch.randint(0, 16, (5, 64), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (5, 32) and torch.equal(unpack_int4(packed), codes)


def test_padding_keeps_each_groups_range():
    w = torch.randn(4, 100)
    padded = pad_columns(w, 32)
    assert padded.shape == (4, 128) and torch.equal(padded[:, :100], w)
    assert torch.equal(padded[:, 96:].amax(1), w[:, 96:].amax(1))


def test_a_group_that_does_not_divide_or_is_not_a_kernel_size_is_refused():
    with pytest.raises(InvalidInput, match="does not divide the 100 input columns") as info:
        quantize_int4(torch.randn(4, 100), 32)
    assert "pad_columns" in info.value.fix
    with pytest.raises(InvalidInput, match="Group size 48 is not supported"):
        quantize_int4(torch.randn(4, 96), 48)
    with pytest.raises(InvalidInput, match="group"):
        QuantizeRecipe(out="x", method="int4-rtn", group=100)


def test_unknown_method_is_refused_with_a_suggestion():
    with pytest.raises(InvalidInput) as info:
        recipe_from_dict({"kind": "quantize", "out": "x", "method": "int4_awq"})
    assert "int4-awq" in info.value.fix


# --- layers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_layer_kernel_matches_the_reference_path(dtype, monkeypatch):
    torch.manual_seed(2)
    linear = torch.nn.Linear(96, 40, bias=True)
    layer = Int8Linear.from_linear(linear).to(dtype)
    x = torch.randn(3, 5, 96, dtype=dtype)
    fast = layer(x)
    monkeypatch.setenv("WORKBENCH_QUANT_REFERENCE", "1")
    reference = layer(x)
    # float32 activations stay float32 in the AVX2 kernel; torch's kernels take them in bf16
    exact_kernel = dtype == torch.float32 and cpu_gemv.available()
    tolerance = 1e-4 if exact_kernel else 3e-2
    assert fast.shape == (3, 5, 40)
    assert torch.allclose(fast.float(), reference.float(), atol=tolerance, rtol=tolerance)
    exact = linear(x.float())
    assert (reference.float() - exact).abs().max() < 0.05  # int8 weights: close to the float layer


@pytest.mark.parametrize("kernels", ["avx2", "torch"])
@pytest.mark.parametrize("in_features", [128, 100])  # 100: padded to the group
def test_int4_layer_kernel_matches_the_reference_path(in_features, kernels, monkeypatch):
    if kernels == "avx2" and not cpu_gemv.available():
        pytest.skip(f"the AVX2 kernels are not available: {cpu_gemv.why_unavailable()}")
    if kernels == "torch":
        monkeypatch.setattr(cpu_gemv, "available", lambda: False)
    torch.manual_seed(3)
    linear = torch.nn.Linear(in_features, 48, bias=False)
    layer = Int4Linear.from_linear(linear, 32)
    x = torch.randn(7, in_features)
    fast = layer(x)
    monkeypatch.setenv("WORKBENCH_QUANT_REFERENCE", "1")
    reference = layer(x)
    tolerance = 1e-4 if kernels == "avx2" else 3e-2  # torch's kernel takes bf16 activations
    assert torch.allclose(fast, reference, atol=tolerance, rtol=tolerance)
    w = layer.dequantized()
    assert w.shape == (48, in_features)
    assert torch.allclose(reference, x @ w.t(), atol=1e-5)


def test_scale_search_never_loses_to_round_to_nearest():
    torch.manual_seed(4)
    x = torch.randn(256, 128)
    x[:, :4] *= 30  # a few loud channels, as in real activations
    w = torch.randn(64, 128) * 0.02
    scale, alpha, gain = search_scale(x, x.abs().mean(0), [w], 32)
    rtn = ((x @ (w - fake_quantize(w, 32)).t()) ** 2).sum()
    awq = ((x @ (w - fake_quantize(w * scale, 32) / scale).t()) ** 2).sum()
    assert alpha > 0 and gain > 1.0 and awq < rtn


# --- the tiny model ----------------------------------------------------------------------------


def test_awq_scaling_keeps_the_float_model_and_covers_every_int4_layer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import TINY_CORPUS

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    text = " ".join(TINY_CORPUS[:30])
    before = perplexity(model, tokenizer, text, window=64)
    samples = [{"text": s} for s in TINY_CORPUS]
    found = awq_search(model, tokenizer, samples, group=32, blocks=4, block_length=32)
    assert perplexity(model, tokenizer, text, window=64) == pytest.approx(before, rel=1e-4)
    assert set(found["clips"]) == {n for n in linear_names(model) if n != "lm_head"}
    assert found["calibration_tokens"] == 128


def test_quantized_artifact_reloads_chats_and_records_its_lineage(workspace, tiny_artifact):
    result = run_quantize(
        QuantizeRecipe(
            model="tiny", method="int4-awq", out="tiny-awq", group=32, ppl_tokens=64, speed_tokens=4
        ),
        workspace=workspace,
    )
    assert result["artifact"] == "tiny-awq" and result["size_bytes"] < result["source_size_bytes"]
    for key in ("ppl", "source_ppl", "tokens_per_s", "source_tokens_per_s", "answers"):
        assert key in result
    assert result["ppl"] > 0 and result["tokens_per_s"] > 0 and len(result["answers"]) == 3
    manifest = workspace.get("tiny-awq")
    assert manifest.variant == "quantized" and manifest.parents == ["tiny"]
    assert manifest.metrics["calibration"].startswith("bundled:")
    config = json.loads((workspace.path_of("tiny-awq") / "config.json").read_text())
    scheme = config["quantization_config"]
    assert scheme["quant_method"] == "workbench" and scheme["group_size"] == 32
    assert scheme["modules"]["lm_head"] == "int8-g32"
    assert scheme["modules"]["model.layers.0.mlp.down_proj"] == "int4"
    loaded = load_model("tiny-awq", workspace, device="cpu", dtype="float32")
    assert isinstance(loaded.model.model.layers[0].mlp.down_proj, Int4Linear)
    assert isinstance(loaded.model.lm_head, Int8Linear)
    ids = loaded.tokenizer("The capital of", return_tensors="pt")["input_ids"]
    tokens, _ = greedy_decode(loaded.model, ids, 5)
    assert len(tokens) == 5


def test_int8_of_the_tiny_model_stays_close_to_it(workspace, tiny_artifact):
    run_quantize(
        QuantizeRecipe(model="tiny", method="int8", out="tiny-int8", report=False),
        workspace=workspace,
    )
    source = load_model("tiny", workspace, device="cpu", dtype="float32")
    quantized = load_model("tiny-int8", workspace, device="cpu", dtype="float32")
    ids = source.tokenizer("Quantization stores weights in fewer bits", return_tensors="pt")
    with torch.inference_mode():
        a = source.model(**ids).logits.softmax(-1)
        b = quantized.model(**ids).logits.softmax(-1)
    assert (a - b).abs().max() < 0.01


@pytest.mark.parametrize(
    ("method", "qtype", "tolerance"), [("gguf-q8_0", "Q8_0", 0.05), ("gguf-q4", "Q4_1", 0.3)]
)
def test_gguf_export_reads_back_with_names_shapes_and_types(
    workspace, tiny_artifact, method, qtype, tolerance
):
    from gguf import GGUFReader

    run_quantize(
        QuantizeRecipe(model="tiny", method=method, out="tiny-q8", report=False),
        workspace=workspace,
    )
    folder = workspace.path_of("tiny-q8")
    reader = GGUFReader(str(folder / "model.gguf"))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 1 + 2 * 9 + 1  # embedding, 2 blocks of 9, final norm (tied output)
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == qtype
    assert tensors["token_embd.weight"].tensor_type.name == "Q8_0"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert [int(d) for d in tensors["blk.1.ffn_up.weight"].shape] == [64, 128]  # [in, out]
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    # transformers' GGUF reader gets back (nearly) the source model's predictions
    source = load_model("tiny", workspace, device="cpu", dtype="float32")
    exported = load_model("tiny-q8", workspace, device="cpu", dtype="float32")
    ids = source.tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a = source.model(input_ids=ids).logits
        b = exported.model(input_ids=ids).logits
    assert torch.allclose(a, b, atol=tolerance)  # q/k rows reordered back correctly
    assert (folder / "Modelfile").read_text() == "FROM ./model.gguf\n"
    assert exported.tokenizer.decode(ids[0]) == source.tokenizer.decode(ids[0])


# --- refusals ----------------------------------------------------------------------------------


def test_quantizing_a_quantized_model_is_refused_with_its_source(workspace, tiny_artifact):
    run_quantize(
        QuantizeRecipe(model="tiny", method="int8", out="tiny-int8", report=False),
        workspace=workspace,
    )
    with pytest.raises(InvalidInput, match="already quantized") as info:
        run_quantize(
            QuantizeRecipe(model="tiny-int8", method="int4-rtn", out="again"), workspace=workspace
        )
    assert "'tiny'" in info.value.fix
    assert not workspace.exists("again")


def test_missing_calibration_dataset_is_refused_with_the_known_ones(workspace, tiny_artifact):
    with pytest.raises(NotFound, match="no calibration dataset called 'nope'") as info:
        run_quantize(
            QuantizeRecipe(model="tiny", method="int4-awq", out="x", calib="nope"),
            workspace=workspace,
        )
    assert "bundled" in info.value.fix


def test_awq_refuses_an_unknown_layout_and_offers_rtn(workspace, tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match="layer layout of 'gpt_neox'") as info:
        run_quantize(
            QuantizeRecipe(model=str(folder), method="int4-awq", out="x"), workspace=workspace
        )
    assert "int4-rtn" in info.value.fix
    with pytest.raises(InvalidInput, match="GGUF export does not support 'gpt_neox'"):
        run_quantize(
            QuantizeRecipe(model=str(folder), method="gguf-q4", out="x"), workspace=workspace
        )


def test_lmdeploy_without_a_gpu_is_refused_with_the_cpu_alternative(workspace, tiny_artifact):
    from workbench.hardware import detect_hardware

    if detect_hardware().gpus:
        pytest.skip("this machine has a GPU: the refusal is about machines without one")
    with pytest.raises(WorkbenchError, match="needs an NVIDIA GPU") as info:
        run_quantize(
            QuantizeRecipe(model="tiny", method="lmdeploy-awq", out="x"), workspace=workspace
        )
    assert "int4-awq" in info.value.fix


def test_an_adapter_is_refused_with_the_merge_command(workspace, tiny_artifact):
    with workspace.create("adapter", "tiny-lora", recipe={"model": "tiny"}) as staging:
        (staging / "adapter_config.json").write_text("{}")
    with pytest.raises(InvalidInput, match="LoRA adapter") as info:
        run_quantize(QuantizeRecipe(model="tiny-lora", method="int8", out="x"), workspace=workspace)
    assert "workbench merge --adapter tiny-lora" in info.value.fix


def test_nf4_through_bitsandbytes_saves_and_reloads_4bit_layers(workspace, tiny_artifact):
    pytest.importorskip("bitsandbytes")
    result = run_quantize(
        QuantizeRecipe(model="tiny", method="nf4", out="tiny-nf4", report=False),
        workspace=workspace,
    )
    assert result["size_bytes"] < 0.5 * result["source_size_bytes"]
    loaded = load_model("tiny-nf4", workspace, device="cpu", dtype="float32")
    assert type(loaded.model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    source = load_model("tiny", workspace, device="cpu", dtype="float32")
    ids = source.tokenizer("Fine-tuning adapts a pretrained model", return_tensors="pt")
    with torch.inference_mode():
        a = source.model(**ids).logits.softmax(-1)
        b = loaded.model(**ids).logits.softmax(-1)
    assert (a - b).abs().max() < 0.05


def test_a_cancel_during_calibration_leaves_no_artifact(workspace, tiny_artifact):
    asked = []

    def should_stop() -> bool:  # the third look (inside the calibration pass) says stop
        asked.append(1)
        return len(asked) >= 3

    result = run_quantize(
        QuantizeRecipe(model="tiny", method="int4-awq", out="tiny-awq", group=32),
        workspace=workspace,
        should_stop=should_stop,
    )
    assert result == {"artifact": "", "stopped": True}
    assert not workspace.exists("tiny-awq")
    assert not list((workspace.root / ".staging").iterdir())
