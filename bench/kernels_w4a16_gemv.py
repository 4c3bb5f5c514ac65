"""W4A16 GEMV at batch 1 (decoding): achieved memory bandwidth, as % of the card's peak.

    python bench/kernels_w4a16_gemv.py
    python bench/kernels_w4a16_gemv.py --peak-gbs 3350      # when the card is not in PEAK_GBS

Needs a CUDA GPU; on a CPU it says so and exits 2 (tests/kernels checks correctness there).
For each Llama-7B layer shape it times `kernels.int4_linear` on one token and divides the bytes
that must be read (packed weights, scales and zeros, the activation) and written by the time.
One GEMV moves ~10-30 MB, a few microseconds on an H100, less than Python's launch overhead,
so the time is taken from a CUDA graph of 20 calls (GPU time only, as a graph-captured decode
step runs); the plain call's time, launch overhead included, is shown beside it. Also prints a device-to-device copy's bandwidth,
the practical ceiling. int8 (W8A16) and fp16 `F.linear` are shown for comparison.
Target (issue 6, H100): ≥ 60% of the card's memory bandwidth.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from gpu_check import require_cuda  # noqa: E402  (bench/, the script's folder)

# Datasheet HBM bandwidth, GB/s, by a substring of torch.cuda.get_device_name().
PEAK_GBS = {"H200": 4800, "H100 PCIe": 2000, "H100": 3350, "A100-SXM4-80GB": 2039,
            "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "A10G": 600, "4090": 1008}  # fmt: skip
SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096), (4096, 32000)]  # (in, out)


def median_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_ms(fn, calls: int = 20, repeats: int = 20) -> float:
    """Median ms per call of `fn` replayed from a CUDA graph of `calls` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # compile the Triton kernel outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return median_ms(graph.replay, repeats) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-gbs", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--group", type=int, default=128)
    args = parser.parse_args()
    require_cuda()
    from kernels.dequant_matmul import int4_linear, int8_linear
    from workbench.quantize.modules import Int4Linear, Int8Linear

    name = torch.cuda.get_device_name()
    peak = args.peak_gbs or next((v for k, v in PEAK_GBS.items() if k in name), None)
    buf = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    copy_ms = median_ms(lambda: buf.clone(), 20)
    copy_gbs = 2 * buf.numel() / copy_ms / 1e6
    print(f"GPU: {name} · torch {torch.__version__} · datasheet {peak or '?'} GB/s · "
          f"1 GiB copy {copy_gbs:.0f} GB/s")  # fmt: skip
    print(f"{'in x out':>14}{'int4 us':>9}{'GB/s':>7}{'% peak':>8}{'(plain call)':>13}"
          f"{'int8 us':>9}{'fp16 us':>9}   us: per call, from a CUDA graph")  # fmt: skip
    for k, n in SHAPES:
        dense = torch.nn.Linear(k, n, bias=False)
        q4 = Int4Linear.from_linear(dense, args.group).cuda().half()
        q8 = Int8Linear.from_linear(dense).cuda().half()
        w16 = dense.weight.detach().half().cuda()
        x = torch.randn(1, k, device="cuda", dtype=torch.float16)
        with torch.no_grad():
            call4 = partial(int4_linear, x, q4.qweight, q4.scales, q4.zeros)
            t4 = graph_ms(call4)
            plain4 = median_ms(call4, args.repeats)
            t8 = graph_ms(partial(int8_linear, x, q8.qweight, q8.scales))
            t16 = graph_ms(partial(torch.nn.functional.linear, x, w16))
        moved = q4.qweight.numel() + 2 * q4.scales.numel() * 2 + 2 * k + 2 * n  # bytes
        gbs = moved / t4 / 1e6
        share = f"{100 * gbs / peak:7.1f}%" if peak else "      ?"
        print(f"{k:>6} x {n:<6}{t4 * 1e3:9.1f}{gbs:7.0f}{share}{plain4 * 1e3:13.1f}"
              f"{t8 * 1e3:9.1f}{t16 * 1e3:9.1f}")  # fmt: skip
    print("target: int4 >= 60% of the datasheet bandwidth")


if __name__ == "__main__":
    main()
