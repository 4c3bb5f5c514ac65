"""Multiple-choice scoring: Workbench's evaluator against lm-evaluation-harness, in one run.

    python bench/eval_speed.py [--tasks knowledge-en,knowledge-zh] [--limit 0] [--threads 2]
                               [--dtype float32] [--lm-eval-batch 1,8] [--json]

Both score the same bundled tasks with the same loaded model (the embedded SmolLM2-135M, from a
temporary workspace unless WORKBENCH_HOME holds a prepared "default") and the same prompt:
  ours     `score_requests` — one packed row per question (its context once, then every
           choice, each choice masked from the others), one forward pass per batch;
  lm-eval  `lm_eval.simple_evaluate` with its Hugging Face model class (one row per
           question + choice, at each --lm-eval-batch size; 1 is its default), timed both whole
           and for its log-likelihood requests alone.
Runs alternate (lm-eval, ours, lm-eval, ours...) and each takes the best of --repeats, so that a
neighbour's load on a shared machine hits both alike. Prints questions per second, the speed-up,
and whether acc and acc_norm are equal (with the largest log-likelihood difference).

With --generation N it also times the first N arithmetic-en problems (64 new tokens each)
answered one at a time and with 8 requests in flight (the engine decodes those together).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo


def ours(task, loaded, batch_size: int) -> dict:
    from workbench.evaluate.scoring import score_requests
    from workbench.evaluate.tasks import KINDS

    kind = KINDS["multiple_choice"]
    requests = [r for s in task.samples for r in kind.requests(task, s)]
    started = time.perf_counter()
    scored = score_requests(loaded.model, loaded.tokenizer, requests, batch_size=batch_size)
    seconds = time.perf_counter() - started
    results, offset = [], 0
    for sample in task.samples:
        n = len(sample["choices"])
        results.append(kind.result(task, sample, [ll for ll, _ in scored[offset : offset + n]]))
        offset += n
    return {
        "seconds": seconds,
        "acc": sum(r.scores["acc"] for r in results) / len(results),
        "acc_norm": sum(r.scores["acc_norm"] for r in results) / len(results),
        "logliks": [r.details["logliks"] for r in results],
    }


def generation(count: int) -> dict:
    from workbench.evaluate.engines import EvalEngine
    from workbench.evaluate.suites import bundled_task
    from workbench.evaluate.tasks import KINDS, RunContext
    from workbench.workspace import Workspace

    task = bundled_task("arithmetic-en")
    task.samples, task.max_new_tokens = task.samples[:count], 64
    kind, engine = KINDS["generation"], EvalEngine("default", Workspace())
    try:
        list(kind.score(task, task.samples[:1], engine, RunContext(batch_size=4)))  # warm up
        timings, outputs = {}, {}
        for batch in (4, 32):  # requests in flight: batch_size // 4
            started = time.perf_counter()
            results = list(kind.score(task, task.samples, engine, RunContext(batch_size=batch)))
            timings[batch] = time.perf_counter() - started
            outputs[batch] = [r.output for r in results]
    finally:
        engine.close()
    return {
        "samples": count,
        "one_at_a_time_s": round(timings[4], 1),
        "in_flight_s": round(timings[32], 1),
        "speedup": round(timings[4] / timings[32], 2),
        "same_answers": outputs[4] == outputs[32],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="knowledge-en,knowledge-zh")
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--dtype", default="float32", help="dtype of the model both score with")
    parser.add_argument("--batch-size", type=int, default=32, help="our continuation rows")
    parser.add_argument("--lm-eval-batch", default="1,8", help="lm-eval batch sizes to run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--generation", type=int, default=0, help="also time N generations")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    temporary = None
    if not os.environ.get("WORKBENCH_HOME"):
        temporary = tempfile.TemporaryDirectory(prefix="workbench-bench-")
        os.environ["WORKBENCH_HOME"] = temporary.name
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from workbench.evaluate.reference import lm_eval_multiple_choice
    from workbench.evaluate.suites import bundled_task
    from workbench.models import load_model
    from workbench.workspace import Workspace

    loaded = load_model("default", Workspace(), dtype=args.dtype)
    batches = [int(b) for b in args.lm_eval_batch.split(",") if b.strip()]
    report = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "model": "default (SmolLM2-135M-Instruct)",
        "tasks": [],
    }
    for name in args.tasks.split(","):
        task = bundled_task(name.strip())
        if args.limit:
            task.samples = task.samples[: args.limit]
        warm = bundled_task(name.strip())
        warm.samples = warm.samples[:3]
        ours(warm, loaded, args.batch_size)  # first calls pay for lazy initialisation
        lm_eval_multiple_choice(warm, loaded.model, loaded.tokenizer, batch_size=batches[0])
        best_ours, best_ref = None, {}
        for _ in range(args.repeats):
            for size in batches:
                ref = lm_eval_multiple_choice(task, loaded.model, loaded.tokenizer, batch_size=size)
                if (
                    size not in best_ref
                    or ref["scoring_seconds"] < best_ref[size]["scoring_seconds"]
                ):
                    best_ref[size] = ref
            mine = ours(task, loaded, args.batch_size)
            if best_ours is None or mine["seconds"] < best_ours["seconds"]:
                best_ours = mine
        questions = len(task.samples)
        row = {
            "task": task.name,
            "questions": questions,
            "continuations": sum(len(s["choices"]) for s in task.samples),
            "ours_seconds": round(best_ours["seconds"], 3),
            "ours_questions_per_s": round(questions / best_ours["seconds"], 2),
            "acc": best_ours["acc"],
            "acc_norm": best_ours["acc_norm"],
            "lm_eval": [],
        }
        for size, ref in best_ref.items():
            diff = max(
                abs(a - b)
                for mine_row, ref_row in zip(best_ours["logliks"], ref["logliks"], strict=True)
                for a, b in zip(mine_row, ref_row, strict=True)
            )
            row["lm_eval"].append(
                {
                    "batch_size": size,
                    "scoring_seconds": round(ref["scoring_seconds"], 3),
                    "total_seconds": round(ref["seconds"], 3),
                    "questions_per_s": round(questions / ref["scoring_seconds"], 2),
                    "speedup": round(ref["scoring_seconds"] / best_ours["seconds"], 2),
                    "acc": ref["acc"],
                    "acc_norm": ref["acc_norm"],
                    "same_acc": ref["acc"] == best_ours["acc"],
                    "same_acc_norm": ref["acc_norm"] == best_ours["acc_norm"],
                    "max_loglik_diff": round(diff, 6),
                }
            )
        report["tasks"].append(row)
    if args.generation:
        report["generation"] = generation(args.generation)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['model']}, {args.dtype}, {report['torch_threads']} torch threads, "
            f"best of {args.repeats}"
        )
        for row in report["tasks"]:
            print(
                f"\n{row['task']}: {row['questions']} questions, {row['continuations']} choices; "
                f"ours {row['ours_seconds']} s ({row['ours_questions_per_s']} q/s), "
                f"acc {row['acc']:.3f}, acc_norm {row['acc_norm']:.3f}"
            )
            for ref in row["lm_eval"]:
                print(
                    f"  lm-eval batch {ref['batch_size']}: {ref['scoring_seconds']} s scoring "
                    f"({ref['total_seconds']} s whole), {ref['questions_per_s']} q/s -> ours is "
                    f"{ref['speedup']}x; acc {ref['acc']:.3f} (same: {ref['same_acc']}), "
                    f"acc_norm {ref['acc_norm']:.3f} (same: {ref['same_acc_norm']}), "
                    f"max |loglik diff| {ref['max_loglik_diff']:.2g}"
                )
        if "generation" in report:
            g = report["generation"]
            print(
                f"\narithmetic-en, {g['samples']} answers of 64 tokens: one at a time "
                f"{g['one_at_a_time_s']} s, 8 in flight {g['in_flight_s']} s "
                f"({g['speedup']}x), same answers: {g['same_answers']}"
            )
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
