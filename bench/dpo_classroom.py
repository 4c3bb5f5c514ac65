"""DPO with the classroom preset on the embedded model and the bundled preference set.

Imports assets/data/preferences.jsonl (220 pairs: a helpful, complete answer chosen over a
brush-off, a wrong or a bare answer; 10% held out), trains DPO (LoRA, classroom preset, beta 0.1)
and times the whole run (model load, reference scoring, training, held-out scoring, saving).
Then evaluates the starting model and the tuned adapter on the held-out pairs with the
evaluation page's `prefs:` task (pref_acc: summed answer log-probabilities; pref_acc_norm: per
answer token) and answers three held-out prompts with both. Prints a table and one JSON line.

    python bench/dpo_classroom.py                      # a temporary workspace
    python bench/dpo_classroom.py --home /tmp/dpo-ws   # keep it (the app can open it)
    python bench/dpo_classroom.py --max-steps 5        # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def answers(model: str, ws, prompts: list[str]) -> list[str]:
    from workbench.generate import GenerationSettings, build_messages, chat_once
    from workbench.models import load_model

    loaded = load_model(model, ws, device="cpu")
    settings = GenerationSettings(max_new_tokens=40)
    return [chat_once(loaded, build_messages(p), settings).text for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default="", help="workspace (default: a temporary one)")
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--objective", default="dpo", choices=["dpo", "orpo"])
    parser.add_argument("--set", action="append", default=[], help="override: field=value")
    parser.add_argument("--no-answers", action="store_true", help="skip the generated answers")
    args = parser.parse_args()

    from workbench.data.prefs import bundled_prefs, import_prefs, read_pairs
    from workbench.evaluate.runner import run_eval
    from workbench.finetune.presets import apply_preset
    from workbench.finetune.trainer import run_train
    from workbench.models import ensure_default_model
    from workbench.recipes import EvalRecipe, recipe_from_dict
    from workbench.workspace import Workspace

    home = Path(args.home or tempfile.mkdtemp(prefix="dpo-classroom-"))
    os.environ["WORKBENCH_HOME"] = str(home)
    ws = Workspace(home).ensure()
    prepared = Path(os.environ.get("DPO_DEFAULT_FROM", "/tmp/wbhome/models/default"))
    if not ws.exists("default") and prepared.is_dir():  # reuse a converted model (hard links)
        shutil.copytree(prepared, ws.kind_dir("model") / "default", copy_function=os.link)
    ensure_default_model(ws)
    if not ws.exists("prefs"):
        import_prefs(ws, next(iter(bundled_prefs().values())), name="prefs", eval_fraction=0.1)
    out = f"prefs-{args.objective}-{int(time.time())}"
    fields = {"data": "prefs", "out": out, "model": "default", "objective": args.objective}
    if args.max_steps:
        fields["max_steps"] = args.max_steps
    for item in args.set:
        key, value = item.split("=", 1)
        fields[key] = json.loads(value) if value[:1] in "0123456789-.tf[" else value
    recipe = recipe_from_dict({"kind": "train", **apply_preset("classroom", fields)})
    print(
        f"recipe: {json.dumps({k: getattr(recipe, k) for k in fields | {'epochs': 0, 'learning_rate': 0, 'batch_size': 0, 'lora_rank': 0, 'beta': 0}})}"
    )

    def progress(**event) -> None:
        if "loss" in event or "pref_acc" in event or event.get("stage"):
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in event.items()}
            print(f"  {time.perf_counter() - started:7.1f}s {shown}", flush=True)

    started = time.perf_counter()
    result = run_train(recipe, workspace=ws, progress=progress, run_dir=home / "runs" / out)
    minutes = (time.perf_counter() - started) / 60

    t0 = time.perf_counter()
    report = run_eval(EvalRecipe(models=["default", out], tasks=["prefs:prefs"]), workspace=ws)
    eval_seconds = time.perf_counter() - t0
    scores = {
        (row["model"], row["metric"]): row["value"]
        for row in report["metrics"]
        if row.get("metric") in ("pref_acc", "pref_acc_norm", "margin")
    }
    print(f"\nDPO run ({args.objective}, classroom preset): {minutes:.1f} min wall clock")
    print(
        f"  train {result['train_pairs']} pairs, {result['steps']} steps, "
        f"{result['tokens_per_s']} tokens/s, final loss {result['final_loss']}"
    )
    print(
        f"  held-out preference accuracy (trainer): {result['pref_acc_before']:.1%} -> "
        f"{result['pref_acc_after']:.1%} on {result['heldout_pairs']} pairs"
    )
    print(f"Evaluation task prefs:prefs ({eval_seconds:.0f} s):")
    for model in ("default", out):
        cells = ", ".join(
            f"{m} {scores.get((model, m))}" for m in ("pref_acc", "pref_acc_norm", "margin")
        )
        print(f"  {model}: {cells}")
    samples = []
    if not args.no_answers:
        prompts = [p["prompt"][-1]["content"] for p in read_pairs(ws, "prefs", "eval")[:3]]
        before, after = answers("default", ws, prompts), answers(out, ws, prompts)
        for prompt, a, b in zip(prompts, before, after, strict=True):
            print(f"\nQ: {prompt}\n  before: {a!r}\n  after:  {b!r}")
            samples.append({"prompt": prompt, "before": a, "after": b})
    print(json.dumps({
        "minutes": round(minutes, 2), "objective": args.objective, "steps": result["steps"],
        "pref_acc_before": result["pref_acc_before"], "pref_acc_after": result["pref_acc_after"],
        "eval": {f"{m}/{k}": v for (m, k), v in scores.items()}, "answers": samples,
        "tokens_per_s": result["tokens_per_s"], "home": str(home),
    }, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
