"""`workbench eval`: evaluate models on tasks as a background job, then print the scores.

    workbench eval --models default,my-merged --tasks quick --limit 20
    workbench eval --models default --tasks knowledge-zh,my_task.jsonl --json
    workbench eval --models default,tuned --tasks judge-en --judge openai:http://host:8000/v1#big
    workbench eval --list                     # bundled tasks and suites
    workbench eval --show-prompt arithmetic-zh   # the exact prompt of a task's first sample

Per model and task it prints each metric with its 95% bootstrap interval and the number of
samples scored. Results are cached: running the same models and tasks again computes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from workbench.cli import EXIT_FAILED, _print_json, _table
from workbench.errors import InvalidInput
from workbench.progress import describe_event
from workbench.workspace import Workspace


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def eval_recipe_from_args(args: argparse.Namespace) -> Any:
    from workbench.recipes import recipe_from_dict

    if not args.models or not args.tasks:
        raise InvalidInput(
            "workbench eval needs --models and --tasks.",
            where="workbench eval",
            fix="e.g. `workbench eval --models default --tasks quick --limit 20`; "
            "`workbench eval --list` shows the tasks.",
        )
    fields = {
        "kind": "eval",
        "models": _split(args.models),
        "tasks": _split(args.tasks),
        "limit": args.limit,
        "batch_size": args.batch_size,
        "judge": args.judge or "",
        "identity_name": args.identity_name or "",
        "identity_author": args.identity_author or "",
        "name": args.name or "",
        "device": args.device,
        "dtype": args.dtype,
    }
    return recipe_from_dict(fields, where="workbench eval")


def format_rows(rows: list[dict]) -> str:
    """The metric rows as a table: value with its 95% interval and the samples scored."""
    table = [
        {
            "model": r["model"],
            "task": r["task"],
            "metric": r["metric"] + (" (lower is better)" if r["lower_is_better"] else ""),
            "value": f"{r['value']:.4f}",
            "95% ci": f"[{r['low']:.3f}, {r['high']:.3f}]",
            "n": f"{r['n']}/{r['samples']}",
        }
        for r in rows
    ]
    return _table(table, ["model", "task", "metric", "value", "95% ci", "n"])


def cmd_eval_list(args: argparse.Namespace) -> int:
    from workbench.evaluate.suites import SUITES, bundled_task, task_names

    ws = Workspace()
    tasks = []
    for name in task_names():
        task = bundled_task(name, ws)
        tasks.append(
            {
                "name": name,
                "kind": task.kind,
                "language": task.language,
                "capability": task.capability,
                "samples": len(task.samples),
                "description": task.description,
            }
        )
    if args.json:
        _print_json({"tasks": tasks, "suites": SUITES})
    else:
        print(_table(tasks, ["name", "kind", "language", "capability", "samples", "description"]))
        print("\nSuites:")
        for suite, names in SUITES.items():
            print(f"  {suite}: {', '.join(names)}")
    return 0


def cmd_show_prompt(args: argparse.Namespace) -> int:
    from workbench.evaluate.suites import resolve_tasks
    from workbench.evaluate.tasks import KINDS

    for task in resolve_tasks([args.show_prompt], Workspace()):
        prompt = KINDS[task.kind].prompt(task, task.samples[0]) if task.samples else ""
        if args.json:
            _print_json({"task": task.name, "kind": task.kind, "prompt": prompt})
        else:
            print(f"# {task.name} ({task.kind}), first sample:\n{prompt}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.list:
        return cmd_eval_list(args)
    if args.show_prompt:
        return cmd_show_prompt(args)
    from workbench.evaluate.suites import resolve_tasks
    from workbench.jobs import follow, get_job, submit

    recipe = eval_recipe_from_args(args)
    ws = Workspace()
    resolve_tasks(recipe.tasks, ws)  # a wrong task or task file fails now, not in the job
    if recipe.name:
        ws.refuse_taken(recipe.name)
    job = submit(ws, recipe, title=f"eval: {', '.join(recipe.models)} on {', '.join(recipe.tasks)}")
    if args.detach:
        if args.json:
            _print_json(job.to_dict())
        else:
            print(f"Queued job {job.id}. Watch it with `workbench jobs show {job.id}`.")
        return 0
    if not args.json:
        print(f"Job {job.id} (eval) queued; following it (Ctrl-C stops watching).", file=sys.stderr)
    last = 0.0
    try:
        for event in follow(ws, job.id):
            # one line a second at most: an evaluation reports every sample
            final = event.get("status") or event.get("step") == event.get("total")
            if not args.json and (final or time.monotonic() - last >= 1.0):
                last = time.monotonic()
                print(describe_event(event), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(
            f"\nStopped watching; the job goes on: `workbench jobs show {job.id}`.", file=sys.stderr
        )
        return 130
    job = get_job(ws, job.id)
    result = job.result or {}
    if args.json:
        _print_json(
            {
                "job": job.id,
                "status": job.status,
                "artifact": result.get("artifact", ""),
                "results": result.get("metrics", []),
                "errors": result.get("errors", []),
                "computed": result.get("computed", 0),
                "cached": result.get("cached", 0),
                "error": job.error,
            }
        )
    else:
        if result.get("metrics"):
            print(format_rows(result["metrics"]))
            print(
                f"\nSaved as eval artifact {result.get('artifact')!r}: "
                f"{result.get('computed', 0)} samples computed, {result.get('cached', 0)} from cache."
            )
        for error in result.get("errors", []):
            where = " / ".join(str(error[k]) for k in ("model", "task", "sample") if error.get(k))
            print(f"failed: {where}: {error['error']}", file=sys.stderr)
        if job.status != "succeeded":
            print(f"Job {job.id} {job.status}.\n{job.error}".rstrip(), file=sys.stderr)
    return 0 if job.status == "succeeded" else EXIT_FAILED


def add_eval_commands(
    verbs: Any, common: argparse.ArgumentParser, follow: argparse.ArgumentParser
) -> None:
    """Add `workbench eval` to the top-level subparsers."""
    p = verbs.add_parser(
        "eval", parents=[common, follow], help="evaluate models on tasks (cached, as a job)"
    )
    p.add_argument(
        "--models", help="comma-separated models: default, artifacts, folders, openai:URL#m"
    )
    p.add_argument("--tasks", help="comma-separated task names, suites and task files")
    p.add_argument("--limit", type=int, default=0, help="first N samples of each task (0: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--judge", help="the judge model for judge tasks")
    p.add_argument("--identity-name", help="the name identity tasks expect")
    p.add_argument("--identity-author", help="the author identity tasks expect")
    p.add_argument("--name", help="name of the eval artifact (default eval-<time>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--list", action="store_true", help="list bundled tasks and suites")
    p.add_argument("--show-prompt", metavar="TASK", help="print the exact prompt a task builds")
    p.set_defaults(func=cmd_eval)
