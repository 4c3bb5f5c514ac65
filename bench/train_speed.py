"""Training speed and memory: our loop (packing) against a plain transformers.Trainer + peft.

Same model (the embedded SmolLM2), same data (the bundled bilingual instruction set rendered
with the same label mask), same LoRA settings, learning rate and batch size. The baseline pads
each batch to its longest sample (DataCollatorForSeq2Seq), which is what most scripts do. Each
side runs in a fresh subprocess so peak memory is its own. Prints real (non-padding) tokens per
second, peak RSS (CPU) or peak allocated memory (CUDA), and the ratios.

Both sides are clocked per optimizer step: the first `--warmup` steps (one-time allocator and
oneDNN set-up) are run but left out of the timed tokens/s; the tokens/s over all steps is
printed too. Tokens are the ones of the batches each step trained on: Trainer's data loader
(accelerate) collates one batch ahead of the step it runs, so counting collator calls would
credit the baseline with a batch it never trained on.

    python bench/train_speed.py              # 1 warm-up + 12 timed steps each
    python bench/train_speed.py --steps 30 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "assets" / "data" / "instructions_bilingual.jsonl"
SETTINGS = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 2e-4}


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(home: Path) -> None:
    from workbench.data.prepare import run_import_data
    from workbench.models import ensure_default_model
    from workbench.recipes import ImportDataRecipe
    from workbench.workspace import Workspace

    ws = Workspace(home).ensure()
    ensure_default_model(ws)
    if not ws.exists("bilingual"):
        run_import_data(
            ImportDataRecipe(source=str(DATA), name="bilingual", eval_fraction=0), workspace=ws
        )


def timed(clock: list[tuple[float, int]], warmup: int) -> dict:
    """Tokens/s from per-step clocks: `clock[0]` is (start, 0), then (end of step i, its tokens)."""
    start = clock[min(warmup, len(clock) - 2)][0]
    tokens = sum(n for _, n in clock[warmup + 1 :])
    seconds = clock[-1][0] - start
    all_tokens = sum(n for _, n in clock[1:])
    all_seconds = clock[-1][0] - clock[0][0]
    return {
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "all_steps_tokens_per_s": round(all_tokens / all_seconds, 1),
        "steps_timed": len(clock) - 1 - warmup,
    }


def run_ours(home: Path, steps: int, batch: int, cutoff: int, warmup: int) -> dict:
    from workbench.finetune.trainer import run_train
    from workbench.recipes import TrainRecipe
    from workbench.workspace import Workspace

    ws = Workspace(home)
    recipe = TrainRecipe(
        data="bilingual",
        out=f"speed-{int(time.time() * 1000)}",
        max_steps=warmup + steps,
        batch_size=batch,
        cutoff=cutoff,
        save_every=0,
        warmup_ratio=0.0,
        **SETTINGS,
    )
    clock: list[tuple[float, int]] = []

    def progress(**event) -> None:
        if event.get("stage") == "train":
            clock.append((time.perf_counter(), 0))
        elif "loss" in event and "tokens" in event:
            clock.append((time.perf_counter(), event["tokens"]))

    result = run_train(recipe, workspace=ws, run_dir=home / "runs" / recipe.out, progress=progress)
    return {**timed(clock, warmup), "device": result["device"], "dtype": result["dtype"]}


def run_baseline(home: Path, steps: int, batch: int, cutoff: int, warmup: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from workbench.data.prepare import read_dataset
    from workbench.finetune.batches import build_examples
    from workbench.hardware import resolve_device, resolve_dtype
    from workbench.workspace import Workspace

    ws = Workspace(home)
    folder = ws.path_of("default")
    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    examples, _ = build_examples(
        read_dataset(ws, "bilingual"),
        tokenizer,
        objective="sft",
        train_on="assistant",
        cutoff=cutoff,
    )
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    model = get_peft_model(
        model,
        LoraConfig(
            r=SETTINGS["lora_rank"],
            lora_alpha=SETTINGS["lora_alpha"],
            lora_dropout=SETTINGS["lora_dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    collated: list[int] = []  # real tokens of each batch, in the order they are collated
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    def counting(features):
        collated.append(sum(len(f["input_ids"]) for f in features))
        return collator(features)

    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(home / "baseline-out"),
        per_device_train_batch_size=batch,
        max_steps=warmup + steps,
        learning_rate=SETTINGS["learning_rate"],
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=dtype == "bfloat16",
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=counting,
        callbacks=[StepClock()],
    )
    started = time.perf_counter()
    trainer.train()
    clock = [(started, 0), *zip(ends, collated, strict=False)]  # the look-ahead batch drops out
    return {**timed(clock, warmup), "device": device, "dtype": dtype}


def worker(which: str, home: Path, steps: int, batch: int, cutoff: int, warmup: int) -> None:
    run = run_ours if which == "ours" else run_baseline
    result = run(home, steps, batch, cutoff, warmup)
    result["peak_memory_mb"] = round(peak_memory_mb(result["device"]), 1)
    print("RESULT " + json.dumps(result))


def spawn(which: str, home: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", which, "--home", str(home)]
    command += [
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--cutoff",
        str(args.cutoff),
        "--warmup",
        str(args.warmup),
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{which} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument(
        "--warmup", type=int, default=1, help="steps run first and left out of the timing"
    )
    parser.add_argument("--home", default="")
    parser.add_argument("--worker", choices=["ours", "baseline"])
    args = parser.parse_args()
    home = Path(args.home or os.environ.get("WORKBENCH_HOME") or tempfile.mkdtemp())
    if args.worker:
        worker(args.worker, home, args.steps, args.batch, args.cutoff, args.warmup)
        return
    prepare(home)
    baseline = spawn("baseline", home, args)
    ours = spawn("ours", home, args)
    speed = ours["tokens_per_s"] / baseline["tokens_per_s"]
    memory = ours["peak_memory_mb"] / baseline["peak_memory_mb"]
    every = ours["all_steps_tokens_per_s"] / baseline["all_steps_tokens_per_s"]
    print(f"{'':10} {'tokens':>8} {'seconds':>8} {'tok/s':>8} {'all steps':>10} {'peak MB':>9}")
    for name, r in (("baseline", baseline), ("ours", ours)):
        print(
            f"{name:10} {r['tokens']:>8} {r['seconds']:>8} {r['tokens_per_s']:>8} "
            f"{r['all_steps_tokens_per_s']:>10} {r['peak_memory_mb']:>9}"
        )
    print(
        f"speed ratio (ours / baseline): {speed:.2f}x over {args.steps} timed steps after "
        f"{args.warmup} warm-up, {every:.2f}x over all steps; peak memory ratio: {memory:.2f}x"
    )
    print(
        json.dumps(
            {
                "baseline": baseline,
                "ours": ours,
                "speed_ratio": round(speed, 3),
                "all_steps_speed_ratio": round(every, 3),
                "memory_ratio": round(memory, 3),
                "steps": args.steps,
                "warmup": args.warmup,
                "batch": args.batch,
                "cutoff": args.cutoff,
            }
        )
    )


if __name__ == "__main__":
    main()
