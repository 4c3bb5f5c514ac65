"""`workbench serve`: the OpenAI-compatible server, in the foreground or as a background job.

    workbench serve --model default                       # http://127.0.0.1:8000/v1, Ctrl-C stops
    workbench serve --model my-merged --port 8001 --api-key secret --gradio
    workbench serve --model default --detach              # a job: `workbench jobs cancel ID` stops it
    workbench serve --model my-merged --backend lmdeploy  # LMDeploy on a GPU machine

In the foreground, SIGINT and SIGTERM stop it gracefully (streams in flight get a few seconds).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from workbench.cli import _print_json
from workbench.errors import WorkbenchError
from workbench.workspace import Workspace

ENDPOINT_WAIT_S = 300


def serve_recipe_from_args(args: argparse.Namespace) -> Any:
    from workbench.recipes import ServeRecipe

    return ServeRecipe(
        model=args.model,
        host=args.host,
        port=args.port,
        api_key=args.api_key or "",
        backend=args.backend,
        gradio=args.gradio,
        weights=args.weights,
        slots=args.slots,
        max_len=args.max_len,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    recipe = serve_recipe_from_args(args)
    ws = Workspace()
    if args.detach:
        return _serve_detached(ws, recipe, args)
    from workbench.server import run_serve

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave at once
            raise KeyboardInterrupt
        stop.set()
        print("\nStopping: finishing the answers in flight…", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def progress(**event: Any) -> None:
        url = event.get("url")
        if not url:
            return
        if args.json:
            print(
                json.dumps({"url": url, "port": event.get("port"), "model": recipe.model}),
                flush=True,
            )
            return
        print(f"Serving {recipe.model} at {url} (OpenAI-compatible). Ctrl-C stops.", flush=True)
        if recipe.api_key:
            print("Clients must send: Authorization: Bearer <your --api-key>", flush=True)
        if recipe.gradio:
            print(f"Gradio demo: {url[: -len('/v1')]}/demo", flush=True)

    if not args.json:
        print(f"Loading {recipe.model}…", file=sys.stderr, flush=True)
    result = run_serve(recipe, workspace=ws, progress=progress, should_stop=stop.is_set)
    if args.json:
        _print_json({"stopped": True, **result})
    else:
        print(
            f"Stopped after {result['requests']} requests, {result['completion_tokens']} tokens.",
            file=sys.stderr,
        )
    return 0


def _serve_detached(ws: Workspace, recipe: Any, args: argparse.Namespace) -> int:
    """Queue the server as a job and wait until it listens (or fails)."""
    from workbench.jobs import get_job, submit

    job = submit(ws, recipe, title=f"serve: {recipe.model}")
    endpoint_file = job.run_dir / "endpoint.json"
    deadline = time.monotonic() + ENDPOINT_WAIT_S
    while not endpoint_file.is_file():
        job = get_job(ws, job.id)
        if job.status in ("failed", "cancelled", "succeeded"):
            raise WorkbenchError(
                f"The server job {job.id} {job.status} before it listened.\n{job.error}".rstrip(),
                where=f"job {job.id}",
                fix=f"`workbench jobs show {job.id}` shows its log.",
            )
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    endpoint = json.loads(endpoint_file.read_text("utf-8")) if endpoint_file.is_file() else {}
    if args.json:
        _print_json({"job": job.id, **endpoint})
    elif endpoint:
        print(f"Job {job.id} serves {recipe.model} at {endpoint['url']}.")
        print(f"Stop it with `workbench jobs cancel {job.id}`.")
    else:
        print(f"Job {job.id} is queued (waiting for a free slot): `workbench jobs show {job.id}`.")
    return 0


def add_serve_commands(verbs: Any, common: argparse.ArgumentParser) -> None:
    """Register `serve` on the main parser's sub-commands."""
    p = verbs.add_parser(
        "serve", parents=[common], help="serve a model over an OpenAI-compatible HTTP API"
    )
    p.add_argument("--model", default="default", help="'default', a workspace model or a folder")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 opens it to the network")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--api-key", default="", help="clients must send this key")
    p.add_argument("--gradio", action="store_true", help="also serve a Gradio chat demo at /demo")
    p.add_argument("--backend", default="local", choices=["local", "lmdeploy"])
    p.add_argument(
        "--weights",
        default="auto",
        choices=["auto", "model", "bfloat16", "int8", "int4"],
        help="how the local engine holds weights (int8/int4: CPU only)",
    )
    p.add_argument("--slots", type=int, default=8, help="requests decoded together")
    p.add_argument("--max-len", type=int, default=0, help="tokens per request (0: up to 4096)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--detach", action="store_true", help="run as a background job")
    p.set_defaults(func=cmd_serve)


def chat_with_endpoint(args: argparse.Namespace) -> int:
    """`workbench chat --model openai:URL#model [PROMPT]`: chat through any OpenAI-compatible
    server (the key comes from OPENAI_API_KEY); without a prompt, an interactive chat."""
    import os

    from workbench.engine import open_engine
    from workbench.generate import GenerationSettings, build_messages

    engine = open_engine(args.model, Workspace(), api_key=os.environ.get("OPENAI_API_KEY", ""))
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )
    history: list[dict] = []
    try:
        while True:
            prompt = args.prompt
            if not prompt:
                try:
                    prompt = input("you> ").strip()
                except (EOFError, KeyboardInterrupt):
                    return 0
                if prompt in ("/exit", "/quit"):
                    return 0
                if prompt == "/reset" or not prompt:
                    history.clear()
                    continue
            stream = engine.chat(build_messages(prompt, args.system, history), settings)
            if args.json and args.prompt:
                text = stream.text()
                _print_json(
                    {
                        "model": args.model,
                        "prompt": prompt,
                        "text": text,
                        "prompt_tokens": stream.prompt_tokens,
                        "completion_tokens": stream.completion_tokens,
                        "finish_reason": stream.finish_reason,
                        "seconds": round(stream.seconds, 3),
                    }
                )
                return 0
            text = ""
            for piece in stream:
                text += piece
                print(piece, end="", flush=True)
            print()
            if args.prompt:
                return 0
            history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
    finally:
        engine.close()
