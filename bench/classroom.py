"""The classroom exercise on this machine: self-cognition LoRA on the embedded model.

Generates a self-cognition dataset for a new assistant name and author, trains LoRA with the
"classroom" preset, then asks held-out paraphrased identity questions (never in the training
data, English and Chinese) to the base model and to the tuned adapter, and counts the answers
that state the new name. Prints the training time, the rates and one JSON line.

    python bench/classroom.py                 # uses WORKBENCH_HOME (default ./workspace)
    python bench/classroom.py --max-steps 20  # a quick look
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

NAME, AUTHOR = "Lumen", "the Workbench Class"


def identity_rate(model_name: str, ws, questions: list[tuple[str, str]]) -> tuple[float, list]:
    from workbench.generate import GenerationSettings, build_messages, chat_once
    from workbench.models import load_model

    loaded = load_model(model_name, ws, device="cpu")
    settings = GenerationSettings(max_new_tokens=40)
    rows = []
    for lang, question in questions:
        answer = chat_once(loaded, build_messages(question), settings).text
        rows.append(
            {"lang": lang, "q": question, "a": answer, "ok": NAME.lower() in answer.lower()}
        )
    return sum(r["ok"] for r in rows) / len(rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--preset", default="classroom")
    parser.add_argument("--home", default="", help="workspace (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], help="override: field=value")
    args = parser.parse_args()

    from workbench.data.prepare import save_samples
    from workbench.data.self_cognition import generate_self_cognition, held_out_questions
    from workbench.finetune.presets import apply_preset
    from workbench.finetune.trainer import run_train
    from workbench.models import ensure_default_model
    from workbench.recipes import recipe_from_dict
    from workbench.workspace import Workspace

    home = Path(args.home or tempfile.mkdtemp(prefix="classroom-"))
    ws = Workspace(home).ensure()
    ensure_default_model(ws)
    if not ws.exists("self-cog"):
        save_samples(ws, "self-cog", generate_self_cognition(NAME, AUTHOR), source="generator")
    fields = {"data": "self-cog", "out": f"lumen-{int(time.time())}", "model": "default"}
    if args.max_steps:
        fields["max_steps"] = args.max_steps
    for item in args.set:
        key, value = item.split("=", 1)
        fields[key] = (
            json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
        )
    recipe = recipe_from_dict({"kind": "train", **apply_preset(args.preset, fields)})
    started = time.perf_counter()
    losses = []

    def progress(**event):
        if "loss" in event:
            losses.append(event["loss"])
            print(
                f"step {event['step']}/{event['total']} loss {event['loss']:.3f} "
                f"{event['tokens_per_s']:.0f} tok/s",
                flush=True,
            )

    result = run_train(recipe, workspace=ws, progress=progress, run_dir=home / "runs" / recipe.out)
    train_s = time.perf_counter() - started
    questions = held_out_questions()
    base_rate, _ = identity_rate("default", ws, questions)
    tuned_rate, rows = identity_rate(recipe.out, ws, questions)
    for row in rows:
        print(
            ("OK  " if row["ok"] else "MISS"),
            row["lang"],
            row["q"],
            "->",
            row["a"][:80].replace("\n", " "),
        )
    summary = {
        "preset": args.preset,
        "train_seconds": round(train_s, 1),
        "steps": result["steps"],
        "tokens_per_s": result["tokens_per_s"],
        "first_loss": losses[0] if losses else None,
        "final_loss": result["final_loss"],
        "held_out_questions": len(questions),
        "base_identity_rate": round(base_rate, 3),
        "tuned_identity_rate": round(tuned_rate, 3),
        "tuned_en": round(sum(r["ok"] for r in rows if r["lang"] == "en") / 20, 3),
        "tuned_zh": round(sum(r["ok"] for r in rows if r["lang"] == "zh") / 20, 3),
    }
    print(f"train {train_s:.0f} s; identity: base {base_rate:.0%} -> tuned {tuned_rate:.0%}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
