"""Quantized model folders: save them, recognise them, load them for chat and evaluation.

A Workbench-quantized model folder is a Hugging Face folder whose config.json documents the
scheme under `quantization_config` (with `"quant_method": "workbench"`):

    config.json           the model's config + quantization_config: method, bits, group size,
                          per-layer formats, the math of each format, calibration data
    model.safetensors     int8 / packed int4 codes with their scales; other tensors as saved
    tokenizer files, chat template, generation_config.json

A GGUF export is a folder with `model.gguf` beside the same kind of config (format "gguf"); it
loads through transformers' GGUF reader, dequantized, so it can be chatted with and scored like
the others. bitsandbytes nf4 models are plain transformers-quantized folders and need nothing
from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

QUANT_METHOD = "workbench"
WEIGHTS_FILE = "model.safetensors"
GGUF_FILE = "model.gguf"
FORMAT_DOCS = {
    "int8": "symmetric int8 per output row: w = qweight * scales[:, None]",
    "int8-g32": "symmetric int8 per group of 32 input columns: "
    "w[:, 32j:32j+32] = qweight[:, 32j:32j+32] * scales[:, j:j+1]",
    "int4": "asymmetric 4-bit per group of input columns, two codes a byte (low nibble first): "
    "w = (q - 8) * scale + zero; input columns padded to a multiple of the group with copies "
    "of the last column",
}


def read_config(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def quantization_of(folder: Path | None) -> dict:
    """The quantization_config of the model in `folder` ({} for a full-precision model)."""
    if folder is None:
        return {}
    config = read_config(folder).get("quantization_config") or {}
    return config if isinstance(config, dict) else {}


def is_workbench_quantized(folder: Path | None) -> bool:
    """True for folders written by `save_quantized` or the GGUF export."""
    return quantization_of(folder).get("quant_method") == QUANT_METHOD


def save_quantized(model: Any, tokenizer: Any, folder: Path, scheme: dict) -> None:
    """Write the quantized `model` (its layers swapped by quantize_linears) into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    config = model.config.to_dict()
    config["quantization_config"] = {"quant_method": QUANT_METHOD, **scheme}
    config["formats_explained"] = {
        f: FORMAT_DOCS[f] for f in sorted(set(scheme["modules"].values()))
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "quant": QUANT_METHOD})
    (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), "utf-8")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_quantized(folder: Path, device: str = "cpu", dtype: str = "bfloat16") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a Workbench-quantized folder.

    Raises:
        WorkbenchError: the weights are missing or do not match the documented scheme.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.initialization import no_init_weights

    from workbench.quantize.modules import empty_quantized_linears

    folder = Path(folder)
    scheme = quantization_of(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if scheme.get("format") == "gguf":
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=GGUF_FILE, dtype=getattr(torch, dtype)
        )
        return model.to(device).eval(), tokenizer
    from safetensors.torch import load_file

    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    empty_quantized_linears(model, scheme["modules"], scheme.get("group_size", 128))
    path = folder / WEIGHTS_FILE
    try:
        state = load_file(str(path))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (OSError, RuntimeError) as exc:
        raise WorkbenchError(
            f"The quantized weights in {str(path)!r} cannot be read: {exc}",
            where=str(path),
            fix="The file is damaged or incomplete: quantize the source model again.",
        ) from exc
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise WorkbenchError(
            f"The quantized weights do not match the scheme in config.json (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}).",
            where=str(folder),
            fix="Quantize the source model again; do not mix files of different runs.",
        )
    model = model.to(device=device, dtype=getattr(torch, dtype))
    if device == "cuda":
        use_gpu_kernels(model)
    generation = folder / "generation_config.json"
    if generation.is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.eval(), tokenizer


def use_gpu_kernels(model) -> None:
    """On a GPU, run the int8 / int4 layers, RMSNorm and SwiGLU on the Triton kernels of the
    top-level `kernels` package (dequantizing GEMV/GEMM: no full-precision copy of a weight).
    Elsewhere, or where the package or triton cannot be imported, the model stays as it is."""
    try:
        from kernels import patch_llama
    except ImportError:  # the repository root is not on sys.path, or HF's own `kernels`
        return
    patch_llama(model, training=False)
