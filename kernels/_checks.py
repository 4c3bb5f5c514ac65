"""Input checks shared by the launchers: each failure says what was wrong and what to pass."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_float(name: str, t: torch.Tensor, kernel: str) -> None:
    """Raise TypeError unless `t` is a float16 / bfloat16 / float32 tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{kernel}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{kernel}: {name} has dtype {t.dtype}; pass float16, bfloat16 or float32 "
            f"(e.g. {name}.to(torch.bfloat16))."
        )


def check_same_device(kernel: str, **tensors: torch.Tensor | None) -> None:
    """Raise ValueError unless every tensor given lies on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{kernel}: inputs are on different devices ({where}); move them to one.")


def check_runnable(kernel: str, t: torch.Tensor) -> None:
    """Raise RuntimeError where a Triton kernel cannot run on `t`'s device."""
    from kernels._triton import INTERPRETED

    if t.device.type == "cuda" or (t.device.type == "cpu" and INTERPRETED):
        return
    raise RuntimeError(
        f"{kernel}: the Triton kernel runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1); "
        f"got a tensor on {t.device}. Use the reference in kernels.references instead."
    )


def block_warps(block: int) -> int:
    """Warps for a program that handles `block` elements of a row at once."""
    if block >= 32768:
        return 32
    if block >= 8192:
        return 16
    if block >= 2048:
        return 8
    return 4
