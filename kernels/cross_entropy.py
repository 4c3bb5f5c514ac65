"""Fused linear + cross-entropy: the language-model loss without the full [tokens, vocab] logits.

Eager training computes `logits = hidden @ lm_head.T` for every token ([tokens, vocab], 92,544
columns for InternLM2), upcasts them to float32 and keeps them and their gradient: the largest
memory cost of fine-tuning. Here the tokens go through in chunks (the Liger-Kernel scheme):

    for each chunk of rows:
        logits = x_chunk @ W.T                        # [chunk, vocab], the only big buffer
        loss_rows = ce_rows(logits, labels_chunk)     # Triton: a row's loss, and its gradient
                                                      # (softmax - onehot) / n written in place
        grad_x[chunk] = logits @ W;  grad_W += logits.T @ x_chunk

The gradients are computed during the forward (the loss is a scalar, so backward only scales
them by grad_output), and a chunk holds about as many logits as x has values.

`ce_rows` is the Triton row kernel on CUDA and `references.cross_entropy_rows_reference` on CPU,
so the chunking (and its memory saving) also holds on CPU. Reference for the whole loss:
`references.linear_cross_entropy_reference`.

grad_W accumulates in the weight's dtype across chunks (as Liger-Kernel does): each chunk's
product is summed in float32 by the GEMM, then rounded once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels._checks import check_float, check_same_device
from kernels.references import IGNORE_INDEX, cross_entropy_rows_reference

RowsFn = Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor]
MAX_BLOCK = 32768  # vocabulary columns a program holds at once


def cross_entropy_rows_triton(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    scale: float,
    block: int | None = None,
) -> torch.Tensor:
    """Per-row loss × scale (float32 [rows]); overwrites `logits` with their gradient.
    `block` (a power of two) sets the columns a program reads at once; tests make it small so
    that a row takes several blocks."""
    from kernels._checks import block_warps, check_runnable
    from kernels._cross_entropy_kernel import cross_entropy_rows_kernel
    from kernels._triton import triton

    check_runnable("fused_linear_cross_entropy", logits)
    rows, vocab = logits.shape
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows:
        block = block or min(MAX_BLOCK, triton.next_power_of_2(vocab))
        tile = max(1, min(64, 4096 // block))  # rows per program: 1 for a real vocabulary
        cross_entropy_rows_kernel[(triton.cdiv(rows, tile),)](
            logits, logits.stride(0), labels, loss, rows, vocab, ignore_index, scale,
            ROWS=tile, BLOCK=block, num_warps=block_warps(block * tile),
        )  # fmt: skip
    return loss


def default_rows_fn(device: torch.device) -> RowsFn:
    """The Triton row kernel on CUDA, the torch one elsewhere."""
    return cross_entropy_rows_triton if device.type == "cuda" else cross_entropy_rows_reference


def chunk_rows_for(rows: int, vocab: int, hidden: int) -> int:
    """Rows per chunk so that a chunk's logits are about as large as the hidden states."""
    from math import ceil

    per_chunk = ceil(rows / max(1, ceil(vocab / hidden)))
    return max(1, 1 << (per_chunk - 1).bit_length()) if per_chunk > 1 else 1


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """Loss and both gradients in one chunked forward; backward scales the stored gradients."""

    @staticmethod
    def forward(  # noqa: ANN001
        ctx,
        x: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        ignore_index: int,
        reduction: str,
        chunk_rows: int,
        rows_fn: RowsFn,
    ) -> torch.Tensor:
        rows = x.shape[0]
        vocab = weight.shape[0]
        valid = labels != ignore_index
        bad = valid & ((labels < 0) | (labels >= vocab))
        n_valid, n_bad = torch.stack([valid.sum(), bad.sum()]).tolist()  # one sync
        if n_bad:
            first = labels[bad][0].item()
            raise ValueError(
                f"fused_linear_cross_entropy: {n_bad} label(s) lie outside the vocabulary "
                f"0..{vocab - 1} (first: {first}); use {ignore_index} for tokens without a loss."
            )
        scale = (1.0 / n_valid if n_valid else 0.0) if reduction == "mean" else 1.0
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        loss_rows = torch.empty(rows, dtype=torch.float32, device=x.device)
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, rows, chunk_rows):
                end = min(start + chunk_rows, rows)
                x_chunk = x[start:end]
                logits = x_chunk @ weight.T
                loss_rows[start:end] = rows_fn(logits, labels[start:end], ignore_index, scale)
                if need_x:
                    torch.mm(logits, weight, out=grad_x[start:end])
                if need_w:
                    grad_w.addmm_(logits.T, x_chunk)
                del logits
        ctx.save_for_backward(
            grad_x if need_x else None, grad_w if need_w else None
        )  # kept as gradients, not inputs
        ctx.used = False
        return loss_rows.sum()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # noqa: ANN001, ANN205
        if ctx.used:
            raise RuntimeError(
                "fused_linear_cross_entropy: backward ran twice on one loss (retain_graph); "
                "its gradients are scaled in place, compute the loss again instead."
            )
        ctx.used = True
        grad_x, grad_w = ctx.saved_tensors
        if grad_x is not None:
            grad_x.mul_(grad_loss.to(grad_x.dtype))
        if grad_w is not None:
            grad_w.mul_(grad_loss.to(grad_w.dtype))
        return grad_x, grad_w, None, None, None, None, None


def fused_linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    chunk_rows: int | None = None,
    rows_fn: RowsFn | None = None,
) -> torch.Tensor:
    """`cross_entropy(x @ weight.T, labels)` without materialising the logits of all rows.

    Args:
        x: [..., hidden] hidden states (float16 / bfloat16 / float32).
        weight: [vocab, hidden], the output layer (no bias), same dtype as x.
        labels: [...] int64 token ids matching x's leading dims; `ignore_index` (-100) gives no
            loss. Labels are not shifted here: pass the next-token labels.
        reduction: "mean" over non-ignored tokens (0.0 when there are none) or "sum".
        chunk_rows: rows per chunk; by default a chunk's logits are about the size of x.
        rows_fn: the per-chunk row kernel; by default Triton on CUDA, torch elsewhere.

    Returns:
        The loss, a float32 scalar, differentiable in x and weight.

    Raises:
        TypeError / ValueError: wrong dtypes, shapes, devices, reduction or out-of-range labels.
    """
    kernel = "fused_linear_cross_entropy"
    check_float("x", x, kernel)
    check_float("weight", weight, kernel)
    check_same_device(kernel, x=x, weight=weight, labels=labels)
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{kernel}: weight {tuple(weight.shape)} must be [vocab, {x.shape[-1]}] for x "
            f"{tuple(x.shape)}."
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"{kernel}: x is {x.dtype} but weight is {weight.dtype}; cast one.")
    if labels.dtype != torch.int64 or labels.shape != x.shape[:-1]:
        raise ValueError(
            f"{kernel}: labels must be int64 of shape {tuple(x.shape[:-1])} (x's leading dims); "
            f"got {labels.dtype} {tuple(labels.shape)}."
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{kernel}: reduction must be 'mean' or 'sum', got {reduction!r}.")
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    labels = labels.reshape(-1).contiguous()
    chunk = chunk_rows or chunk_rows_for(x2.shape[0], weight.shape[0], weight.shape[1])
    rows_fn = rows_fn or default_rows_fn(x.device)
    return FusedLinearCrossEntropyFunction.apply(
        x2, weight, labels, ignore_index, reduction, max(1, chunk), rows_fn
    )
