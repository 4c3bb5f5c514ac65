"""Workbench's AVX2 int8/int4 kernels (workbench/cpu_gemv.py) against plain float32 maths."""

from __future__ import annotations

import pytest
import torch

from workbench import cpu_gemv
from workbench.engine.lean import AVX2_MAX_ROWS, PackedLinear

needs_avx2 = pytest.mark.skipif(
    not cpu_gemv.available(), reason=f"AVX2 kernels unavailable: {cpu_gemv.why_unavailable()}"
)


def int8_weights(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.randn(n, k)
    scale = w.abs().amax(1) / 127
    return torch.round(w / scale[:, None]).to(torch.int8), scale


def int4_weights(n: int, k: int, group: int) -> tuple[torch.Tensor, ...]:
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    scale = torch.rand(n, k // group) * 0.1 + 0.01
    low = torch.randn(n, k // group)
    dense = codes.float() * scale.repeat_interleave(group, 1) + low.repeat_interleave(group, 1)
    return codes, scale, low, dense


def test_int4_packing_round_trips():
    codes = torch.randint(0, 16, (5, 96), dtype=torch.uint8)
    packed = cpu_gemv.pack_int4(codes)
    assert packed.shape == (5, 48) and packed.dtype == torch.uint8
    assert torch.equal(cpu_gemv.unpack_int4(packed), codes)
    with pytest.raises(ValueError, match="multiple of 32"):
        cpu_gemv.pack_int4(codes[:, :40])


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9, 13])
@pytest.mark.parametrize("k", [64, 80, 576])  # 80: a tail after the 32-wide steps
def test_int8_matmul_equals_float_maths(rows, k):
    torch.manual_seed(rows * 1000 + k)
    q, scale = int8_weights(77, k)
    x = torch.randn(rows, k)
    expected = x @ (q.float() * scale[:, None]).T
    assert torch.allclose(cpu_gemv.int8_matmul(x, q, scale), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("rows", [1, 3, 6, 8, 11])
@pytest.mark.parametrize("group", [32, 64])
def test_grouped_int8_matmul_equals_float_maths(rows, group):
    torch.manual_seed(rows + group)
    q = torch.randint(-128, 128, (50, 192), dtype=torch.int8)
    scale = torch.rand(50, 192 // group) * 0.01
    x = torch.randn(rows, 192)
    expected = x @ (q.float() * scale.repeat_interleave(group, 1)).T
    assert torch.allclose(cpu_gemv.int8_matmul(x, q, scale), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("rows", [1, 2, 4, 7, 8, 12])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_matmul_equals_float_maths(rows, group):
    torch.manual_seed(rows * 10 + group)
    codes, scale, low, dense = int4_weights(45, 256, group)
    x = torch.randn(2, rows, 256)  # leading dimensions are kept
    y = cpu_gemv.int4_matmul(x, cpu_gemv.pack_int4(codes), scale, low)
    assert y.shape == (2, rows, 45)
    assert torch.allclose(y, x @ dense.T, atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("cpu_isa")
@pytest.mark.parametrize("rows", [1, 3, 8, 10])
@pytest.mark.parametrize("k", [64, 72, 576])  # 72: a tail after the 16- and 32-wide steps
def test_bf16_matmul_equals_float_maths(rows, k):
    torch.manual_seed(rows + k)
    w = torch.randn(45, k).to(torch.bfloat16)
    x = torch.randn(rows, k)
    expected = x @ w.float().T
    assert torch.allclose(cpu_gemv.bf16_matmul(x, w), expected, atol=1e-4, rtol=1e-4)


@needs_avx2
def test_bad_shapes_say_what_is_wrong():
    q, scale = int8_weights(8, 64)
    with pytest.raises(RuntimeError, match="columns"):
        cpu_gemv.int8_matmul(torch.randn(1, 32), q, scale)
    codes, s, low, _ = int4_weights(8, 96, 32)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        cpu_gemv.int4_matmul(torch.randn(1, 96), cpu_gemv.pack_int4(codes), s[:, :2], low[:, :2])


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("WORKBENCH_CPU_KERNELS", "0")
    cpu_gemv._build.cache_clear()
    try:
        assert not cpu_gemv.available()
        assert "WORKBENCH_CPU_KERNELS=0" in cpu_gemv.why_unavailable()
        with pytest.raises(RuntimeError, match="not available"):
            cpu_gemv.int8_matmul(torch.randn(1, 64), *int8_weights(8, 64))
        # the engine's packed layers then use torch's kernels alone
        assert PackedLinear(torch.randn(64, 64), None, "int4", torch.float32).fast is None
    finally:
        monkeypatch.delenv("WORKBENCH_CPU_KERNELS")
        cpu_gemv._build.cache_clear()


@needs_avx2
@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_engine_layers_agree_across_both_kernels(fmt):
    """A few rows go through the AVX2 kernel, more through torch's: the same layer either way."""
    torch.manual_seed(5)
    weight = torch.randn(96, 128) * 0.05
    layer = PackedLinear(weight, None, fmt, torch.float32)
    assert layer.fast is not None
    x = torch.randn(AVX2_MAX_ROWS + 4, 128)
    few = layer(x[:AVX2_MAX_ROWS])  # AVX2 kernel, float32 activations
    many = layer(x)  # torch's kernel, bf16 activations
    assert few.dtype == many.dtype == torch.float32
    assert torch.allclose(few, many[:AVX2_MAX_ROWS], atol=2e-2, rtol=2e-2)
    exact = x[:AVX2_MAX_ROWS] @ weight.T
    assert (few - exact).norm() / exact.norm() < 0.1  # the quantization error, nothing more


def test_a_lock_left_by_a_killed_build_is_removed_and_a_fresh_one_kept(tmp_path):
    import os
    import time

    stale, fresh = tmp_path / "stale", tmp_path / "fresh"
    stale.touch()
    fresh.touch()
    old = time.time() - cpu_gemv.STALE_LOCK_S - 60
    os.utime(stale, (old, old))
    cpu_gemv._remove_stale_lock(stale)
    cpu_gemv._remove_stale_lock(fresh)
    cpu_gemv._remove_stale_lock(tmp_path / "missing")  # nothing to do, no error
    assert not stale.exists() and fresh.exists()
