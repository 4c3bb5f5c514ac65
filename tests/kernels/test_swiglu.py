"""SwiGLU kernel vs `swiglu_reference`, forward and both gradients."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.references import swiglu_reference  # noqa: E402
from kernels.swiglu import swiglu  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1,), (7, 1), (2, 7, 1023), (3, 431)], ids=str)
def test_forward_and_gradients_match_reference(shape, dtype, device, assert_close):
    torch.manual_seed(0)
    a = (3 * torch.randn(shape, device=device)).to(dtype)  # reach silu's curved part
    b = torch.randn(shape, device=device, dtype=dtype)
    dc = torch.randn(shape, device=device, dtype=dtype)

    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    c1 = swiglu(a1, b1)
    c1.backward(dc)
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    c2 = swiglu_reference(a2, b2)
    c2.backward(dc)

    assert c1.dtype == dtype and c1.shape == a.shape
    assert_close(c1, c2, dtype)
    assert_close(a1.grad, a2.grad, dtype)
    assert_close(b1.grad, b2.grad, dtype)


def test_non_contiguous_inputs(device, assert_close):
    both = torch.randn(6, 2 * 37, device=device)
    gate, up = both[:, :37], both[:, 37:]  # views with a row stride of 74
    assert_close(swiglu(gate, up), swiglu_reference(gate, up), torch.float32)


def test_launcher_rejects_mismatched_inputs(device):
    with pytest.raises(ValueError, match="must have one shape"):
        swiglu(torch.randn(2, 3, device=device), torch.randn(3, 2, device=device))
    with pytest.raises(TypeError, match="pass one dtype"):
        swiglu(torch.randn(4, device=device), torch.randn(4, device=device).half())
