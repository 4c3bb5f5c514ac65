"""Kernel tests: the Triton kernels against their pure-torch references.

Without CUDA the kernels run under Triton's CPU interpreter. kernels/_triton.py chooses it
(TRITON_INTERPRET=1) before any kernel is decorated and repairs Triton's own helpers when
something imported Triton first, so the order in which a whole-suite run imports things does not
matter; setting the variable here as well only makes the choice visible at the top of the run.
On a CUDA machine the same tests run compiled on the GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# `kernels` is a top-level folder, not part of the installed `workbench` package; pytest's
# importlib mode does not put the repository root on sys.path, so put it first here.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (rtol, atol) per dtype: float32 kernels do the reference's math in another order; 16-bit
# results may differ by a rounding step or two of the output dtype.
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def assert_close():
    """assert_close(actual, expected, dtype, scale=1): dtype-specific tolerance; `scale` widens
    the absolute part for results that sum many 16-bit products (weight gradients)."""

    def check(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0):
        rtol, atol = TOLERANCES[dtype]
        torch.testing.assert_close(
            actual.float(), expected.float(), rtol=rtol, atol=atol * scale, check_dtype=False
        )

    return check


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each kernel test on one torch thread, then restore the count. The interpreter runs
    Python between tiny torch ops, and torch's idle OpenMP workers spin on the second core in
    the meantime: on this 2-core machine, under load, 24 steps of the 2-layer model took 25 s on
    two threads and 0.45 s on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
