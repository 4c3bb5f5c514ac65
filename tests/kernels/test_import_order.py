"""Triton picks interpret-or-compile when a kernel is decorated, and builds its own helpers
(tl.sum, tl.sigmoid, ...) when triton is first imported. transformers' model modules import
triton (through torch) before our kernels can set TRITON_INTERPRET, as in a whole-suite run or
the app. Prove the kernels still run on CPU then, and that `import kernels` itself imports
neither triton nor transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import kernels
    from kernels import patch_llama  # the patch module: still no triton
    lazy = {"triton": "triton" in sys.modules, "transformers": "transformers" in sys.modules}
    import triton  # as transformers' modeling modules do: built for compiling, not interpreting
    early = not triton.knobs.runtime.interpret
    import torch
    from kernels.references import swiglu_reference
    from kernels.swiglu import swiglu
    a, b = torch.randn(3, 40), torch.randn(3, 40)
    error = float((swiglu(a, b) - swiglu_reference(a, b)).abs().max())  # tl.sigmoid inside
    print(json.dumps({"lazy": lazy, "triton_imported_early": early, "error": error}))
    """
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="about the CPU interpreter")
def test_kernels_run_interpreted_after_transformers_imported_triton():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"  # see conftest.one_torch_thread
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO_ROOT)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["lazy"] == {"triton": False, "transformers": False}
    assert found["triton_imported_early"]  # the situation this test is about
    assert found["error"] < 1e-6
