"""Fused linear + cross-entropy vs the eager `cross_entropy(x @ W.T, y)`: loss, d x, d W."""

from __future__ import annotations

from functools import partial

import pytest
import torch

pytest.importorskip("triton")

from kernels.cross_entropy import (  # noqa: E402
    cross_entropy_rows_triton,
    fused_linear_cross_entropy,
)
from kernels.references import (  # noqa: E402
    cross_entropy_rows_reference,
    linear_cross_entropy_reference,
)

ROW_KERNELS = {
    "triton": cross_entropy_rows_triton,
    # blocks of 64 columns: the online log-sum-exp then spans several blocks per row
    "triton-block64": partial(cross_entropy_rows_triton, block=64),
    "torch": cross_entropy_rows_reference,
}
# (tokens, hidden, vocab, chunk rows)
CASES = [(1, 8, 7, None), (7, 16, 1023, 3), (13, 32, 100, 4), (6, 24, 431, None)]


def _run(loss_fn, x, w, labels, grad_scale=2.0):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    loss = loss_fn(x, w, labels)
    (loss * grad_scale).backward()
    return loss.detach(), x.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", list(ROW_KERNELS))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_loss_and_gradients_match_eager(case, rows, dtype, device, assert_close):
    tokens, hidden, vocab, chunk = case
    torch.manual_seed(0)
    x = torch.randn(tokens, hidden, device=device, dtype=dtype)
    w = (torch.randn(vocab, hidden, device=device) / hidden**0.5).to(dtype)
    labels = torch.randint(0, vocab, (tokens,), device=device)
    labels[1::3] = -100  # some tokens carry no loss
    fused = partial(fused_linear_cross_entropy, chunk_rows=chunk, rows_fn=ROW_KERNELS[rows])

    loss1, dx1, dw1 = _run(fused, x, w, labels)
    loss2, dx2, dw2 = _run(linear_cross_entropy_reference, x, w, labels)

    assert loss1.dtype == torch.float32
    assert_close(loss1, loss2, dtype)
    assert_close(dx1, dx2, dtype)
    assert_close(dw1, dw2, dtype, scale=2.0)


@pytest.mark.parametrize("rows", ["triton", "torch"])
def test_sum_reduction_and_batched_input(rows, device, assert_close):
    torch.manual_seed(1)
    x = torch.randn(2, 5, 16, device=device)
    w = torch.randn(50, 16, device=device)
    labels = torch.randint(0, 50, (2, 5), device=device)
    labels[0, :2] = -100
    fused = partial(
        fused_linear_cross_entropy, reduction="sum", chunk_rows=4, rows_fn=ROW_KERNELS[rows]
    )
    eager = partial(linear_cross_entropy_reference, reduction="sum")
    loss1, dx1, dw1 = _run(fused, x, w, labels, grad_scale=0.5)
    loss2, dx2, dw2 = _run(
        lambda a, b, y: eager(a.reshape(-1, 16), b, y.reshape(-1)), x, w, labels, 0.5
    )
    assert_close(loss1, loss2, torch.float32)
    assert_close(dx1, dx2, torch.float32)
    assert_close(dw1, dw2, torch.float32)


def test_no_chunk_holds_more_than_its_share_of_the_logits(device):
    seen = []

    def recording(logits, labels, ignore_index, scale):
        seen.append(tuple(logits.shape))
        return cross_entropy_rows_reference(logits, labels, ignore_index, scale)

    x = torch.randn(64, 32, device=device, requires_grad=True)
    w = torch.randn(512, 32, device=device, requires_grad=True)
    labels = torch.randint(0, 512, (64,), device=device)
    fused_linear_cross_entropy(x, w, labels, rows_fn=recording).backward()
    # default chunking: vocab / hidden = 16 chunks of 4 rows, each [4, 512] = x's 64 x 32 values
    assert seen == [(4, 512)] * 16


def test_frozen_weight_gets_no_gradient_and_all_ignored_gives_zero(device):
    x = torch.randn(4, 8, device=device, requires_grad=True)
    w = torch.randn(10, 8, device=device)  # frozen, as lm_head under LoRA
    labels = torch.full((4,), -100, device=device)
    loss = fused_linear_cross_entropy(x, w, labels, rows_fn=cross_entropy_rows_triton)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0 and w.grad is None


def test_bad_inputs_are_refused_with_clear_messages(device):
    x = torch.randn(3, 8, device=device)
    w = torch.randn(10, 8, device=device)
    with pytest.raises(ValueError, match="outside the vocabulary 0..9"):
        fused_linear_cross_entropy(x, w, torch.tensor([1, 10, -100], device=device))
    with pytest.raises(ValueError, match=r"must be \[vocab, 8\]"):
        fused_linear_cross_entropy(x, w.T, torch.zeros(3, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="labels must be int64"):
        fused_linear_cross_entropy(x, w, torch.zeros(3, dtype=torch.int32, device=device))
    with pytest.raises(TypeError, match="cast one"):
        fused_linear_cross_entropy(x, w.half(), torch.zeros(3, dtype=torch.long, device=device))


def test_second_backward_is_refused(device):
    x = torch.randn(3, 8, device=device, requires_grad=True)
    w = torch.randn(10, 8, device=device)
    loss = fused_linear_cross_entropy(x, w, torch.tensor([1, 2, 3], device=device))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()
