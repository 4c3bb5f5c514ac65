"""The Triton row kernel of the fused linear + cross-entropy (see kernels/cross_entropy.py)."""

from __future__ import annotations

from kernels._triton import tl, triton


@triton.jit
def cross_entropy_rows_kernel(
    LOGITS, stride, LABELS, LOSS, n_rows, n_cols, ignore_index, scale,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """ROWS rows per program: an online log-sum-exp over each row in blocks of BLOCK columns,
    the row's loss, then its gradient (softmax - onehot) * scale written over the logits (0 for
    an ignored row). A 92k vocabulary runs one row per program; tiny test shapes run many."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_mask = rows < n_rows
    base = LOGITS + rows[:, None] * stride
    label = tl.load(LABELS + rows, mask=row_mask, other=ignore_index)
    valid = label != ignore_index
    target_col = tl.where(valid, label, 0)
    row_scale = tl.where(valid, scale, 0.0)

    m = tl.full((ROWS,), float("-inf"), dtype=tl.float32)
    d = tl.zeros((ROWS,), dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = row_mask[:, None] & (cols < n_cols)[None, :]
        x = tl.load(base + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows past the end: all -inf
        d = d * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
        m = m_new
    lse = tl.where(row_mask, m + tl.log(tl.where(row_mask, d, 1.0)), 0.0)
    target = tl.load(LOGITS + rows * stride + target_col, mask=row_mask, other=0.0)
    tl.store(LOSS + rows, (lse - target.to(tl.float32)) * row_scale, mask=row_mask)

    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = row_mask[:, None] & (cols < n_cols)[None, :]
        x = tl.load(base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        grad = tl.exp(x - lse[:, None])
        grad = tl.where(cols[None, :] == target_col[:, None], grad - 1.0, grad)
        grad = grad * row_scale[:, None]
        tl.store(base + cols[None, :], grad.to(LOGITS.dtype.element_ty), mask=mask)
