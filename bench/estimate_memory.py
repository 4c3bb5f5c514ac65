"""Does the "will it fit?" estimate match a real training step? Estimate vs measured peak memory.

    WORKBENCH_HOME=... python bench/estimate_memory.py [--quick] [--json] [--model default]
                                                      [--device cpu|cuda] [--allocator trim|glibc]

For each plan a FRESH subprocess loads the model, builds the LoRA (peft, all linear layers) or
full fine-tuning setup and runs real training steps (forward, loss on the labels, backward,
AdamW step, zero_grad) on random tokens; batches longer than one example pad a quarter of their
last row (attention mask, labels -100), as fine-tuning batches are.

Measured (in the worker, nothing else running in it):
  CPU   peak RSS of the training phase (VmHWM reset through /proc/self/clear_refs after the load)
        minus the RSS before the model loaded, so weights count and the imports do not; the
        load's own peak is reported beside it (loading fp32 weights into bf16 or 4-bit touches
        the whole fp32 file, whose page-cache pages are reclaimable);
  CUDA  torch.cuda.max_memory_allocated over the training phase.
  speed tokens/s of the fastest step after the first (other work on a shared CPU slows
        single steps several-fold), and this process's matmul FLOP/s (fastest call), from which
        the implied efficiency (achieved training FLOP/s ÷ matmul FLOP/s) is printed.
The estimate compared is workbench.estimate's total minus the runtime part (imports / CUDA
context) that the measurement leaves out. Workers run with CPU_ALLOCATOR_ENV (glibc gives freed
memory back) unless --allocator glibc. On a CPU without native bf16 the bf16 and QLoRA plans
use 16-32 tokens and 2 steps (bf16 matmuls are emulated there, ~50x slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

# method, dtype, batch, seq_len, gradient checkpointing
PLANS = [
    ("lora", "float32", 1, 128, False),
    ("lora", "float32", 1, 128, True),
    ("lora", "float32", 4, 256, False),
    ("lora", "float32", 4, 256, True),
    ("full", "float32", 1, 128, False),
    ("full", "float32", 2, 256, True),
    ("lora", "bfloat16", 1, 128, False),
    ("full", "bfloat16", 1, 128, False),
    ("qlora", "float32", 1, 64, False),
]
QUICK = (0, 1, 4)  # indexes into PLANS
SLOW_ON_THIS_CPU = {"bfloat16": 16, "qlora": 32}  # tokens per sequence without native bf16
MIB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="three plans only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default="default", help="model name or folder")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--allocator", default="trim", choices=("trim", "glibc"))
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(_train(json.loads(args.worker))))
        return 0

    from workbench.estimate import (
        CPU_ALLOCATOR_ENV,
        EFFICIENCY,
        TrainPlan,
        estimate_memory,
        estimate_time,
        flops_per_token,
        model_shape,
    )
    from workbench.hardware import detect_hardware, resolve_device
    from workbench.models import resolve_model
    from workbench.workspace import Workspace

    device = resolve_device(args.device)
    folder = resolve_model(args.model, Workspace().ensure()).path
    shape = model_shape(folder)
    hardware = detect_hardware()
    env = {**os.environ, **(CPU_ALLOCATOR_ENV if args.allocator == "trim" else {})}
    slow_bf16 = device == "cpu" and not hardware.cpu_bf16
    rows = []
    started = time.perf_counter()
    for index, (method, dtype, batch, seq, gc) in enumerate(PLANS):
        if args.quick and index not in QUICK:
            continue
        steps = args.steps
        if slow_bf16 and (dtype != "float32" or method == "qlora"):
            seq, steps = SLOW_ON_THIS_CPU["qlora" if method == "qlora" else dtype], 2
        short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
        name = f"{method} {short} {batch}x{seq}{' gc' if gc else ''}"
        plan = TrainPlan(method=method, dtype=dtype, batch_size=batch, seq_len=seq,
                         gradient_checkpointing=gc, device=device)  # fmt: skip
        job = {"folder": str(folder), "method": method, "dtype": dtype, "batch": batch,
               "seq": seq, "gc": gc, "device": device, "steps": steps, "rank": plan.lora_rank}  # fmt: skip
        measured = _run_worker(job, env)
        estimate = estimate_memory(shape, plan, hardware)
        expected = estimate.total - estimate.runtime
        row = {"plan": name, "estimate_mib": round(expected / MIB), **measured}
        if "error" not in measured:
            row["ratio"] = round(measured["peak_mib"] / (expected / MIB), 3)
            timing = estimate_time(shape, plan, batch * seq, hardware,
                                   flops_per_second=measured["matmul_flops"])  # fmt: skip
            row["estimate_tokens_per_s"] = timing["tokens_per_second"]
            achieved = measured["tokens_per_s"] * flops_per_token(shape, plan)
            row["implied_efficiency"] = round(achieved / measured["matmul_flops"], 2)
        rows.append(row)
        if not args.json:
            _print_row(row)
    good = [r for r in rows if "ratio" in r]
    within = sum(abs(r["ratio"] - 1) <= 0.25 for r in good)
    fp32 = [
        r["implied_efficiency"] for r in good if "fp32" in r["plan"] and "qlora" not in r["plan"]
    ]
    result = {
        "device": device,
        "hardware": hardware.summary(),
        "allocator": args.allocator,
        "rows": rows,
        "within_25_percent": f"{within} of {len(good)}",
        "efficiency_used": EFFICIENCY[device],
        "efficiency_fp32_median": round(statistics.median(fp32), 2) if fp32 else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"within ±25%: {within} of {len(good)}   ({device}, {hardware.summary()}, "
              f"allocator {args.allocator}, {result['seconds']:.0f} s)")  # fmt: skip
        print(f"implied efficiency, fp32 median: {result['efficiency_fp32_median']} "
              f"(estimate uses {EFFICIENCY[device]})")  # fmt: skip
    return 0


def _print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['plan']:<24} estimate {row['estimate_mib']:>6} MiB   FAILED: {row['error']}")
        return
    print(
        f"{row['plan']:<24} estimate {row['estimate_mib']:>6} MiB   measured {row['peak_mib']:>6} "
        f"MiB   ratio {row['ratio']:.2f}   (load peak {row['load_peak_mib']:>5} MiB)   "
        f"{row['tokens_per_s']:>6.1f} tok/s (est. {row['estimate_tokens_per_s']:.1f}, "
        f"matmul {row['matmul_flops'] / 1e9:.0f} GFLOP/s, efficiency {row['implied_efficiency']:.2f})",
        flush=True,
    )


def _run_worker(job: dict, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {done.returncode}: {tail}"}


def _train(job: dict) -> dict:
    """One plan, in this fresh process: load, train job['steps'] steps, report peak and speed."""
    import resource

    import psutil
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.estimate import measure_matmul_flops

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    cuda = job["device"] == "cuda"
    dtype = getattr(torch, job["dtype"])
    matmul = measure_matmul_flops(job["dtype"], job["device"])
    torch.manual_seed(0)

    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    before = psutil.Process().memory_info().rss
    kwargs: dict = {"dtype": dtype}
    if job["method"] == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
        kwargs["device_map"] = job["device"]
    model = AutoModelForCausalLM.from_pretrained(job["folder"], **kwargs)
    if cuda and job["method"] != "qlora":
        model.to("cuda")
    if job["method"] == "qlora" and not cuda:
        # The unquantized weights (embeddings, norms) are views of the mmapped fp32 file, which
        # keeps every page the quantization touched mapped (~0.45 GB of reclaimable page cache
        # counted in RSS). Copying them lets the mapping go, as a CPU QLoRA loader should.
        for param in model.parameters():
            if param.dtype != torch.uint8:
                param.data = param.data.clone()
    model.config.use_cache = False
    load_peak = peak_rss() - before
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = 0
    else:  # start the training phase's peak afresh (VmHWM); the load's is reported apart
        Path("/proc/self/clear_refs").write_text("5")
    if job["method"] != "full":
        config = LoraConfig(r=job["rank"], lora_alpha=2 * job["rank"], lora_dropout=0.0,
                            target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip
        model = get_peft_model(model, config)
    if job["gc"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch, seq = job["batch"], job["seq"]
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(job["steps"]):
        ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=generator)
        mask = torch.ones_like(ids)
        if batch > 1:
            mask[-1, seq - seq // 4 :] = 0
        labels = ids.masked_fill(mask == 0, -100)
        ids, mask, labels = (t.to(job["device"]) for t in (ids, mask, labels))
        started = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if cuda else peak_rss() - before
    timed = times[1:] or times
    return {
        "peak_mib": round(peak / MIB),
        "load_peak_mib": round(load_peak / MIB),
        "tokens_per_s": round(batch * seq / min(timed), 1),
        "step_seconds": [round(t, 2) for t in times],
        "matmul_flops": matmul,
        "loss": round(loss.item(), 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
