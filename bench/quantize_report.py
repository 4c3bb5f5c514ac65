"""Quantization benchmark: the embedded model through several methods, measured in one run.

    python bench/quantize_report.py                         # int8, int4-rtn, int4-awq (g128)
    python bench/quantize_report.py --methods int8,gguf-q4 --speed-tokens 32 --out report.json

Each method runs the real job runner (`run_quantize`) into a scratch workspace that links the
prepared default model, so every row compares the quantized model with the source measured in
the same process: perplexity on the bundled held-out text (float32), decode tokens/s of the
same greedy loop (machine dtype, plus the source in bf16), sizes on disk and in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.models import ensure_default_model  # noqa: E402
from workbench.quantize.runner import run_quantize  # noqa: E402
from workbench.recipes import QuantizeRecipe  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="int8,int4-rtn,int4-awq")
    parser.add_argument("--group", type=int, default=128)
    parser.add_argument("--ppl-tokens", type=int, default=2048)
    parser.add_argument("--speed-tokens", type=int, default=16)
    parser.add_argument("--out", help="write all results as JSON here")
    args = parser.parse_args()

    default = ensure_default_model(Workspace())  # WORKBENCH_HOME's prepared default model
    scratch = Workspace(tempfile.mkdtemp(prefix="wb-quant-bench-")).ensure()
    target = scratch.kind_dir("model") / "default"
    target.mkdir()
    for item in default.iterdir():
        os.link(item, target / item.name)

    rows = []
    for method in args.methods.split(","):
        started = time.perf_counter()
        result = run_quantize(
            QuantizeRecipe(
                model="default",
                method=method,
                out=f"default-{method}",
                group=args.group,
                ppl_tokens=args.ppl_tokens,
                speed_tokens=args.speed_tokens,
            ),
            workspace=scratch,
            progress=lambda **e: print(f"  {e.get('message', '')}", file=sys.stderr, flush=True),
        )
        result["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "answers"}), flush=True)

    print()
    print(
        f"date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    head = "method      size MB  (src)   ppl    (src)   Δppl     tok/s  (src) (src bf16)  x src  x bf16"
    print(head)
    for r in rows:
        print(
            f"{r['method']:<11} {r['size_bytes'] / 2**20:7.1f} {r['source_size_bytes'] / 2**20:6.1f} "
            f"{r['ppl']:7.2f} {r['source_ppl']:7.2f} {r['ppl_change']:+7.2%} "
            f"{r['tokens_per_s']:7.2f} {r['source_tokens_per_s']:6.2f} {r['source_bf16_tokens_per_s']:9.2f} "
            f"{r['speedup']:6.2f} {r['speedup_vs_bf16']:6.2f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, ensure_ascii=False), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
