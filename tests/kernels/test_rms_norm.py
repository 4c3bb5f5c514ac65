"""RMSNorm kernel vs `rms_norm_reference` (Llama's RMSNorm), forward and both gradients."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.references import rms_norm_reference  # noqa: E402
from kernels.rms_norm import rms_norm  # noqa: E402

SHAPES = [(1, 1), (7, 33), (2, 5, 1023), (3, 256)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_gradients_match_reference(shape, dtype, device, assert_close):
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype)
    w = (1 + 0.5 * torch.randn(shape[-1], device=device)).to(dtype)
    dy = torch.randn(shape, device=device, dtype=dtype)

    x1, w1 = x.clone().requires_grad_(), w.clone().requires_grad_()
    y1 = rms_norm(x1, w1, 1e-6)
    y1.backward(dy)
    x2, w2 = x.clone().requires_grad_(), w.clone().requires_grad_()
    y2 = rms_norm_reference(x2, w2, 1e-6)
    y2.backward(dy)

    assert y1.dtype == y2.dtype and y1.shape == y2.shape
    assert_close(y1, y2, dtype)
    assert_close(x1.grad, x2.grad, dtype)
    rows = x.numel() // shape[-1]
    assert_close(w1.grad, w2.grad, dtype, scale=max(1.0, rows**0.5))


def test_float32_weight_with_bfloat16_input_promotes_like_llama(device, assert_close):
    x = torch.randn(4, 64, device=device, dtype=torch.bfloat16)
    w = torch.rand(64, device=device) + 0.5
    y = rms_norm(x, w, 1e-5)
    assert y.dtype == torch.float32  # weight * h.to(bf16) promotes to float32 in Llama
    assert_close(y, rms_norm_reference(x, w, 1e-5), torch.bfloat16)


def test_launcher_rejects_bad_inputs_with_clear_messages(device):
    x = torch.randn(3, 8, device=device)
    with pytest.raises(ValueError, match="weight has shape"):
        rms_norm(x, torch.ones(9, device=device))
    with pytest.raises(TypeError, match="dtype torch.int64"):
        rms_norm(torch.ones(3, 8, dtype=torch.int64, device=device), torch.ones(8, device=device))
