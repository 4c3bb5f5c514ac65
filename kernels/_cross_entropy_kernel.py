"""The Triton row kernel of the fused linear + cross-entropy (see kernels/cross_entropy.py)."""

from __future__ import annotations

from kernels._triton import tl, triton


@triton.jit
def cross_entropy_rows_kernel(
    LOGITS, stride, LABELS, LOSS, n_cols, ignore_index, scale, BLOCK: tl.constexpr
):
    """One program per row: an online log-sum-exp over the row in blocks, the row's loss, then
    the gradient (softmax - onehot) * scale written over the logits (0 for an ignored row)."""
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride
    label = tl.load(LABELS + row)
    valid = label != ignore_index
    target_col = tl.where(valid, label, 0)
    row_scale = tl.where(valid, scale, 0.0)

    m = float("-inf")
    d = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(d)
    target = tl.load(base + target_col).to(tl.float32)  # read before the row is overwritten
    tl.store(LOSS + row, (lse - target) * row_scale)

    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        grad = tl.exp(x - lse)
        grad = tl.where(cols == target_col, grad - 1.0, grad) * row_scale
        tl.store(base + cols, grad.to(LOGITS.dtype.element_ty), mask=mask)
