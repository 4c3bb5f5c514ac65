"""Quantized linear layers, and swapping them into a model.

`Int8Linear` and `Int4Linear` hold their weights quantized (see schemes.py) and compute
`x @ W.T (+ bias)`, reading the small weights directly where a kernel can:
- up to KERNEL_MAX_ROWS rows (decoding) on a CPU with AVX2: Workbench's own kernels
  (workbench/cpu_gemv.py), float32 activations;
- the same rows on other CPUs: torch's weight-only kernels (`_weight_int8pack_mm`, and
  `_weight_int4pack_mm_for_cpu` after a one-time repacking), with bfloat16 inputs: without
  AVX-512 they are many times slower with float32 inputs (bench/RESULTS.md);
- more rows (prompts, perplexity windows): the weight dequantized once, then the float GEMM.
On CUDA, or with `WORKBENCH_QUANT_REFERENCE=1`, they dequantize to the activation dtype and call
`F.linear` — the reference path the tests compare the kernels with.

    model = quantize_linears(model, {"model.layers.0.mlp.up_proj": "int4", ...}, group=128)
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from workbench import cpu_gemv
from workbench.quantize.schemes import (
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    pad_columns,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)

# Float dtypes the CPU kernels take for activations.
_CPU_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The weight-only kernels are GEMV-shaped: for decoding (a few rows) they read the small weights
# once; for a prompt or a perplexity window (hundreds of rows) dequantizing once and calling the
# float GEMM is many times faster (measured: 512 rows, int8 kernel 8x slower than fp32 GEMM).
KERNEL_MAX_ROWS = 16


def use_kernels(x: torch.Tensor) -> bool:
    """Whether the CPU weight-only kernels apply to activations `x`."""
    return (
        x.device.type == "cpu"
        and x.dtype in _CPU_KERNEL_DTYPES
        and x.numel() // x.shape[-1] <= KERNEL_MAX_ROWS
        and os.environ.get("WORKBENCH_QUANT_REFERENCE", "") != "1"
    )


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias, with q int8 [out, in] and one scale per output row, or
    (group > 0) one per group of `group` input columns (finer; torch has no kernel for it, so
    without the AVX2 kernels decoding uses a dense copy in the activation dtype made on first
    use — counted by the report's memory)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, group: int = 0
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = in_features, out_features, group
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        shape = (out_features, in_features // group) if group else (out_features,)
        self.register_buffer("scales", torch.ones(shape))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._kernel: tuple | None = None  # (bf16 scales,) or (dense weight,)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group: int = 0) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group)
        q, scale = quantize_int8(linear.weight, group)
        module.qweight.copy_(q)
        module.scales = scale.to(linear.weight.dtype)
        if linear.bias is not None:
            module.bias = linear.bias.detach().clone()
        return module

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_int8(self.qweight, self.scales).to(dtype)

    def _kernel_weights(self, dtype: torch.dtype) -> torch.Tensor:
        wanted = dtype if self.group else cpu_gemv.TORCH_KERNEL_DTYPE
        if self._kernel is None or self._kernel[0].dtype != wanted:
            made = self.dequantized(dtype) if self.group else self.scales.to(wanted)
            self._kernel = (made,)
        return self._kernel[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # group 0 (a scale per row) and groups of whole 32-column runs both suit the AVX2 kernel
        if use_kernels(x) and cpu_gemv.available() and self.group % cpu_gemv.RUN == 0:
            y = cpu_gemv.int8_matmul(x, self.qweight, self.scales).to(x.dtype)
        elif use_kernels(x) and self.group:
            y = F.linear(x, self._kernel_weights(x.dtype))
        elif use_kernels(x):
            scales = self._kernel_weights(x.dtype)
            y = cpu_gemv.torch_kernel_matmul(
                x, self.out_features, torch.ops.aten._weight_int8pack_mm, self.qweight, scales
            )
        else:
            y = F.linear(x, self.dequantized(x.dtype))
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's own signature
        self._kernel = None  # moved or cast: rebuild the kernel's copy on next use
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        per = f"group={self.group}" if self.group else "per row"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 {per}"


class Int4Linear(nn.Module):
    """y = x @ W.T + bias with W stored as 4-bit codes per group of `group` input columns.

    Stored (the artifact's format): `qweight` uint8 [out, padded_in / 2] (two codes a byte),
    `scales` and `zeros` [out, padded_in / group]; padded_in is in_features rounded up to the
    group. The CPU kernel's own packed copy is built on first use and never saved.
    """

    def __init__(self, in_features: int, out_features: int, group: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.group = in_features, out_features, group
        self.padded_in = in_features + (-in_features) % group
        groups = self.padded_in // group
        self.register_buffer(
            "qweight", torch.zeros(out_features, self.padded_in // 2, dtype=torch.uint8)
        )
        self.register_buffer("scales", torch.ones(out_features, groups))
        self.register_buffer("zeros", torch.zeros(out_features, groups))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._kernel: tuple | None = None  # (packed weight, scales_and_zeros) for the CPU kernel
        self._fast: tuple | None = None  # (packed codes, scales, lows) for the AVX2 kernel

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group: int, clip: torch.Tensor | float = 1.0
    ) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, group, linear.bias is not None)
        q, scales, zeros = quantize_int4(pad_columns(linear.weight, group), group, clip)
        module.qweight.copy_(pack_int4(q))
        module.scales = scales.to(linear.weight.dtype)
        module.zeros = zeros.to(linear.weight.dtype)
        if linear.bias is not None:
            module.bias = linear.bias.detach().clone()
        return module

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        w = dequantize_int4(unpack_int4(self.qweight), self.scales, self.zeros, self.group)
        return w[:, : self.in_features].to(dtype)

    def _kernel_weights(self) -> tuple:
        if self._kernel is None:
            codes = unpack_int4(self.qweight).to(torch.int32)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.contiguous(), 1)
            scales_zeros = torch.stack([self.scales.t(), self.zeros.t()], dim=2)
            self._kernel = (packed, scales_zeros.to(cpu_gemv.TORCH_KERNEL_DTYPE).contiguous())
        return self._kernel

    def _fast_weights(self) -> tuple:
        """The AVX2 kernel's operands: the stored codes as they are (the same nibble order as
        cpu_gemv.pack_int4), and each group's scale and low (w = (q - 8) * scale + zero)."""
        if self._fast is None:
            scales = self.scales.float()
            lows = self.zeros.float() - 8.0 * scales
            self._fast = (self.qweight, scales.contiguous(), lows.contiguous())
        return self._fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_kernels(x) and cpu_gemv.available():
            if self.padded_in != self.in_features:
                x = F.pad(x, (0, self.padded_in - self.in_features))
            y = cpu_gemv.int4_matmul(x, *self._fast_weights()).to(x.dtype)
        elif use_kernels(x):
            if self.padded_in != self.in_features:
                x = F.pad(x, (0, self.padded_in - self.in_features))
            packed, scales_zeros = self._kernel_weights()
            y = cpu_gemv.torch_kernel_matmul(
                x,
                self.out_features,
                torch.ops.aten._weight_int4pack_mm_for_cpu,
                packed,
                self.group,
                scales_zeros,
            )
        else:
            y = F.linear(x, self.dequantized(x.dtype))
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's own signature
        self._kernel = self._fast = None  # moved or cast: rebuild the kernels' copies on next use
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 group={self.group}"
        )


FORMATS = ("int8", "int8-g32", "int4")  # int8-g32: int8 with a scale per 32 columns


def _int8_group(fmt: str) -> int:
    return int(fmt.split("-g")[1]) if "-g" in fmt else 0


def linear_names(model: nn.Module) -> list[str]:
    """Names of the model's nn.Linear modules, in model order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_linears(
    model: nn.Module,
    formats: dict[str, str],
    group: int = 128,
    clips: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Replace each nn.Linear named in `formats` by its quantized form ("int8" or "int4").

    `clips` holds per-group range factors for int4 layers (from the activation-aware search).
    A tied output layer gets its own quantized copy; the embedding stays as it is.
    """
    clips = clips or {}
    for name, fmt in formats.items():
        linear = model.get_submodule(name)
        if fmt.startswith("int8"):
            quantized = Int8Linear.from_linear(linear, _int8_group(fmt))
        else:
            quantized = Int4Linear.from_linear(linear, group, clips.get(name, 1.0))
        _set_module(model, name, quantized)
    if "lm_head" in formats and getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False
    return model


def empty_quantized_linears(model: nn.Module, formats: dict[str, str], group: int) -> nn.Module:
    """Put empty quantized layers (right shapes, zero weights) where `formats` says, for loading."""
    for name, fmt in formats.items():
        linear = model.get_submodule(name)
        bias = getattr(linear, "bias", None) is not None
        if fmt.startswith("int8"):
            module = Int8Linear(linear.in_features, linear.out_features, bias, _int8_group(fmt))
        else:
            module = Int4Linear(linear.in_features, linear.out_features, group, bias)
        _set_module(model, name, module)
    return model
