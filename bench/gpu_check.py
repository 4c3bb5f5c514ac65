"""What every GPU-only benchmark does first: stop with a clear message where there is no CUDA."""

from __future__ import annotations

import sys


def require_cuda() -> None:
    """Exit with status 2 and say why when no CUDA GPU is present."""
    import torch

    if not torch.cuda.is_available():
        print(
            "This benchmark needs a CUDA GPU: the Triton kernels do not run compiled on a CPU. "
            "Correctness on CPU: .venv/bin/pytest tests/kernels (Triton's interpreter).",
            file=sys.stderr,
        )
        sys.exit(2)
