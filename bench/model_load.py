"""How long loading the embedded model takes: from its GGUF file vs the converted workspace copy.

    python bench/model_load.py [--json] [--repeats 3]

Measured in one run, one process (transformers is imported before any timing):
  convert    the one-time conversion into the workspace artifact "default" (ensure_default_model);
  baseline   AutoTokenizer + AutoModelForCausalLM.from_pretrained(..., gguf_file=...), which
             dequantizes the Q4_1 weights every time (timed after the conversion warmed up);
  fast path  load_model("default") from the float32 safetensors, median of --repeats loads;
  cold       the same load as the first one of a fresh process (transformers' lazy imports
             of the tokenizer and model classes included), as `workbench chat` sees it.
Uses a temporary WORKBENCH_HOME unless one is set (then an existing "default" is reused and the
conversion time is reported as 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3, help="fast-path loads (median)")
    args = parser.parse_args()

    temporary = None
    if not os.environ.get("WORKBENCH_HOME"):
        temporary = tempfile.TemporaryDirectory(prefix="workbench-bench-")
        os.environ["WORKBENCH_HOME"] = temporary.name

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.models import DEFAULT_MODEL, embedded_gguf_path, ensure_default_model, load_model
    from workbench.workspace import Workspace

    transformers.logging.disable_progress_bar()
    ws = Workspace().ensure()
    gguf = embedded_gguf_path()

    # Convert first: it also warms the GGUF code paths, so the baseline below is not inflated
    # by one-time import and page-cache costs (the comparison favours the baseline, if anything).
    had_default = ws.exists(DEFAULT_MODEL)
    started = time.perf_counter()
    ensure_default_model(ws)
    convert = 0.0 if had_default else time.perf_counter() - started

    started = time.perf_counter()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    baseline = time.perf_counter() - started

    fast = []
    for _ in range(max(1, args.repeats)):
        loaded = load_model(DEFAULT_MODEL, ws, device="cpu", dtype="float32")
        fast.append(loaded.load_seconds)
        del loaded
    fast_median = statistics.median(fast)
    cold = _cold_process_load()

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf_load_s": round(baseline, 2),
        "convert_once_s": round(convert, 2),
        "safetensors_load_s": [round(s, 3) for s in fast],
        "safetensors_load_median_s": round(fast_median, 3),
        "speedup": round(baseline / fast_median, 1),
        "cold_process_load_s": round(cold, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"machine: {result['machine']}; torch {result['torch']}, "
            f"transformers {result['transformers']}"
        )
        print(f"load from GGUF (baseline, dequantize every time): {baseline:8.2f} s")
        print(f"one-time conversion to the workspace:             {convert:8.2f} s")
        print(
            f"load_model('default') from safetensors (median of {len(fast)}): "
            f"{fast_median:6.3f} s   runs: {', '.join(f'{s:.3f}' for s in fast)}"
        )
        print(f"speed-up: {result['speedup']}x")
        print(
            f"load_model('default') as the first load of a fresh process (lazy transformers "
            f"imports included): {cold:.2f} s"
        )
    if temporary is not None:
        temporary.cleanup()
    return 0


def _cold_process_load() -> float:
    """load_model("default") in a new process, as `workbench chat` does it (torch imported first)."""
    code = (
        "import torch, transformers\n"
        "from workbench.models import load_model\n"
        "print(load_model('default', device='cpu', dtype='float32').load_seconds)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
