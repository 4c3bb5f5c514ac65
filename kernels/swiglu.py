"""SwiGLU, `silu(gate) * up`, as one elementwise Triton pass forward and one backward.

The Llama MLP computes `down(silu(gate(x)) * up(x))`; eager torch runs silu and the product as
two kernels and keeps three activations for the backward, this keeps two (gate and up) and
recomputes the sigmoid:

    s = sigmoid(a);  c = a * s * b
    da = dc * b * s * (1 + a * (1 - s));   db = dc * a * s

Reference: kernels.references.swiglu_reference.
"""

from __future__ import annotations

import torch

from kernels._checks import check_float, check_runnable, check_same_device
from kernels._triton import tl, triton  # interpreter chosen before any @jit

BLOCK = 1024


@triton.jit
def _swiglu_forward_kernel(A, B, C, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    a = tl.load(A + offsets, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offsets, mask=mask, other=0.0).to(tl.float32)
    c = a * tl.sigmoid(a) * b
    tl.store(C + offsets, c.to(C.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_backward_kernel(DC, A, B, DA, DB, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    dc = tl.load(DC + offsets, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(A + offsets, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offsets, mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(a)
    da = dc * b * s * (1.0 + a * (1.0 - s))
    db = dc * a * s
    tl.store(DA + offsets, da.to(DA.dtype.element_ty), mask=mask)
    tl.store(DB + offsets, db.to(DB.dtype.element_ty), mask=mask)


def _check(gate: torch.Tensor, up: torch.Tensor) -> None:
    check_float("gate", gate, "swiglu")
    check_float("up", up, "swiglu")
    check_same_device("swiglu", gate=gate, up=up)
    check_runnable("swiglu", gate)
    if gate.shape != up.shape:
        raise ValueError(
            f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} must have one shape."
        )
    if gate.dtype != up.dtype:
        raise TypeError(f"swiglu: gate is {gate.dtype} but up is {up.dtype}; pass one dtype.")


def swiglu_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Launch the forward: `silu(gate) * up` in gate's dtype (float32 inside)."""
    _check(gate, up)
    a, b = gate.contiguous(), up.contiguous()
    c = torch.empty_like(a)
    n = a.numel()
    if n:
        _swiglu_forward_kernel[(triton.cdiv(n, BLOCK),)](a, b, c, n, BLOCK=BLOCK, num_warps=4)
    return c


def swiglu_backward(
    dc: torch.Tensor, gate: torch.Tensor, up: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (d gate, d up) of `silu(gate) * up` given dc."""
    dc = dc.contiguous()
    da, db = torch.empty_like(gate), torch.empty_like(up)
    n = gate.numel()
    if n:
        _swiglu_backward_kernel[(triton.cdiv(n, BLOCK),)](
            dc, gate, up, da, db, n, BLOCK=BLOCK, num_warps=4
        )
    return da, db


class SwiGLUFunction(torch.autograd.Function):
    """Autograd for the Triton SwiGLU: saves gate and up, recomputes the sigmoid."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        c = swiglu_forward(gate, up)
        ctx.save_for_backward(gate.contiguous(), up.contiguous())
        return c

    @staticmethod
    def backward(ctx, dc: torch.Tensor):  # noqa: ANN001, ANN205
        gate, up = ctx.saved_tensors
        return swiglu_backward(dc, gate, up)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """`silu(gate) * up` for two tensors of one shape and dtype, differentiable in both.

    Raises:
        TypeError: non-float or mismatched dtypes.  ValueError: mismatched shapes or devices.
        RuntimeError: a device the Triton kernel cannot run on.
    """
    return SwiGLUFunction.apply(gate, up)
