"""Workbench's AVX2 int8/int4 kernels against torch's weight-only kernels and float32, in one run.

    python bench/cpu_gemv.py                    # SmolLM2-135M's layer shapes, 1 and 2 threads
    python bench/cpu_gemv.py --layers 30 --rows 1 4 8 --threads 2

One pass multiplies rows of activations by the weight matrices of `--layers` decoder layers of
SmolLM2-135M's shapes (q/k/v fused 960x576, o 576x576, gate/up fused 3072x576, down 576x1536)
with random weights, as a decode step does: far more bytes than the CPU's caches hold, so weights
stream from memory. For each thread count and row count it prints the median time of a pass
(alternating rounds) for float32 `F.linear`, torch's int8/int4 kernels (bfloat16 activations, as
they need on AVX2) and ours (float32 activations), and our speed-up over each. Exits with status
2 where the AVX2 kernels are not available (and says why).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from workbench import cpu_gemv  # noqa: E402
from workbench.engine.lean import _int4_codes, _pack_int4  # noqa: E402

LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]


def weights(n: int, k: int) -> dict:
    w = torch.randn(n, k) * 0.02
    scale = w.abs().amax(1) / 127
    q8 = torch.round(w / scale[:, None]).to(torch.int8)
    codes, s4, low = _int4_codes(w)
    torch_int4, scales_zeros = _pack_int4(codes, s4, low)
    return {
        "w": w,
        "q8": q8,
        "s8": scale,
        "s8_bf16": scale.bfloat16(),
        "q4": cpu_gemv.pack_int4(codes),
        "s4": s4,
        "low": low,
        "t4": torch_int4,
        "t4_scales": scales_zeros.bfloat16(),
    }


KERNELS = {
    "float32 F.linear": lambda m, x, xb: F.linear(x, m["w"]),
    "torch int8 (bf16 in)": lambda m, x, xb: torch.ops.aten._weight_int8pack_mm(
        xb, m["q8"], m["s8_bf16"]
    ),
    "ours int8": lambda m, x, xb: cpu_gemv.int8_matmul(x, m["q8"], m["s8"]),
    "torch int4 g32 (bf16 in)": lambda m, x, xb: torch.ops.aten._weight_int4pack_mm_for_cpu(
        xb, m["t4"], 32, m["t4_scales"]
    ),
    "ours int4 g32": lambda m, x, xb: cpu_gemv.int4_matmul(x, m["q4"], m["s4"], m["low"]),
}


def one_pass(kernel, mats: list[dict], xs: dict, xbs: dict) -> float:
    started = time.perf_counter()
    for m in mats:
        k = m["w"].shape[1]
        kernel(m, xs[k], xbs[k])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not cpu_gemv.available():
        print(f"The AVX2 kernels are not available here: {cpu_gemv.why_unavailable()}.")
        return 2
    torch.manual_seed(0)
    mats = [weights(n, k) for _ in range(args.layers) for n, k in LAYER_SHAPES]
    sizes = {
        "float32": sum(m["w"].nbytes for m in mats),
        "int8": sum(m["q8"].nbytes for m in mats),
        "int4": sum(m["q4"].nbytes for m in mats),
    }
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.layers} layers: "
        + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sizes.items())
    )
    x = torch.randn(1, 576)
    first = mats[0]
    dequantized = first["q8"].float() * first["s8"][:, None]
    err8 = (cpu_gemv.int8_matmul(x, first["q8"], first["s8"]) - x @ dequantized.T).abs().max()
    print(f"check: ours int8 against float32 maths on its weights, max abs difference {err8:.1e}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for rows in args.rows:
            xs = {k: torch.randn(rows, k) for k in (576, 1536)}
            xbs = {k: v.bfloat16() for k, v in xs.items()}
            times: dict[str, list[float]] = {name: [] for name in KERNELS}
            for kernel in KERNELS.values():
                one_pass(kernel, mats, xs, xbs)  # warm-up
            for _ in range(args.rounds):
                for name, kernel in KERNELS.items():
                    times[name].append(one_pass(kernel, mats, xs, xbs))
            ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
            print(f"\n{threads} thread(s), {rows} row(s): median ms per pass")
            for name, value in ms.items():
                print(f"  {name:26s} {value:8.2f}")
            print(
                f"  ours int8: {ms['float32 F.linear'] / ms['ours int8']:.2f}x float32, "
                f"{ms['torch int8 (bf16 in)'] / ms['ours int8']:.2f}x torch int8; "
                f"ours int4: {ms['float32 F.linear'] / ms['ours int4 g32']:.2f}x float32, "
                f"{ms['torch int4 g32 (bf16 in)'] / ms['ours int4 g32']:.2f}x torch int4"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
