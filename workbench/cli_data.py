"""`workbench data ...`: inspect, convert, import and generate datasets from the command line.

    workbench data inspect train.jsonl --json
    workbench data convert train.csv --to sharegpt --out train.sharegpt.jsonl
    workbench data import train.jsonl --name my-data --dedupe near --eval-fraction 0.1
    workbench data self-cognition --name Puyu --author "InternLM class" --out self-cog
    workbench data list | export NAME --to alpaca --out FILE
    workbench data prefs-import pairs.jsonl --name my-prefs        # chosen/rejected pairs
    workbench data prefs-import --bundled --name prefs             # the bundled 220 pairs
    workbench data prefs-from-arena --out arena-prefs              # the chat arena's votes

Row numbers in messages are 1-based and count what the user sees in the file (lines for JSONL
and CSV, positions for JSON arrays and Parquet).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from workbench.cli import EXIT_FAILED, _print_json, _table
from workbench.workspace import Workspace

ERRORS_PRINTED = 20


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from workbench.data.loading import load_data

    loaded = load_data(args.path, fmt=args.format, encoding=args.encoding)
    report = loaded.summary(max_errors=args.max_errors)
    report["stats"] = None if args.no_stats else _stats(loaded.samples, args, report["notices"])
    if args.json:
        _print_json(report)
        return 0
    detected = report["detected"]
    unit = report["row_unit"]
    print(f"File:     {report['source']} ({report['file_type']})")
    print(f"Format:   {report['format']} (detected {detected['format'] or 'none'}, ", end="")
    print(f"confidence {detected['confidence']:.0%}: {detected['reason']})")
    print(f"Rows:     {report['rows']}  valid {report['valid']}  invalid {report['invalid']}")
    for notice in report["notices"]:
        print(f"Note:     {notice}")
    for error in loaded.errors[:ERRORS_PRINTED]:
        field = f" {error.field}:" if error.field else ""
        print(f"  {unit} {error.row}:{field} {error.message}")
    if len(loaded.errors) > ERRORS_PRINTED:
        print(f"  ... and {len(loaded.errors) - ERRORS_PRINTED} more (--json lists them)")
    if report["stats"]:
        _print_stats(report["stats"])
    return 0


def _stats(samples: list[dict], args: argparse.Namespace, notices: list[str]) -> dict:
    from workbench.data.stats import dataset_stats

    tokenizer = None
    ws = Workspace()
    model = args.model or ("default" if ws.exists("default") else "")
    if model:
        from workbench.data.browse import load_tokenizer

        tokenizer = load_tokenizer(model, ws)
    else:
        notices.append(
            "Token counts need a tokenizer: pass --model (e.g. --model default, which prepares "
            "the embedded model once, about 40 s)."
        )
    return dataset_stats(samples, tokenizer=tokenizer, cutoff=args.cutoff)


def _print_stats(stats: dict) -> None:
    chars = stats["chars"]
    print(f"Kind:     {stats['kind']}; user turns per sample: {stats['turns']}")
    print(f"Chars:    median {chars['median']:.0f}, p95 {chars['p95']:.0f}, max {chars['max']}")
    tokens = stats.get("tokens")
    if tokens:
        how = "exact" if tokens["exact"] else f"estimated from {tokens['sampled']} rows"
        print(
            f"Tokens:   median {tokens['median']:.0f}, p95 {tokens['p95']:.0f}, max "
            f"{tokens['max']} ({how}); over {tokens['cutoff']}: {tokens['over_cutoff']}"
        )
    dupes = stats["duplicates"]
    print(f"Repeats:  exact {dupes['exact']}, near {dupes['near']}")
    print(f"Language: {stats['language']}")


def cmd_data_convert(args: argparse.Namespace) -> int:
    from workbench.data.files import RowError, write_rows
    from workbench.data.formats import RowProblem, row_from_sample
    from workbench.data.loading import load_data, strip_row, write_rejects

    loaded = load_data(args.path, fmt=args.format, encoding=args.encoding)
    rows, refused = [], list(loaded.errors)
    for sample in loaded.samples:
        try:
            rows.append(row_from_sample(strip_row(sample), args.to))
        except RowProblem as problem:
            raw = json.dumps(sample, ensure_ascii=False)
            refused.append(RowError(sample["row"], problem.field, problem.message, raw))
    result: dict[str, Any] = {"out": "", "written": len(rows), "refused": len(refused)}
    if rows:
        result["out"] = str(write_rows(rows, args.out))
    if refused:
        rejects = Path(args.out).with_suffix(".rejects.jsonl")
        write_rejects(sorted(refused, key=lambda e: e.row), rejects)
        result["rejects"] = str(rejects)
        result["errors"] = [e.to_dict() for e in refused[:ERRORS_PRINTED]]
    if args.json:
        _print_json(result)
    else:
        print(f"Wrote {len(rows)} rows as {args.to} to {result['out'] or '(nothing)'}")
        if refused:
            print(f"{len(refused)} rows could not be converted; they are in {result['rejects']}:")
            for error in refused[:ERRORS_PRINTED]:
                field = f"{error.field}: " if error.field else ""
                print(f"  {loaded.source.unit} {error.row}: {field}{error.message}")
    return 0 if rows else EXIT_FAILED


def cmd_data_import(args: argparse.Namespace) -> int:
    from workbench.data.prepare import run_import_data
    from workbench.recipes import ImportDataRecipe

    recipe = ImportDataRecipe(
        source=args.path,
        name=args.name,
        format=args.format,
        encoding=args.encoding,
        dedupe=args.dedupe,
        model=args.model,
        cutoff=args.cutoff,
        overlong=args.overlong,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        description=args.description,
    )
    result = run_import_data(recipe, workspace=Workspace())
    if args.json:
        _print_json(result)
        return 0
    print(
        f"Saved dataset {result['artifact']!r}: {result['train_rows']} train, "
        f"{result['eval_rows']} eval, {result['rejected']} rejected ({result['format']})"
    )
    for step in result["steps"]:
        details = ", ".join(f"{k} {v}" for k, v in step.items() if k != "step")
        print(f"  {step['step']}: {details}")
    return 0


def cmd_data_self_cognition(args: argparse.Namespace) -> int:
    from workbench.data.prepare import save_samples
    from workbench.data.self_cognition import generate_self_cognition

    languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    samples = generate_self_cognition(
        args.name, args.author, languages=languages, count=args.count, seed=args.seed
    )
    ws = Workspace()
    recipe = {
        "kind": "self_cognition",
        "name": args.name,
        "author": args.author,
        "languages": list(languages),
        "count": args.count,
        "seed": args.seed,
    }
    save_samples(
        ws,
        args.out,
        samples,
        source="self-cognition generator",
        description=f"Self-cognition: {args.name} by {args.author}",
        recipe=recipe,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
    )
    manifest = ws.get(args.out)
    if args.json:
        _print_json({"artifact": args.out, **manifest.metrics})
    else:
        print(
            f"Saved dataset {args.out!r}: {manifest.metrics['train_rows']} train, "
            f"{manifest.metrics['eval_rows']} eval samples"
        )
    return 0


def cmd_data_prefs_import(args: argparse.Namespace) -> int:
    from workbench.data.prefs import BUNDLED_PREFS, ROOT, import_prefs, load_prefs
    from workbench.errors import InvalidInput

    if bool(args.path) == bool(args.bundled):
        raise InvalidInput(
            "Give a file of preference pairs, or --bundled (not both).",
            where="workbench data prefs-import",
            fix="e.g. `workbench data prefs-import pairs.jsonl --name my-prefs`.",
        )
    source = args.path or str(ROOT / next(iter(BUNDLED_PREFS.values())))
    if args.check:
        report = load_prefs(source, encoding=args.encoding).summary(args.max_errors)
        if args.json:
            _print_json(report)
        else:
            print(f"Pairs:    {report['valid']} valid, {report['invalid']} invalid")
            _print_row_errors(report["errors"])
        return 0 if report["valid"] else EXIT_FAILED
    result = import_prefs(
        Workspace(), source, name=args.name, eval_fraction=args.eval_fraction, seed=args.seed,
        encoding=args.encoding, description=args.description,
    )  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    dropped = next(s["dropped"] for s in result["steps"] if s["step"] == "dedupe")
    print(
        f"Saved preference dataset {args.name!r}: {result['train_rows']} train and "
        f"{result['eval_rows']} held-out pairs; {result['rejected']} rows rejected, "
        f"{dropped} repeats dropped"
    )
    if result["rejected"]:
        print(f"Rejected rows are in {Workspace().path_of(args.name) / 'rejects.jsonl'}")
    return 0


def cmd_data_prefs_from_arena(args: argparse.Namespace) -> int:
    from workbench.data.prefs import prefs_from_arena

    result = prefs_from_arena(
        Workspace(), name=args.out, eval_fraction=args.eval_fraction, seed=args.seed
    )
    if args.json:
        _print_json(result)
        return 0
    counts = result["arena"]
    print(
        f"Saved preference dataset {args.out!r}: {counts['pairs']} pairs from {counts['votes']} "
        f"votes ({result['train_rows']} train, {result['eval_rows']} held out). Left out: "
        f"{counts['ties']} ties, {counts['skips']} skipped, {counts['unusable']} without two "
        "different answers."
    )
    return 0


def _print_row_errors(errors: list[dict]) -> None:
    for error in errors[:ERRORS_PRINTED]:
        print(f"  row {error['row']}: {error['field'] or 'row'}: {error['message']}")


def cmd_data_list(args: argparse.Namespace) -> int:
    from workbench.data.prepare import list_datasets

    rows = list_datasets(Workspace())
    if args.json:
        _print_json(rows)
    else:
        print(_table(rows, ["name", "kind", "train_rows", "eval_rows", "rejected", "source"]))
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    args.path = str(_dataset_path(args.name, args.split))
    args.format, args.encoding = "", "utf-8"
    return cmd_data_convert(args)


def _dataset_path(name: str, split: str) -> Path:
    from workbench.data.prepare import dataset_file

    return dataset_file(Workspace(), name, split)


def add_data_commands(verbs: Any, common: argparse.ArgumentParser) -> None:
    """Add `workbench data ...` to the top-level subparsers."""
    from workbench.data.formats import FORMATS
    from workbench.recipes import DEDUPE_MODES, OVERLONG_MODES

    formats = list(FORMATS)
    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument("--format", default="", choices=["", *formats], help="skip detection")
    reading.add_argument("--encoding", default="utf-8", help="e.g. gb18030 for GBK Chinese")

    data = verbs.add_parser("data", help="inspect, convert and import datasets")
    actions = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")

    p = actions.add_parser(
        "inspect", parents=[common, reading], help="format, row checks and statistics of a file"
    )
    p.add_argument("path", help="JSONL/JSON/CSV/Parquet/text file, `datasets` folder or hub id")
    p.add_argument("--model", default="", help="tokenizer for token counts (default if prepared)")
    p.add_argument("--cutoff", type=int, default=2048, help="token limit to count samples over")
    p.add_argument("--no-stats", action="store_true", help="only read and check the rows")
    p.add_argument("--max-errors", type=int, default=1000, help="errors listed in --json")
    p.set_defaults(func=cmd_data_inspect)

    p = actions.add_parser(
        "convert", parents=[common, reading], help="write a file in another format"
    )
    p.add_argument("path")
    p.add_argument("--to", required=True, choices=formats)
    p.add_argument("--out", required=True, help="output file: .jsonl, .json, .csv or .parquet")
    p.set_defaults(func=cmd_data_convert)

    p = actions.add_parser(
        "import", parents=[common, reading], help="check, clean, split and save as a dataset"
    )
    p.add_argument("path")
    p.add_argument("--name", required=True, help="name of the new dataset artifact")
    p.add_argument("--dedupe", default="exact", choices=DEDUPE_MODES)
    p.add_argument("--model", default="default", help="tokenizer for --cutoff")
    p.add_argument("--cutoff", type=int, default=0, help="token limit; 0 = no length check")
    p.add_argument("--overlong", default="keep", choices=OVERLONG_MODES)
    p.add_argument("--eval-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_data_import)

    p = actions.add_parser(
        "self-cognition", parents=[common], help="generate the who-am-I dataset (en + zh)"
    )
    p.add_argument("--name", required=True, help="the assistant's name")
    p.add_argument("--author", required=True, help="who made it")
    p.add_argument("--out", required=True, help="name of the new dataset artifact")
    p.add_argument("--languages", default="en,zh")
    p.add_argument("--count", type=int, default=None, help="number of samples (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-fraction", type=float, default=0.0)
    p.set_defaults(func=cmd_data_self_cognition)

    p = actions.add_parser(
        "prefs-import", parents=[common], help="check and save preference pairs (DPO/ORPO data)"
    )
    p.add_argument("path", nargs="?", help="JSONL/JSON/CSV/Parquet file of pairs")
    p.add_argument("--bundled", action="store_true", help="the bundled preference set")
    p.add_argument("--name", default="prefs", help="name of the new dataset artifact")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="pairs held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--check", action="store_true", help="only check the rows, save nothing")
    p.add_argument("--max-errors", type=int, default=1000, help="errors listed in --json")
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_data_prefs_import)

    p = actions.add_parser(
        "prefs-from-arena", parents=[common], help="preference pairs from the chat arena's votes"
    )
    p.add_argument("--out", required=True, help="name of the new dataset artifact")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="pairs held out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_prefs_from_arena)

    p = actions.add_parser("list", parents=[common], help="dataset artifacts in the workspace")
    p.set_defaults(func=cmd_data_list)

    p = actions.add_parser("export", parents=[common], help="write a dataset artifact as a file")
    p.add_argument("name")
    p.add_argument("--to", required=True, choices=formats)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train", choices=["train", "eval"])
    p.set_defaults(func=cmd_data_export)
