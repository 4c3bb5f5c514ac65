"""The kernels at realistic shapes on a GPU, compiled (skipped without CUDA).

Compared by relative error norm ‖a - b‖ / ‖b‖, since at these sizes 16-bit roundings differ
in many places by one step. Never run in this project's CPU CI; see kernels/README.md.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

BF16 = torch.bfloat16


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def _grads(fn, *tensors, dy=None):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    out.backward(dy if dy is not None else torch.ones_like(out))
    return out.detach(), [t.grad for t in leaves]


def test_rms_norm_llama_7b_shape():
    from kernels.references import rms_norm_reference
    from kernels.rms_norm import rms_norm

    x = torch.randn(4, 2048, 4096, device="cuda", dtype=BF16)
    w = torch.rand(4096, device="cuda", dtype=BF16) + 0.5
    dy = torch.randn_like(x)
    y1, (dx1, dw1) = _grads(lambda a, b: rms_norm(a, b, 1e-5), x, w, dy=dy)
    y2, (dx2, dw2) = _grads(lambda a, b: rms_norm_reference(a, b, 1e-5), x, w, dy=dy)
    assert _rel(y1, y2) < 1e-2 and _rel(dx1, dx2) < 1e-2 and _rel(dw1, dw2) < 1e-2


def test_swiglu_llama_7b_shape():
    from kernels.references import swiglu_reference
    from kernels.swiglu import swiglu

    a = torch.randn(4, 2048, 11008, device="cuda", dtype=BF16)
    b = torch.randn_like(a)
    dc = torch.randn_like(a)
    c1, (da1, db1) = _grads(swiglu, a, b, dy=dc)
    c2, (da2, db2) = _grads(swiglu_reference, a, b, dy=dc)
    assert _rel(c1, c2) < 1e-2 and _rel(da1, da2) < 1e-2 and _rel(db1, db2) < 1e-2


def test_fused_linear_cross_entropy_internlm2_vocab():
    from kernels.cross_entropy import fused_linear_cross_entropy
    from kernels.references import linear_cross_entropy_reference

    tokens, hidden, vocab = 4096, 4096, 92544
    x = torch.randn(tokens, hidden, device="cuda", dtype=BF16)
    w = (torch.randn(vocab, hidden, device="cuda") / hidden**0.5).to(BF16)
    labels = torch.randint(0, vocab, (tokens,), device="cuda")
    labels[::7] = -100
    l1, (dx1, dw1) = _grads(lambda a, b: fused_linear_cross_entropy(a, b, labels), x, w)
    l2, (dx2, dw2) = _grads(lambda a, b: linear_cross_entropy_reference(a, b, labels), x, w)
    assert abs(l1.item() - l2.item()) < 1e-3 * l2.item()
    assert _rel(dx1, dx2) < 2e-2 and _rel(dw1, dw2) < 2e-2


def test_fused_linear_cross_entropy_uses_a_third_of_the_eager_peak_memory():
    from kernels.cross_entropy import fused_linear_cross_entropy
    from kernels.references import linear_cross_entropy_reference

    tokens, hidden, vocab = 8192, 4096, 92544
    x = torch.randn(tokens, hidden, device="cuda", dtype=BF16, requires_grad=True)
    w = torch.randn(vocab, hidden, device="cuda", dtype=BF16, requires_grad=True)
    labels = torch.randint(0, vocab, (tokens,), device="cuda")

    def peak(fn) -> int:
        x.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(x, w, labels).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    eager, fused = peak(linear_cross_entropy_reference), peak(fused_linear_cross_entropy)
    assert fused * 3 <= eager, (fused / 2**20, eager / 2**20)


@pytest.mark.parametrize("rows", [1, 16, 512])
@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_dequant_matmul_7b_mlp_shape(rows, fmt):
    from torch import nn

    from kernels.dequant_matmul import int4_linear, int8_linear
    from kernels.references import int4_linear_reference, int8_linear_reference
    from workbench.quantize.modules import Int4Linear, Int8Linear

    dense = nn.Linear(4096, 11008, bias=False)
    x = torch.randn(rows, 4096, device="cuda", dtype=torch.float16)
    if fmt == "int4":
        q = Int4Linear.from_linear(dense, 128).cuda()
        y = int4_linear(x, q.qweight, q.scales, q.zeros)
        ref = int4_linear_reference(x, q.qweight, q.scales, q.zeros)
    else:
        q = Int8Linear.from_linear(dense).cuda()
        y = int8_linear(x, q.qweight, q.scales)
        ref = int8_linear_reference(x, q.qweight, q.scales)
    assert _rel(y, ref) < 5e-3
