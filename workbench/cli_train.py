"""`workbench train` and `workbench merge`: fine-tune as a background job, merge an adapter.

    workbench train --data self-cog --out me-lora --preset classroom
    workbench train --model default --data qa --method qlora --out qa-qlora --epochs 2 --rank 16
    workbench train --method dpo --model default --data prefs --out prefs-dpo --beta 0.1
    workbench train --method orpo --weights full --data prefs --out prefs-orpo
    workbench train recipe.yaml
    workbench merge --adapter me-lora --out me-merged

Training runs as a job (closing the terminal does not stop it: `workbench jobs show ID`);
`workbench jobs cancel ID` stops it with a checkpoint and `workbench jobs resume ID` continues.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workbench.cli import EXIT_FAILED, _print_json, follow_job
from workbench.errors import WorkbenchError
from workbench.workspace import Workspace

# flag -> recipe field, for the flags whose names differ from the field
FLAG_FIELDS = {"lr": "learning_rate", "rank": "lora_rank", "alpha": "lora_alpha"}
TRAIN_FLAGS = (
    "model",
    "data",
    "out",
    "method",
    "objective",
    "beta",
    "train_on",
    "cutoff",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "scheduler",
    "warmup_ratio",
    "rank",
    "alpha",
    "lora_dropout",
    "lora_targets",
    "dora",
    "rslora",
    "gradient_checkpointing",
    "device",
    "dtype",
    "processes",
    "seed",
    "eval_every",
    "save_every",
    "probe_every",
    "description",
)


def train_recipe_from_args(args: argparse.Namespace) -> Any:
    """The TrainRecipe the flags (or the YAML file, overlaid by flags) describe."""
    from workbench.finetune.preference import PREFERENCE_OBJECTIVES
    from workbench.finetune.presets import apply_preset
    from workbench.recipes import TrainRecipe, load_recipe, recipe_from_dict, recipe_to_dict

    fields: dict[str, Any] = {}
    if args.recipe:
        loaded = load_recipe(args.recipe)
        if not isinstance(loaded, TrainRecipe):
            from workbench.errors import InvalidInput

            raise InvalidInput(
                f"{args.recipe} is a {loaded.kind!r} recipe, not a training recipe.",
                where=args.recipe,
                fix="Use `workbench run` for other recipes.",
            )
        fields = recipe_to_dict(loaded)
        fields.pop("kind", None)
    for flag in TRAIN_FLAGS:
        value = getattr(args, flag, None)
        if value is not None and value is not False:
            fields[FLAG_FIELDS.get(flag, flag)] = value
    if fields.get("method") in PREFERENCE_OBJECTIVES:  # --method dpo|orpo: what is learned
        fields["objective"] = fields.pop("method")
    if getattr(args, "weights", None):  # ...and --weights lora|qlora|full: what is trained
        fields["method"] = args.weights
    if args.no_packing:
        fields["packing"] = False
    if args.probe:
        fields["probe_prompts"] = args.probe
    if args.preset:
        fields = apply_preset(args.preset, fields)
    return recipe_from_dict({"kind": "train", **fields}, where="workbench train")


def cmd_train(args: argparse.Namespace) -> int:
    from workbench.finetune.fit import check_fit
    from workbench.jobs import submit

    recipe = train_recipe_from_args(args)
    ws = Workspace()
    ws.refuse_taken(recipe.out)  # before queueing, not minutes later
    if args.check or not args.force:
        report = check_fit(recipe, ws)
        if args.check:
            if args.json:
                _print_json(report)
            else:
                _print_fit(report)
            return 0 if report["fits"] else EXIT_FAILED
        if not report["fits"]:
            _print_fit(report)
            raise WorkbenchError(
                "The run would not fit in memory: " + report["verdict"],
                where="workbench train",
                fix="Apply a suggestion above, or pass --force to start anyway.",
            )
        if not args.json:
            print(report["verdict"], file=sys.stderr)
    from workbench.finetune.prefs_view import train_title

    return follow_job(ws, submit(ws, recipe, title=train_title(recipe)), args)


def _print_fit(report: dict) -> None:
    memory, timing = report["memory"], report["time"]
    print(report["verdict"])
    parts = ", ".join(f"{k} {v:.2f} GB" for k, v in memory["parts_gb"].items() if v)
    print(f"Memory:  {parts}")
    print(
        f"Time:    ~{timing['seconds'] / 60:.0f} min for {report['tokens']:,} tokens "
        f"({timing['tokens_per_second']:.0f} tokens/s, {timing['steps']} steps)"
    )
    for suggestion in memory["suggestions"]:
        print(f"  - {suggestion}")


def cmd_merge(args: argparse.Namespace) -> int:
    from workbench.jobs import submit
    from workbench.recipes import MergeRecipe

    recipe = MergeRecipe(adapter=args.adapter, out=args.out, description=args.description or "")
    ws = Workspace()
    ws.refuse_taken(recipe.out)
    manifest = ws.get(recipe.adapter)  # a wrong name fails now, with the known names
    if manifest.kind != "adapter":
        from workbench.errors import InvalidInput

        raise InvalidInput(
            f"{recipe.adapter!r} is a {manifest.kind} artifact, not a LoRA adapter.",
            where="--adapter",
            fix="Pick an adapter: `workbench models list` shows them.",
        )
    return follow_job(ws, submit(ws, recipe, title=f"merge: {recipe.out}"), args)


def add_train_commands(
    verbs: Any, common: argparse.ArgumentParser, follow: argparse.ArgumentParser
) -> None:
    """Add `workbench train` and `workbench merge` to the top-level subparsers."""
    from workbench.finetune.presets import PRESETS
    from workbench.recipes import SCHEDULERS, TRAIN_METHODS, TRAIN_OBJECTIVES, TRAIN_ON_CHOICES

    p = verbs.add_parser(
        "train",
        parents=[common, follow],
        help="fine-tune a model (LoRA, QLoRA, full; SFT, DPO, ORPO) as a job",
    )
    p.add_argument("recipe", nargs="?", help="a training recipe YAML (flags override it)")
    p.add_argument("--preset", choices=list(PRESETS), help="start from a preset")
    p.add_argument("--model", help="base model (default: 'default')")
    p.add_argument("--data", help="dataset artifact")
    p.add_argument("--out", help="name of the adapter (or model, for full) to create")
    p.add_argument(
        "--method",
        choices=[*TRAIN_METHODS, "dpo", "orpo"],
        help="lora, qlora or full; or dpo / orpo (preference tuning, with --weights)",
    )
    p.add_argument(
        "--weights", choices=TRAIN_METHODS, help="with --method dpo|orpo: lora, qlora or full"
    )
    p.add_argument("--objective", choices=TRAIN_OBJECTIVES)
    p.add_argument("--beta", type=float, help="DPO beta / ORPO lambda (default 0.1)")
    p.add_argument("--train-on", choices=TRAIN_ON_CHOICES)
    p.add_argument("--cutoff", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--scheduler", choices=SCHEDULERS)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--rank", type=int, help="LoRA rank")
    p.add_argument("--alpha", type=int, help="LoRA alpha")
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--lora-targets", help="all-linear or q_proj,v_proj,...")
    p.add_argument("--dora", action="store_true")
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-packing", action="store_true")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--processes", type=int, help="training processes, one per GPU (data parallel)")
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--probe", action="append", help="a probe prompt (repeat for more)")
    p.add_argument("--probe-every", type=int)
    p.add_argument("--description")
    p.add_argument("--check", action="store_true", help="only say whether it fits, and how long")
    p.add_argument("--force", action="store_true", help="start even if it does not seem to fit")
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser(
        "merge", parents=[common, follow], help="merge a LoRA adapter into its base model"
    )
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True, help="name of the merged model artifact")
    p.add_argument("--description")
    p.set_defaults(func=cmd_merge)
