"""RMSNorm and SwiGLU kernels vs eager torch: forward + backward speed at Llama-7B shapes.

    python bench/kernels_norm_swiglu.py
    python bench/kernels_norm_swiglu.py --tokens 4096 --hidden 4096 --intermediate 11008

Needs a CUDA GPU; on a CPU it says so and exits 2 (tests/kernels checks correctness there).
Eager is what transformers runs (LlamaRMSNorm's five ops; `F.silu(gate) * up`). Median of
--repeats timed runs after a warm-up, bfloat16. Target (issue 6, H100): both ≥ 2× eager.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from gpu_check import require_cuda  # noqa: E402  (bench/, the script's folder)


def timed(fn, inputs: list[torch.Tensor], dy: torch.Tensor, repeats: int) -> float:
    """Median ms of fn(*inputs).backward(dy)."""
    times = []
    for i in range(repeats + 3):
        leaves = [t.detach().requires_grad_() for t in inputs]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn(*leaves).backward(dy)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=11008)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    require_cuda()
    from kernels.references import rms_norm_reference
    from kernels.rms_norm import rms_norm
    from kernels.swiglu import swiglu

    bf16 = torch.bfloat16
    x = torch.randn(args.tokens, args.hidden, device="cuda", dtype=bf16)
    w = torch.rand(args.hidden, device="cuda", dtype=bf16) + 0.5
    gate = torch.randn(args.tokens, args.intermediate, device="cuda", dtype=bf16)
    up = torch.randn_like(gate)
    print(f"GPU: {torch.cuda.get_device_name()} · torch {torch.__version__} · bfloat16")
    rows = [
        ("RMSNorm", [x, w], torch.randn_like(x),
         lambda a, b: rms_norm_reference(a, b, 1e-5), lambda a, b: rms_norm(a, b, 1e-5)),
        ("SwiGLU", [gate, up], torch.randn_like(gate),
         lambda a, b: torch.nn.functional.silu(a) * b, swiglu),
    ]  # fmt: skip
    print(f"{'fwd+bwd':10}{'eager ms':>10}{'triton ms':>11}{'speed-up':>10}  (target >= 2x)")
    for name, inputs, dy, eager, fused in rows:
        t_eager = timed(eager, inputs, dy, args.repeats)
        t_fused = timed(fused, inputs, dy, args.repeats)
        print(f"{name:10}{t_eager:10.3f}{t_fused:11.3f}{t_eager / t_fused:9.2f}x")


if __name__ == "__main__":
    main()
