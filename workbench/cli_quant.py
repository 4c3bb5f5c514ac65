"""`workbench quantize`: make a smaller model as a background job and print its report.

    workbench quantize --model default --method int8 --out default-int8
    workbench quantize --model default --method int4-awq --group 128 --calib my-data --out d-awq --json
    workbench quantize --model default --method gguf-q4 --out default-q4   # for llama.cpp / Ollama

The job runs in a worker process (`workbench jobs show ID`, `workbench jobs cancel ID`); the
JSON output is the report itself (size_bytes, source_size_bytes, ppl, source_ppl, tokens_per_s,
source_tokens_per_s, ...) with the job's id and status.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from workbench.cli import EXIT_FAILED, _print_json, follow_job
from workbench.workspace import Workspace


def quantize_recipe_from_args(args: argparse.Namespace) -> Any:
    from workbench.recipes import recipe_from_dict

    fields = {"model": args.model, "method": args.method, "out": args.out, "group": args.group}
    fields.update(calib=args.calib or "", report=not args.no_report)
    if args.ppl_tokens is not None:
        fields["ppl_tokens"] = args.ppl_tokens
    if args.speed_tokens is not None:
        fields["speed_tokens"] = args.speed_tokens
    if args.description:
        fields["description"] = args.description
    return recipe_from_dict({"kind": "quantize", **fields}, where="workbench quantize")


def cmd_quantize(args: argparse.Namespace) -> int:
    from workbench.jobs import get_job, submit
    from workbench.quantize.runner import METHODS, calibration_samples, check_source

    recipe = quantize_recipe_from_args(args)
    ws = Workspace()
    ws.refuse_taken(recipe.out)
    # Refusals that need no model load come now, not from a job a moment later.
    ref = check_source(recipe.model, ws)
    from workbench.quantize.artifact import read_config

    METHODS[recipe.method].check(read_config(ref.path))
    if METHODS[recipe.method].calibrated and recipe.calib:
        calibration_samples(recipe.calib, ws)
    job = submit(ws, recipe, title=f"quantize {recipe.method}: {recipe.out}")
    if not args.json or args.detach:
        status = follow_job(ws, job, args)
        if status == 0 and not args.detach:
            _print_summary(get_job(ws, job.id).result)
        return status
    quiet = argparse.Namespace(**{**vars(args), "json": True})
    with open_devnull() as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            status = follow_job(ws, job, quiet)
        finally:
            sys.stdout = stdout
    done = get_job(ws, job.id)
    payload = {**done.result, "job": done.id, "status": done.status}
    if done.error:
        payload["error"] = done.error
    _print_json(payload)
    return status if done.status == "succeeded" else EXIT_FAILED


def open_devnull():
    import os

    return open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with


def _print_summary(result: dict) -> None:
    mb = 2**20
    print(
        f"{result['artifact']}: {result['size_bytes'] / mb:.1f} MB "
        f"(source {result['source_size_bytes'] / mb:.1f} MB, x{result['size_ratio']:.2f})"
    )
    if "ppl" in result:
        print(
            f"perplexity {result['ppl']:.2f} (source {result['source_ppl']:.2f}, "
            f"{result['ppl_change']:+.2%}) on the bundled held-out text"
        )
        print(
            f"decode {result['tokens_per_s']:.1f} tokens/s (source {result['source_tokens_per_s']:.1f}"
            f" in {result['decode_dtype']}, {result['source_bf16_tokens_per_s']:.1f} in bf16)"
        )
        for row in result.get("answers", []):
            print(json.dumps(row, ensure_ascii=False))


def add_quantize_commands(
    verbs: Any, common: argparse.ArgumentParser, follow: argparse.ArgumentParser
) -> None:
    """Add `workbench quantize` to the top-level subparsers."""
    from workbench.recipes import QUANT_GROUPS, QUANT_METHODS

    p = verbs.add_parser(
        "quantize",
        parents=[common, follow],
        help="quantize a model (int8, int4, nf4, GGUF) and report size, perplexity and speed",
    )
    p.add_argument("--model", default="default", help="source model (default: 'default')")
    p.add_argument("--method", required=True, choices=QUANT_METHODS)
    p.add_argument("--out", required=True, help="name of the quantized model artifact")
    p.add_argument("--group", type=int, default=128, help=f"int4 group size: {QUANT_GROUPS}")
    p.add_argument("--calib", help="calibration dataset artifact (int4-awq)")
    p.add_argument("--no-report", action="store_true", help="skip perplexity and speed")
    p.add_argument("--ppl-tokens", type=int, help="held-out tokens per language (0: all)")
    p.add_argument("--speed-tokens", type=int, help="tokens per decode-speed round")
    p.add_argument("--description")
    p.set_defaults(func=cmd_quantize)
