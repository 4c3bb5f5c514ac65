"""RMSNorm as one Triton program per row, forward and backward.

    y = weight * (x * rsqrt(mean(x²) + eps)).to(x.dtype)          # Llama's RMSNorm

The forward reads each row once and keeps 1/rms (float32, one per row) for the backward, which
computes dx in the same pass and sums dweight per program before one small reduction:

    n = x * rstd;  dn = dy * weight
    dx = rstd * (dn - n * mean(dn * n));   dweight = Σ_rows dy * n

Reference: kernels.references.rms_norm_reference.
"""

from __future__ import annotations

import torch

from kernels._checks import block_warps, check_float, check_runnable, check_same_device
from kernels._triton import tl, triton  # interpreter chosen before any @jit

MAX_HIDDEN = 65536  # one row must fit one program


@triton.jit
def _rms_norm_forward_kernel(
    X, W, Y, RSTD, stride_x, stride_y, n_rows, n_cols, eps,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    row_mask = rows < n_rows
    mask = row_mask[:, None] & (cols < n_cols)[None, :]
    x_raw = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
    x = x_raw.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    normed = (x * rstd[:, None]).to(x_raw.dtype).to(tl.float32)  # Llama rounds to x's dtype
    w = tl.load(W + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    y = (normed * w[None, :]).to(Y.dtype.element_ty)
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y, mask=mask)
    tl.store(RSTD + rows, rstd, mask=row_mask)


@triton.jit
def _rms_norm_backward_kernel(
    DY, X, W, RSTD, DX, DW_PARTIAL, stride_dy, stride_x, stride_dx, n_rows, n_cols,
    rows_per_program, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    col_mask = cols < n_cols
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    start = pid.to(tl.int64) * rows_per_program  # int64 offsets: rows * stride may pass 2**31
    end = tl.minimum(start + rows_per_program, n_rows)
    for first in range(start, end, ROWS):
        rows = first + tl.arange(0, ROWS)
        row_mask = rows < end
        mask = row_mask[:, None] & col_mask[None, :]
        x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
        dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0)
        rstd = tl.load(RSTD + rows, mask=row_mask, other=0.0)
        n = x.to(tl.float32) * rstd[:, None]
        dy = dy.to(tl.float32)
        dn = dy * w[None, :]
        dx = rstd[:, None] * (dn - n * (tl.sum(dn * n, axis=1) / n_cols)[:, None])
        tl.store(
            DX + rows[:, None] * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask
        )
        dw += tl.sum(dy * n, axis=0)
    tl.store(DW_PARTIAL + pid * n_cols + cols, dw, mask=col_mask)


def _rows_per_tile(block: int) -> int:
    """Rows a program handles at once: one for wide rows, more (up to 64) for narrow ones, so a
    tile holds about 4096 values (also what keeps Triton's CPU interpreter fast enough)."""
    return max(1, min(64, 4096 // block))


def _programs(device: torch.device, rows: int, tile: int) -> int:
    tiles = triton.cdiv(rows, tile)
    if device.type == "cuda":
        return min(tiles, torch.cuda.get_device_properties(device).multi_processor_count * 4)
    return min(tiles, 2)  # the interpreter runs programs one after another


def rms_norm_forward(
    x: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward on `x` [..., hidden]. Returns (y like x, rstd float32 [rows])."""
    check_float("x", x, "rms_norm")
    check_float("weight", weight, "rms_norm")
    check_same_device("rms_norm", x=x, weight=weight)
    check_runnable("rms_norm", x)
    hidden = x.shape[-1]
    if weight.dim() != 1 or weight.shape[0] != hidden:
        raise ValueError(
            f"rms_norm: weight has shape {tuple(weight.shape)} but x's last dimension is {hidden}; "
            f"pass a 1-D weight of {hidden} values."
        )
    if hidden > MAX_HIDDEN:
        raise ValueError(f"rms_norm: hidden size {hidden} exceeds {MAX_HIDDEN}; use the reference.")
    x2 = x.reshape(-1, hidden)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    rows = x2.shape[0]
    out_dtype = torch.promote_types(x.dtype, weight.dtype)
    y = torch.empty((rows, hidden), dtype=out_dtype, device=x.device)
    rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
    if rows:
        block = triton.next_power_of_2(hidden)
        tile = _rows_per_tile(block)
        _rms_norm_forward_kernel[(triton.cdiv(rows, tile),)](
            x2, weight, y, rstd, x2.stride(0), y.stride(0), rows, hidden, eps,
            ROWS=tile, BLOCK=block, num_warps=block_warps(block * tile),
        )  # fmt: skip
    return y.reshape(*x.shape[:-1], hidden), rstd


def rms_norm_backward(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (dx like x, dweight like weight) from dy [..., hidden]."""
    hidden = x.shape[-1]
    x2 = x.reshape(-1, hidden)
    dy2 = dy.reshape(-1, hidden)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if dy2.stride(-1) != 1:
        dy2 = dy2.contiguous()
    rows = x2.shape[0]
    dx = torch.empty((rows, hidden), dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(hidden)
    tile = _rows_per_tile(block)
    programs = max(_programs(x.device, rows, tile), 1)
    partial = torch.zeros((programs, hidden), dtype=torch.float32, device=x.device)
    if rows:
        _rms_norm_backward_kernel[(programs,)](
            dy2, x2, weight, rstd, dx, partial, dy2.stride(0), x2.stride(0), dx.stride(0),
            rows, hidden, triton.cdiv(rows, programs), ROWS=tile, BLOCK=block,
            num_warps=block_warps(block * tile),
        )  # fmt: skip
    return dx.reshape(x.shape), partial.sum(0).to(weight.dtype)


class RMSNormFunction(torch.autograd.Function):
    """Autograd for the Triton RMSNorm: saves x, weight and 1/rms per row."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # noqa: ANN001
        y, rstd = rms_norm_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(dy, x, weight, rstd)
        return dx, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Llama's RMSNorm of `x` [..., hidden] with `weight` [hidden], differentiable in both.

    Raises:
        TypeError: a non-float input.  ValueError: mismatched shapes or devices.
        RuntimeError: a device the Triton kernel cannot run on.
    """
    return RMSNormFunction.apply(x, weight, eps)
