"""W8A16 / W4A16 dequantizing GEMM and GEMV vs their references, on weights made by
workbench.quantize (its Int8Linear / Int4Linear are the storage format's source of truth)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("triton")

from kernels.dequant_matmul import GEMV_MAX_ROWS, int4_linear, int8_linear  # noqa: E402
from kernels.references import int4_linear_reference, int8_linear_reference  # noqa: E402
from workbench.quantize.modules import Int4Linear, Int8Linear  # noqa: E402

# (rows, in, out): rows <= GEMV_MAX_ROWS take the GEMV kernel, more the GEMM; `in` 33, 100 and
# 255 are padded to the int4 group, so the kernels must skip the padded columns.
SHAPES = [(1, 33, 7), (3, 100, 33), (7, 64, 65), (20, 255, 9)]
DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def _layer(rows_in: int, out: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(rows_in, out, bias=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_int4_matches_reference_and_the_quantize_module(shape, dtype, device, assert_close):
    rows, k, n = shape
    group = 128 if k > 128 else 32
    layer = Int4Linear.from_linear(_layer(k, n), group).to(device)
    x = torch.randn(rows, k, device=device, dtype=dtype)

    y = int4_linear(x, layer.qweight, layer.scales, layer.zeros, layer.bias)
    expected = int4_linear_reference(x, layer.qweight, layer.scales, layer.zeros, layer.bias)
    assert y.dtype == dtype and y.shape == (rows, n)
    assert_close(y, expected, dtype)
    # the module's own dequantization agrees with the reference's reading of the format
    from_module = (x.float() @ layer.dequantized().T + layer.bias).to(dtype)
    assert_close(y, from_module, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_int8_per_row_matches_reference(shape, dtype, device, assert_close):
    rows, k, n = shape
    layer = Int8Linear.from_linear(_layer(k, n)).to(device)
    x = torch.randn(rows, k, device=device, dtype=dtype)
    y = int8_linear(x, layer.qweight, layer.scales, layer.bias)
    assert y.dtype == dtype
    assert_close(y, int8_linear_reference(x, layer.qweight, layer.scales, layer.bias), dtype)


@pytest.mark.parametrize("rows", [1, GEMV_MAX_ROWS + 3])
def test_int8_per_group_matches_reference(rows, device, assert_close):
    layer = Int8Linear.from_linear(_layer(96, 17), group=32).to(device)
    assert layer.scales.shape == (17, 3)
    x = torch.randn(2, rows, 96, device=device, dtype=torch.bfloat16)  # leading dims kept
    y = int8_linear(x, layer.qweight, layer.scales, layer.bias)
    assert y.shape == (2, rows, 17)
    expected = int8_linear_reference(x, layer.qweight, layer.scales, layer.bias)
    assert_close(y, expected, torch.bfloat16)


def test_matches_torch_cpu_int4_kernel_the_module_runs(device):
    layer = Int4Linear.from_linear(_layer(100, 48), 32)
    x = torch.randn(2, 100)
    with torch.no_grad():
        on_cpu = layer(x)  # torch's _weight_int4pack_mm_for_cpu on the same stored weights
    args = [t.to(device) for t in (x, layer.qweight, layer.scales, layer.zeros, layer.bias)]
    torch.testing.assert_close(int4_linear(*args).cpu(), on_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 9])
def test_input_gradient_for_training_on_a_quantized_base(rows, device, assert_close):
    layer = Int4Linear.from_linear(_layer(64, 24), 32).to(device)
    x1 = torch.randn(rows, 64, device=device, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    dy = torch.randn(rows, 24, device=device)
    int4_linear(x1, layer.qweight, layer.scales, layer.zeros).backward(dy)
    int4_linear_reference(x2, layer.qweight, layer.scales, layer.zeros).backward(dy)
    assert_close(x1.grad, x2.grad, torch.float32)


def test_bad_inputs_are_refused_with_clear_messages(device):
    layer = Int4Linear.from_linear(_layer(64, 8), 32).to(device)
    with pytest.raises(ValueError, match="x must have 33..64"):
        int4_linear(torch.randn(1, 16, device=device), layer.qweight, layer.scales, layer.zeros)
    with pytest.raises(TypeError, match="2-D uint8"):
        int4_linear(
            torch.randn(1, 64, device=device), layer.qweight.to(torch.int8), layer.scales,
            layer.zeros,
        )  # fmt: skip
    q8 = Int8Linear.from_linear(_layer(64, 8)).to(device)
    with pytest.raises(ValueError, match="takes 64"):
        int8_linear(torch.randn(1, 63, device=device), q8.qweight, q8.scales)
    with pytest.raises(TypeError, match="dtype torch.int32"):
        int8_linear(torch.ones(1, 64, dtype=torch.int32, device=device), q8.qweight, q8.scales)
