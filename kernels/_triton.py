"""Import Triton for the kernel modules, choosing its CPU interpreter where no GPU is present.

Triton decides between compiling and interpreting when `@triton.jit` decorates a function (it
reads TRITON_INTERPRET then, triton 3.x), so this module must be imported before any kernel is
defined; every kernel module does `from kernels._triton import tl, triton` first. Without CUDA
a compiled kernel cannot run at all, so TRITON_INTERPRET=1 is set (unless the caller set it
already): the kernels then run on CPU tensors, slowly, which is what the CPU tests need.

Importing this raises ImportError with a fix when Triton is not installed; `import kernels`
itself never imports it.
"""

from __future__ import annotations

import os
import sys

import torch

_ALREADY_IMPORTED = "triton" in sys.modules
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton
    import triton.language as tl
except ImportError as error:  # pragma: no cover - depends on the machine
    raise ImportError(
        "The Triton kernels need the `triton` package (Linux). Install it with "
        "`pip install 'triton>=3.4'` (the CUDA build of torch brings its own), or use the "
        "pure-torch references in kernels.references."
    ) from error

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _rebuild_language_for_interpreter() -> int:
    """Turn triton.language's own @jit helpers (tl.sum, tl.max, tl.sigmoid, ...) into
    interpreted functions; returns how many were rebuilt.

    Needed when something (transformers does, via torch) imported Triton before
    TRITON_INTERPRET was set: those helpers were then built for compiling, and an interpreted
    kernel that calls one fails with "Cannot call @triton.jit'd outside of the scope of a
    kernel". Only done without CUDA, where compiled Triton cannot run anyway.
    """
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    rebuilt: dict[int, InterpretedFunction] = {}

    def interpreted(fn: JITFunction) -> InterpretedFunction:
        if id(fn) not in rebuilt:
            rebuilt[id(fn)] = InterpretedFunction(fn.fn, noinline=getattr(fn, "noinline", False))
        return rebuilt[id(fn)]

    holders = [m for n, m in list(sys.modules.items()) if n.startswith("triton.language") and m]
    for holder in [*holders, tl.tensor]:
        for name, value in list(vars(holder).items()):
            if isinstance(value, JITFunction):
                setattr(holder, name, interpreted(value))
    return len(rebuilt)


if INTERPRETED and _ALREADY_IMPORTED:
    _rebuild_language_for_interpreter()
# Triton's interpreter (3.9, CPU) computes tl.dot on bfloat16 inputs wrongly (values ~1e10), so
# under the interpreter the kernels upcast the operands of tl.dot to float32 first. On a GPU
# they feed the 16-bit operands to the tensor cores as they are.
DOT_IN_FP32 = INTERPRETED

__all__ = ["DOT_IN_FP32", "INTERPRETED", "tl", "triton"]
