"""Fused linear + cross-entropy vs eager `lm_head` + `cross_entropy`: peak memory and speed.

    python bench/kernels_linear_cross_entropy.py                   # vocab 92,544, hidden 4096
    python bench/kernels_linear_cross_entropy.py --tokens 4096 --vocab 151936 --hidden 3584

Needs a CUDA GPU (the Triton kernels compile only there); on a CPU it says so and exits 2 — the
CPU tests (tests/kernels) check correctness under Triton's interpreter instead.

Measures, for one forward + backward of the loss over `--tokens` tokens in bfloat16, with the
output layer trainable (full fine-tuning, the larger case): the peak memory above the inputs,
and the median time of --repeats runs, for
  eager  logits = x @ W.T; cross_entropy(logits.float(), y)   (what transformers does)
  fused  kernels.fused_linear_cross_entropy(x, W, y)
Target (issue 6, H100): fused peak ≥ 3× lower, at no worse speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from gpu_check import require_cuda  # noqa: E402  (bench/, the script's folder)


def eager_loss(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy((x @ w.T).float(), y, ignore_index=-100)


def measure(fn, x, w, y, repeats: int) -> tuple[float, float]:
    """(peak MiB above the inputs, median ms) of fn's forward + backward."""
    times = []
    peak = 0
    for i in range(repeats + 1):
        x.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x, w, y).backward()
        end.record()
        torch.cuda.synchronize()
        peak = max(peak, torch.cuda.max_memory_allocated() - base)
        if i:  # the first run compiles the kernels
            times.append(start.elapsed_time(end))
    return peak / 2**20, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=92544)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    require_cuda()
    from kernels.cross_entropy import fused_linear_cross_entropy

    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.hidden, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(args.vocab, args.hidden, device="cuda", dtype=torch.bfloat16) / 64
    y = torch.randint(0, args.vocab, (args.tokens,), device="cuda")
    x.requires_grad_()
    w.requires_grad_()
    print(f"GPU: {torch.cuda.get_device_name()} · torch {torch.__version__}")
    print(f"tokens {args.tokens}, hidden {args.hidden}, vocab {args.vocab}, bfloat16, W trainable")
    eager = measure(eager_loss, x, w, y, args.repeats)
    fused = measure(fused_linear_cross_entropy, x, w, y, args.repeats)
    print(f"{'':8}{'peak MiB':>12}{'ms':>10}")
    print(f"{'eager':8}{eager[0]:12.0f}{eager[1]:10.2f}")
    print(f"{'fused':8}{fused[0]:12.0f}{fused[1]:10.2f}")
    memory, speed = eager[0] / fused[0], eager[1] / fused[1]
    print(f"fused: {memory:.2f}x lower peak memory (target >= 3x), {speed:.2f}x eager speed "
          f"(target >= 1x)")  # fmt: skip


if __name__ == "__main__":
    main()
