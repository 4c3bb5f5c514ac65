"""The `workbench` command line: every verb also takes --json for machine-readable output.

    workbench doctor
    workbench models list | prepare [MODEL]
    workbench jobs list | show ID | cancel ID | resume ID
    workbench train --data DATASET --out NAME [--preset classroom] | merge   (cli_train.py)
    workbench run RECIPE.yaml
    workbench chat --model default "What is the capital of France?"
    workbench data inspect | convert | import | self-cognition | list | export  (cli_data.py)

Errors for people (workbench.errors) print as what / where / fix and exit with status 2; with
--json they print as {"error": {...}}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from workbench.errors import WorkbenchError
from workbench.progress import describe_event
from workbench.workspace import Workspace

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, *body])


# --- doctor ----------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from workbench.doctor import run_checks
    from workbench.hardware import detect_hardware

    hw = detect_hardware()
    checks = run_checks(Workspace(), hw)
    if args.json:
        _print_json({"hardware": hw.to_dict(), "checks": [c.to_dict() for c in checks]})
    else:
        print(f"Hardware:  {hw.summary()}")
        print(f"CPU:       {hw.cpu_model} ({hw.cpu_cores} cores, bf16: {hw.cpu_bf16})")
        print(f"Memory:    {hw.ram_available_gb:.1f} of {hw.ram_total_gb:.1f} GB free")
        for gpu in hw.gpus:
            print(
                f"GPU {gpu.index}:     {gpu.name}, {gpu.memory_free_gb:.1f} of "
                f"{gpu.memory_total_gb:.1f} GB free, capability {gpu.capability}"
            )
        print(f"Python:    {hw.python} on {hw.platform}")
        libs = ", ".join(f"{k} {v}" for k, v in hw.libraries.items() if v)
        print(f"Libraries: {libs}")
        print()
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.fix:
                print(f"       fix: {check.fix}")
    return 0 if all(c.ok for c in checks) else EXIT_FAILED


# --- models ----------------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    from workbench.models import list_models

    rows = list_models(Workspace())
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        row["parents"] = ", ".join(row.get("parents") or [])
        row["prepared"] = "yes" if row.get("prepared") else "no"
    print(_table(rows, ["name", "variant", "prepared", "size_mb", "parents", "source"]))
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from workbench.recipes import PrepareModelRecipe

    recipe = PrepareModelRecipe(
        model=args.model,
        name=args.name or "",
        hub=args.hub,
        revision=args.revision or "",
        trust_remote_code=args.trust_remote_code,
    )
    ws = Workspace()
    if args.model == "default" and ws.exists("default"):
        if args.json:
            _print_json(
                {
                    "artifact": "default",
                    "path": str(ws.path_of("default")),
                    "already_prepared": True,
                }
            )
        else:
            print(f"The default model is ready: {ws.path_of('default')}")
        return 0
    if args.model != "default":
        from workbench.models import resolve_model

        # A missing or broken folder is reported now, not by a job that fails a moment later;
        # a hub id is only parsed here (no network).
        resolve_model(args.model, ws, hub=args.hub)
    return _submit_and_follow(ws, recipe, args)


# --- jobs ------------------------------------------------------------------------------------


def _job_row(job: Any) -> dict:
    from workbench.jobs import latest_progress

    progress = latest_progress(job)
    step, total = progress.get("step"), progress.get("total")
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": f"{step}/{total}" if step is not None and total else "",
        "created": job.created,
        "title": job.title,
    }


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from workbench.jobs import list_jobs

    jobs = list_jobs(Workspace(), status=args.status, limit=args.limit)
    if args.json:
        _print_json([j.to_dict() for j in jobs])
    else:
        print(
            _table(
                [_job_row(j) for j in jobs],
                ["id", "kind", "status", "progress", "created", "title"],
            )
        )
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from workbench.jobs import get_job, latest_progress, tail_log

    job = get_job(Workspace(), args.id)
    if args.json:
        _print_json(
            {
                **job.to_dict(),
                "progress": latest_progress(job),
                "log_tail": tail_log(job, args.lines),
            }
        )
        return 0
    for key in ("id", "kind", "title", "status", "resource", "created", "started", "finished"):
        print(f"{key + ':':10} {getattr(job, key) or '-'}")
    print(f"{'run dir:':10} {job.run_dir}")
    print(f"{'replay:':10} workbench run {job.run_dir / 'recipe.yaml'}")
    progress = latest_progress(job)
    if progress:
        print(f"{'progress:':10} {describe_event(progress)}")
    if job.result:
        print(f"{'result:':10} {json.dumps(job.result, ensure_ascii=False, default=str)}")
    if job.error:
        print(f"\nerror:\n{job.error}")
    log = tail_log(job, args.lines)
    if log:
        print(f"\nlast {args.lines} log lines:\n{log}")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from workbench.jobs import cancel

    job = cancel(Workspace(), args.id, wait=not args.no_wait, grace_s=args.grace)
    if args.json:
        _print_json(job.to_dict())
    else:
        state = "cancel requested" if job.active else job.status
        print(f"{job.id}: {state}")
    return 0


# --- run -------------------------------------------------------------------------------------


def cmd_jobs_resume(args: argparse.Namespace) -> int:
    from workbench.jobs import resume

    ws = Workspace()
    return follow_job(ws, resume(ws, args.id), args)


def cmd_run(args: argparse.Namespace) -> int:
    from workbench.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    return _submit_and_follow(Workspace(), recipe, args)


def _submit_and_follow(ws: Workspace, recipe: Any, args: argparse.Namespace) -> int:
    """Queue `recipe` as a job; unless --detach, print its progress until it ends."""
    from workbench.jobs import submit

    return follow_job(ws, submit(ws, recipe), args)


def follow_job(ws: Workspace, job: Any, args: argparse.Namespace) -> int:
    """Unless --detach, print the progress of `job` until it ends; exit status as the job's."""
    from workbench.jobs import follow, get_job

    if args.detach:
        if args.json:
            _print_json(job.to_dict())
        else:
            print(f"Queued job {job.id}. Watch it with `workbench jobs show {job.id}`.")
        return 0
    if not args.json:
        print(
            f"Job {job.id} ({job.kind}) queued; following its progress (Ctrl-C stops "
            "watching, not the job).",
            file=sys.stderr,
        )
    try:
        for event in follow(ws, job.id):
            if not args.json:
                print(describe_event(event), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(
            f"\nStopped watching. The job goes on: `workbench jobs show {job.id}`, "
            f"`workbench jobs cancel {job.id}`.",
            file=sys.stderr,
        )
        return 130
    job = get_job(ws, job.id)
    if args.json:
        _print_json(job.to_dict())
    elif job.status == "succeeded":
        print(f"Job {job.id} succeeded: {json.dumps(job.result, ensure_ascii=False, default=str)}")
    else:
        print(f"Job {job.id} {job.status}.\n{job.error}".rstrip(), file=sys.stderr)
    return 0 if job.status == "succeeded" else EXIT_FAILED


# --- chat ------------------------------------------------------------------------------------


def cmd_chat(args: argparse.Namespace) -> int:
    from workbench.engine import parse_engine_name
    from workbench.generate import GenerationSettings, build_messages, chat_once, stream_chat
    from workbench.models import load_model

    if parse_engine_name(args.model)[0] != "local":  # openai:URL#model, lmdeploy:MODEL
        from workbench.cli_serve import chat_with_endpoint

        return chat_with_endpoint(args)
    loaded = load_model(
        args.model,
        Workspace(),
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )
    if args.prompt:
        messages = build_messages(args.prompt, system=args.system)
        if args.json:
            result = chat_once(loaded, messages, settings)
            _print_json(
                {
                    "model": args.model,
                    "prompt": args.prompt,
                    "device": loaded.device,
                    "dtype": loaded.dtype,
                    **dataclasses.asdict(result),
                }
            )
        else:
            _print_stream(stream_chat(loaded, messages, settings))
        return 0
    return _chat_repl(loaded, settings, args, stream_chat, build_messages)


def _print_stream(pieces: Iterable[str]) -> str:
    text = []
    for piece in pieces:
        text.append(piece)
        print(piece, end="", flush=True)
    print()
    return "".join(text)


def _chat_repl(
    loaded: Any,
    settings: Any,
    args: argparse.Namespace,
    stream_chat: Callable,
    build_messages: Callable,
) -> int:
    """Interactive chat on the terminal: /reset clears the history, /exit or Ctrl-D leaves."""
    history: list[dict] = []
    print(
        f"Chatting with {args.model} on {loaded.device} ({loaded.dtype}). "
        "/reset clears the history, /exit leaves.",
        file=sys.stderr,
    )
    while True:
        try:
            prompt = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if prompt in ("/exit", "/quit"):
            return 0
        if prompt == "/reset":
            history.clear()
            continue
        if not prompt:
            continue
        messages = build_messages(prompt, system=args.system, history=history)
        print("model> ", end="", flush=True)
        answer = _print_stream(stream_chat(loaded, messages, settings))
        history.extend(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        )


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument(
        "--detach",
        action="store_true",
        help="queue the job and return at once instead of following it",
    )

    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Workbench: data, fine-tuning, quantization, evaluation and chat for LLMs. "
        "Every verb takes --json.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("doctor", parents=[common], help="show hardware, libraries and checks")
    p.set_defaults(func=cmd_doctor)

    models = verbs.add_parser("models", help="list and prepare models").add_subparsers(
        dest="models_verb", required=True, metavar="ACTION"
    )
    p = models.add_parser("list", parents=[common], help="models in the workspace")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser(
        "prepare",
        parents=[common, follow],
        help="bring a model into the workspace (default, folder or hub id)",
    )
    p.add_argument(
        "model",
        nargs="?",
        default="default",
        help="'default', a local model folder or a hub id (org/name)",
    )
    p.add_argument("--name", help="name of the new artifact (derived from MODEL if omitted)")
    p.add_argument("--hub", choices=["huggingface", "modelscope"], default="huggingface")
    p.add_argument("--revision", help="hub branch, tag or commit")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model's own Python code (InternLM2 needs it)",
    )
    p.set_defaults(func=cmd_models_prepare)

    jobs = verbs.add_parser("jobs", help="background jobs").add_subparsers(
        dest="jobs_verb", required=True, metavar="ACTION"
    )
    p = jobs.add_parser("list", parents=[common], help="recent jobs, newest first")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_jobs_list)
    p = jobs.add_parser("show", parents=[common], help="one job: status, progress, error, log")
    p.add_argument("id")
    p.add_argument("--lines", type=int, default=20, help="log lines to show")
    p.set_defaults(func=cmd_jobs_show)
    p = jobs.add_parser("cancel", parents=[common], help="stop a job (gracefully, then kill)")
    p.add_argument("id")
    p.add_argument("--no-wait", action="store_true", help="ask it to stop and return at once")
    p.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds to wait for a graceful stop before killing",
    )
    p.set_defaults(func=cmd_jobs_cancel)
    p = jobs.add_parser(
        "resume", parents=[common, follow], help="continue a cancelled or failed training job"
    )
    p.add_argument("id")
    p.set_defaults(func=cmd_jobs_resume)

    p = verbs.add_parser("run", parents=[common, follow], help="run a recipe YAML as a job")
    p.add_argument("recipe", help="path to a recipe YAML (the UI shows the one it launches)")
    p.set_defaults(func=cmd_run)

    p = verbs.add_parser("chat", parents=[common], help="chat with a model in the terminal")
    p.add_argument("prompt", nargs="?", help="one prompt; without it, an interactive chat")
    p.add_argument("--model", default="default")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_chat)

    from workbench.cli_agent import add_agent_commands
    from workbench.cli_class import add_class_commands
    from workbench.cli_data import add_data_commands
    from workbench.cli_eval import add_eval_commands
    from workbench.cli_quant import add_quantize_commands
    from workbench.cli_serve import add_serve_commands
    from workbench.cli_train import add_train_commands

    add_data_commands(verbs, common)
    add_class_commands(verbs, common)
    add_train_commands(verbs, common, follow)
    add_serve_commands(verbs, common)
    add_eval_commands(verbs, common, follow)
    add_quantize_commands(verbs, common, follow)
    add_agent_commands(verbs, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        if getattr(args, "json", False):
            _print_json({"error": exc.to_dict()})
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
