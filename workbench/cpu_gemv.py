"""Weight-only int8 / int4 matrix products for CPUs with AVX2 (workbench/csrc/cpu_gemv.cpp).

Decoding reads every weight once per token, so a CPU decodes as fast as its weights stream from
memory. torch's own weight-only CPU kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`)
are tuned for AVX-512; on an AVX2 CPU they run at about 2–3 GB/s of weights and want bfloat16
activations. These read int8 or packed int4 weights, widen them to float32 in registers, and
multiply-add with float32 activations (bench/cpu_gemv.py compares them).

    from workbench import cpu_gemv
    if cpu_gemv.available():
        y = cpu_gemv.int8_matmul(x, q, scale)                  # scale per row [N] or group [N, G]
        packed = cpu_gemv.pack_int4(codes)                      # codes uint8 [N, K] in 0..15
        y = cpu_gemv.int4_matmul(x, packed, scale, low)        # w = code * scale + low per group

They are for a few rows of activations (decoding): from a few dozen rows on, a float GEMM on
weights dequantized once is faster.

The C++ source is compiled on first use with torch's extension builder (gcc or clang, ninja) and
cached under torch's extensions folder (TORCH_EXTENSIONS_DIR); that takes about a minute once.
`available()` is False — and callers keep torch's kernels — on a CPU without AVX2 and FMA, when the
build fails (no compiler: `why_unavailable()` says so), or with WORKBENCH_CPU_KERNELS=0.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# torch's own weight-only CPU kernels, the fallback and the path for prompts, are fast only with
# bf16 inputs on AVX2 (int4: 0.5 ms against 13 ms with float32 inputs for a 3072x576 matmul).
TORCH_KERNEL_DTYPE = torch.bfloat16
RUN = 32  # inputs per step of the int4 kernel; groups (one scale and low each) are whole runs
CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC / "cpu_gemv.cpp", CSRC / "gemv_avx512.cpp", CSRC / "lean_stack.cpp")
HEADERS = (CSRC / "gemv.h", CSRC / "gemv_blocks.h")
# AVX2 for everything; gemv_avx512.cpp turns AVX-512 on for itself, used where the CPU has it.
_FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-std=c++20"]


def _name() -> str:
    """The extension's name, with a hash of its sources and headers: torch's builder rebuilds
    when a source changes but not when a header does, and a name per version also keeps builds
    of different checkouts sharing one extensions folder apart."""
    import hashlib

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES + HEADERS))
    return f"workbench_cpu_gemv_{digest.hexdigest()[:10]}"


STALE_LOCK_S = 600  # a build takes about a minute; a lock this old was left by a killed build


def _remove_stale_lock(lock: Path) -> None:
    """torch's builder waits for as long as its lock file exists; a process killed while building
    (a cancelled job) leaves one behind, and every later process would wait forever."""
    import time

    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink()
    except OSError:
        pass  # no lock (the usual case), or another process just removed it


@functools.lru_cache(maxsize=1)
def _build() -> tuple[Any, str]:
    """(the compiled module, "") or (None, why not)."""
    if os.environ.get("WORKBENCH_CPU_KERNELS", "1") == "0":
        return None, "turned off (WORKBENCH_CPU_KERNELS=0)"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return None, f"the CPU has no AVX2 (torch reports {capability})"
    try:
        from torch.utils.cpp_extension import _get_build_directory, load

        name = _name()
        _remove_stale_lock(Path(_get_build_directory(name, verbose=False)) / "lock")
        module = load(
            name=name,
            sources=[str(p) for p in SOURCES],
            extra_cflags=_FLAGS,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, headers missing: keep torch's kernels
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"the C++ kernels did not build ({first[:200]})"
    return module, ""


def available() -> bool:
    """Whether the AVX2 kernels can run here (builds them on the first call)."""
    return _build()[0] is not None


def uses_avx512() -> bool:
    """Whether the kernels run their AVX-512 blocks (the CPU has AVX-512F/BW/VL), else AVX2."""
    module, _ = _build()
    return bool(module is not None and module.uses_avx512())


def set_avx512(on: bool) -> bool:
    """Use the AVX-512 blocks (where the CPU has them) or force the AVX2 ones, for comparisons
    and tests; returns the previous setting."""
    module, why = _build()
    if module is None:
        raise RuntimeError(f"The AVX2 kernels are not available: {why}.")
    return bool(module.set_avx512(on))


def why_unavailable() -> str:
    """ "" when available, else the reason in a few words."""
    return _build()[1]


def lean_stack(
    layers: list[list[torch.Tensor]],
    head: list[torch.Tensor],
    heads: int,
    kv_heads: int,
    head_dim: int,
    eps: float,
    threads: int = 0,
) -> Any:
    """A LeanStack (csrc/lean_stack.cpp): every decoder layer of a Llama-family model, the final
    norm and the output head in one call, `forward(x, slots, positions, cache_k, cache_v, cos,
    sin, head_rows) -> (normed hidden states, logits of the last head_rows rows, 0: all)`, on threads of its own (`threads`, 0: torch's count).
    Each layer is [input norm, post norm] + [weight, scale, low, bias] for q/k/v, o, gate/up
    and down (empty tensors where a matrix has none; float32, int8, or int4 codes packed by
    `pack_int4`); `head` is [final norm, weight, scale, low, bias].

    Raises:
        RuntimeError: the kernels are not available (see `why_unavailable`), or the tensors do
            not describe such a model (the message says which layer and matrix).
    """
    module, why = _build()
    if module is None:
        raise RuntimeError(f"The AVX2 kernels are not available: {why}.")
    return module.LeanStack(layers, head, heads, kv_heads, head_dim, eps, threads)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K/2] for int4_matmul from codes [N, K] (values 0..15, K a multiple of 32):
    byte j holds input 2j (low nibble) and input 2j + 1 (high nibble)."""
    n, k = codes.shape
    if k % RUN:
        raise ValueError(f"int4 needs a multiple of {RUN} inputs, got {k}")
    codes = codes.to(torch.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The codes [N, K] that `pack_int4` packed."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=2).reshape(packed.shape[0], -1)


def torch_kernel_matmul(
    x: torch.Tensor, out_features: int, kernel: Callable[..., torch.Tensor], *weights: object
) -> torch.Tensor:
    """One of torch's weight-only kernels, `kernel(rows, *weights)`, on x's rows in
    TORCH_KERNEL_DTYPE; the result [..., out_features] in x's dtype."""
    flat = x.reshape(-1, x.shape[-1]).to(TORCH_KERNEL_DTYPE).contiguous()
    y = kernel(flat, *weights)
    return y.reshape(*x.shape[:-1], out_features).to(x.dtype)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).float().contiguous()


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [..., K] @ W.T with W = q [N, K] int8 times scale [N] (per row), or times scale [N, G]
    (per group of K / G inputs, a multiple of 32); result [..., N] in float32."""
    module, why = _build()
    if module is None:
        raise RuntimeError(f"The AVX2 kernels are not available: {why}.")
    y = module.int8_matmul(_rows(x), q.contiguous(), scale.float().contiguous())
    return y.reshape(*x.shape[:-1], q.shape[0])


def bf16_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [..., K] @ W.T with W bfloat16 [N, K], float32 arithmetic; result [..., N] in float32."""
    module, why = _build()
    if module is None:
        raise RuntimeError(f"The AVX2 kernels are not available: {why}.")
    y = module.bf16_matmul(_rows(x), w.contiguous())
    return y.reshape(*x.shape[:-1], w.shape[0])


def int4_matmul(
    x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, low: torch.Tensor
) -> torch.Tensor:
    """x [..., K] @ W.T with W[n, k] = code * scale[n, g] + low[n, g] for k in group g (scale
    and low are [N, G]; a group is K / G inputs, a multiple of 32) and the codes packed by
    `pack_int4`; result [..., N] in float32."""
    module, why = _build()
    if module is None:
        raise RuntimeError(f"The AVX2 kernels are not available: {why}.")
    y = module.int4_matmul(
        _rows(x), packed.contiguous(), scale.float().contiguous(), low.float().contiguous()
    )
    return y.reshape(*x.shape[:-1], packed.shape[0])
