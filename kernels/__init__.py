"""Triton kernels for Workbench, each beside a pure-torch reference that defines its result.

    from kernels import patch_llama
    report = patch_llama(model, training=True)       # CUDA: Triton kernels; CPU: references

Kernels (one module each: Triton kernel, launcher with checks, autograd.Function):
  cross_entropy.fused_linear_cross_entropy  the LM loss in chunks, never the full logits
  rms_norm.rms_norm                         Llama's RMSNorm, forward and backward
  swiglu.swiglu                             silu(gate) * up, forward and backward
  dequant_matmul.int8_linear / int4_linear  W8A16 / W4A16 GEMM and GEMV on quantized weights
References: kernels.references (pure torch, no Triton).

Importing `kernels` imports neither Triton nor transformers: the names below load their module
on first use (Triton then picks its CPU interpreter when there is no GPU; see kernels/_triton.py).

Note: this folder shadows the PyPI package `kernels` (Hugging Face's kernel hub) whenever the
repository root is first on sys.path. transformers and bitsandbytes only use that package when it
is available and fall back cleanly; tests/kernels/test_name_clash.py keeps that true.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "patch_llama": "kernels.patch",
    "PatchReport": "kernels.patch",
    "fused_linear_cross_entropy": "kernels.cross_entropy",
    "rms_norm": "kernels.rms_norm",
    "swiglu": "kernels.swiglu",
    "int8_linear": "kernels.dequant_matmul",
    "int4_linear": "kernels.dequant_matmul",
    "int8_matmul": "kernels.dequant_matmul",
    "int4_matmul": "kernels.dequant_matmul",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
