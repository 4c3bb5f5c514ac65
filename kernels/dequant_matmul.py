"""Dequantizing GEMM / GEMV: `x @ W.T` with W read as int8 or int4 and dequantized in registers.

Weights are in workbench.quantize's storage format (its module is the source of truth):
  int8 (W8A16)  qweight int8 [out, in]; scales [out] (per row) or [out, in / g] (per group).
                w = q * scale.
  int4 (W4A16)  qweight uint8 [out, padded_in / 2], column 2i in the low nibble, 2i+1 in the
                high one; scales, zeros [out, padded_in / g]; w = (q - 8) * scale + zero.
                padded_in is in_features rounded up to the group g; padded columns are skipped.

Decode (a few rows) is bound by reading the weights, so for ≤ GEMV_MAX_ROWS rows a GEMV kernel
reads each weight byte once per row and reduces over K in registers; larger batches use a tiled
GEMM with tl.dot. Activations are float16 / bfloat16 (float32 also works); the result has x's
dtype. `DequantLinearFunction` gives x a gradient (`dy @ W`), so a LoRA on top can train.

References: kernels.references.int8_linear_reference / int4_linear_reference.
"""

from __future__ import annotations

import torch

from kernels._checks import check_float, check_runnable, check_same_device
from kernels._triton import (
    DOT_IN_FP32,
    INTERPRETED,
    tl,
    triton,
)  # interpreter chosen before any @jit
from kernels.references import dequantize_int4_reference, dequantize_int8_reference

GEMV_MAX_ROWS = 4


@triton.jit
def _dequant_gemm_kernel(
    X, QW, S, Z, Y, M, N, K, stride_xm, stride_qn, stride_sn, stride_ym,
    GROUP: tl.constexpr, INT4: tl.constexpr, PER_ROW: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = rm < M
    n_mask = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_mask = rk < K
        x = tl.load(
            X + rm[:, None].to(tl.int64) * stride_xm + rk[None, :],
            mask=m_mask[:, None] & k_mask[None, :],
            other=0.0,
        )
        w_mask = k_mask[:, None] & n_mask[None, :]
        row = rn[None, :].to(tl.int64)
        if INT4:
            byte = tl.load(QW + row * stride_qn + (rk // 2)[:, None], mask=w_mask, other=0)
            code = (byte >> ((rk % 2) * 4)[:, None].to(tl.uint8)) & 0xF
            group_ptr = row * stride_sn + (rk // GROUP)[:, None]
            s = tl.load(S + group_ptr, mask=w_mask, other=0.0).to(tl.float32)
            z = tl.load(Z + group_ptr, mask=w_mask, other=0.0).to(tl.float32)
            w = (code.to(tl.float32) - 8.0) * s + z  # [BLOCK_K, BLOCK_N]
        else:
            w = tl.load(QW + row * stride_qn + rk[:, None], mask=w_mask, other=0).to(tl.float32)
            if not PER_ROW:
                s = tl.load(S + row * stride_sn + (rk // GROUP)[:, None], mask=w_mask, other=0.0)
                w = w * s.to(tl.float32)
        if DOT_FP32:
            acc += tl.dot(x.to(tl.float32), w, input_precision="ieee")
        else:
            acc += tl.dot(x, w.to(x.dtype))
    if PER_ROW:
        acc = acc * tl.load(S + rn, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(
        Y + rm[:, None].to(tl.int64) * stride_ym + rn[None, :],
        acc.to(Y.dtype.element_ty),
        mask=m_mask[:, None] & n_mask[None, :],
    )


@triton.jit
def _dequant_gemv_kernel(
    X, QW, S, Z, Y, N, K, stride_xm, stride_qn, stride_sn, stride_ym,
    GROUP: tl.constexpr, INT4: tl.constexpr, PER_ROW: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # One row of x against BLOCK_N weight rows; the K loop reads each weight byte once, along
    # the row (coalesced), and multiplies on the CUDA cores: at batch 1 the bytes set the speed.
    pid_n = tl.program_id(0)
    m = tl.program_id(1).to(tl.int64)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = rn < N
    row = rn[:, None].to(tl.int64)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if INT4:
        # BLOCK_K columns = BLOCK_K // 2 bytes: low nibbles are the even columns, high the odd.
        for k0 in range(0, K, BLOCK_K):
            rb = k0 // 2 + tl.arange(0, BLOCK_K // 2)  # byte index in the row
            even = 2 * rb
            odd = even + 1
            b_mask = n_mask[:, None] & (even < K)[None, :]
            byte = tl.load(QW + row * stride_qn + rb[None, :], mask=b_mask, other=0)
            group_ptr = row * stride_sn + (even // GROUP)[None, :]  # one group holds both
            s = tl.load(S + group_ptr, mask=b_mask, other=0.0).to(tl.float32)
            z = tl.load(Z + group_ptr, mask=b_mask, other=0.0).to(tl.float32)
            low = ((byte & 0xF).to(tl.float32) - 8.0) * s + z
            high = ((byte >> 4).to(tl.float32) - 8.0) * s + z
            x_even = tl.load(X + m * stride_xm + even, mask=even < K, other=0.0).to(tl.float32)
            x_odd = tl.load(X + m * stride_xm + odd, mask=odd < K, other=0.0).to(tl.float32)
            acc += tl.sum(low * x_even[None, :] + high * x_odd[None, :], axis=1)
    else:
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            k_mask = rk < K
            w_mask = n_mask[:, None] & k_mask[None, :]
            w = tl.load(QW + row * stride_qn + rk[None, :], mask=w_mask, other=0).to(tl.float32)
            if not PER_ROW:
                s = tl.load(S + row * stride_sn + (rk // GROUP)[None, :], mask=w_mask, other=0.0)
                w = w * s.to(tl.float32)
            x = tl.load(X + m * stride_xm + rk, mask=k_mask, other=0.0).to(tl.float32)
            acc += tl.sum(w * x[None, :], axis=1)
    if PER_ROW:
        acc = acc * tl.load(S + rn, mask=n_mask, other=0.0).to(tl.float32)
    tl.store(Y + m * stride_ym + rn, acc.to(Y.dtype.element_ty), mask=n_mask)


# Decode GEMV: how many weight rows a program takes and how far along K it reads per step decide
# whether enough loads are in flight to saturate HBM, and the best choice depends on the GPU and
# the layer shape; so on a GPU the kernel is autotuned per (N, K, format). Under the interpreter
# one fixed configuration runs (tuning would only time the interpreter).
GEMV_FIXED = {"BLOCK_N": 64, "BLOCK_K": 128}
GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": block_n, "BLOCK_K": block_k}, num_warps=warps)
    for block_n, block_k, warps in (
        (8, 256, 2), (8, 512, 4), (16, 256, 4), (16, 512, 4),
        (16, 1024, 8), (32, 128, 4), (32, 256, 4), (64, 128, 4),
    )
]  # fmt: skip
_gemv = (
    _dequant_gemv_kernel
    if INTERPRETED
    else triton.autotune(GEMV_CONFIGS, key=["N", "K", "INT4", "PER_ROW"])(_dequant_gemv_kernel)
)


def _launch(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    group: int,
    int4: bool,
    per_row: bool,
    out_features: int,
) -> torch.Tensor:
    k = x.shape[-1]
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    y = torch.empty((m, out_features), dtype=x.dtype, device=x.device)
    z = zeros if zeros is not None else scales  # unread when not int4
    if m == 0 or out_features == 0:
        return y.reshape(*x.shape[:-1], out_features)
    if m <= GEMV_MAX_ROWS:
        fixed = GEMV_FIXED if INTERPRETED else {}  # autotuned on a GPU

        def grid(meta: dict) -> tuple[int, int]:
            return (triton.cdiv(out_features, meta["BLOCK_N"]), m)

        _gemv[grid](
            x2, qweight, scales, z, y, out_features, k, x2.stride(0), qweight.stride(0),
            scales.stride(0), y.stride(0), GROUP=group, INT4=int4, PER_ROW=per_row, **fixed,
        )  # fmt: skip
    else:
        block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
        block_n, block_k = 64, 32
        grid = (triton.cdiv(m, block_m), triton.cdiv(out_features, block_n))
        dot_fp32 = DOT_IN_FP32 or x.dtype == torch.float32  # float32 x: no TF32 rounding
        _dequant_gemm_kernel[grid](
            x2, qweight, scales, z, y, m, out_features, k, x2.stride(0), qweight.stride(0),
            scales.stride(0), y.stride(0), GROUP=group, INT4=int4, PER_ROW=per_row,
            DOT_FP32=dot_fp32, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
        )  # fmt: skip
    return y.reshape(*x.shape[:-1], out_features)


def _check_common(kernel: str, x: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
    check_float("x", x, kernel)
    check_float("scales", scales, kernel)
    if bias is not None:
        check_float("bias", bias, kernel)
    check_runnable(kernel, x)


def int8_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """`x @ (q * scale).T` (W8A16) for x [..., in], int8 `qweight` [out, in] and `scales` [out]
    or [out, in / g]; returns [..., out] in x's dtype. No autograd (see int8_linear)."""
    kernel = "int8_matmul"
    _check_common(kernel, x, scales, None)
    check_same_device(kernel, x=x, qweight=qweight, scales=scales)
    if qweight.dtype != torch.int8 or qweight.dim() != 2:
        raise TypeError(
            f"{kernel}: qweight must be a 2-D int8 tensor, got {qweight.dtype} "
            f"{tuple(qweight.shape)}."
        )
    out_features, in_features = qweight.shape
    if x.shape[-1] != in_features:
        raise ValueError(
            f"{kernel}: x has {x.shape[-1]} features but qweight {tuple(qweight.shape)} takes "
            f"{in_features}."
        )
    per_row = scales.dim() == 1
    if per_row and scales.shape[0] != out_features:
        raise ValueError(f"{kernel}: scales {tuple(scales.shape)} must be [{out_features}].")
    group = in_features
    if not per_row:
        if scales.dim() != 2 or scales.shape[0] != out_features or in_features % scales.shape[1]:
            raise ValueError(
                f"{kernel}: group scales {tuple(scales.shape)} must be [{out_features}, groups] "
                f"with groups dividing {in_features}."
            )
        group = in_features // scales.shape[1]
    return _launch(
        x, qweight.contiguous(), scales.contiguous(), None, group, False, per_row, out_features
    )


def int4_matmul(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor
) -> torch.Tensor:
    """`x @ W.T` (W4A16) for x [..., in] and W in workbench.quantize's packed int4 format
    (see the module docstring); returns [..., out] in x's dtype. No autograd (see int4_linear)."""
    kernel = "int4_matmul"
    _check_common(kernel, x, scales, None)
    check_float("zeros", zeros, kernel)
    check_same_device(kernel, x=x, qweight=qweight, scales=scales, zeros=zeros)
    if qweight.dtype != torch.uint8 or qweight.dim() != 2:
        raise TypeError(
            f"{kernel}: qweight must be 2-D uint8 (two 4-bit codes a byte), got {qweight.dtype} "
            f"{tuple(qweight.shape)}."
        )
    out_features, padded_in = qweight.shape[0], qweight.shape[1] * 2
    if scales.shape != zeros.shape or scales.dim() != 2 or scales.shape[0] != out_features:
        raise ValueError(
            f"{kernel}: scales {tuple(scales.shape)} and zeros {tuple(zeros.shape)} must both be "
            f"[{out_features}, groups]."
        )
    groups = scales.shape[1]
    if padded_in % groups:
        raise ValueError(f"{kernel}: {groups} groups do not divide {padded_in} packed columns.")
    group = padded_in // groups
    in_features = x.shape[-1]
    if not padded_in - group < in_features <= padded_in:
        raise ValueError(
            f"{kernel}: x has {in_features} features but the weight packs {padded_in} columns "
            f"in groups of {group}; x must have {padded_in - group + 1}..{padded_in}."
        )
    return _launch(
        x, qweight.contiguous(), scales.contiguous(), zeros.contiguous(), group, True, False,
        out_features,
    )  # fmt: skip


class DequantLinearFunction(torch.autograd.Function):
    """y = matmul(x) + bias with a gradient for x only (the quantized weight is frozen)."""

    @staticmethod
    def forward(ctx, x, matmul, dequantize, bias):  # noqa: ANN001
        ctx.dequantize = dequantize
        y = matmul(x)
        return y if bias is None else y + bias.to(y.dtype)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        w = ctx.dequantize().to(dy.dtype)
        return dy @ w, None, None, None


def int8_linear(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """W8A16 linear layer: `x @ (q * scale).T + bias`, differentiable in x."""
    return DequantLinearFunction.apply(
        x,
        lambda t: int8_matmul(t, qweight, scales),
        lambda: dequantize_int8_reference(qweight, scales),
        bias,
    )


def int4_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """W4A16 linear layer: `x @ W.T + bias` with W packed int4, differentiable in x."""
    in_features = x.shape[-1]
    return DequantLinearFunction.apply(
        x,
        lambda t: int4_matmul(t, qweight, scales, zeros),
        lambda: dequantize_int4_reference(qweight, scales, zeros, in_features),
        bias,
    )
