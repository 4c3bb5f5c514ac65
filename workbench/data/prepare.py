"""Clean, split and save a dataset as a workspace artifact — the end of the Data studio.

    recipe = ImportDataRecipe(source="my.jsonl", name="my-data", dedupe="near", eval_fraction=0.1)
    run_import_data(recipe, workspace=ws)

A dataset artifact folder holds canonical samples, one JSON object per line:

    train.jsonl     the training split
    eval.jsonl      the held-out split (absent when eval_fraction is 0)
    rejects.jsonl   every row that could not be used: row, field, message, original text
    manifest.json   source path and sha256, format, counts, and every step with its numbers

Nothing is dropped without being counted: each step (validate, dedupe, overlong, split)
records how many rows it removed, and rejected rows keep their original text.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.data.files import RowError
from workbench.data.loading import load_data, strip_row, write_rejects
from workbench.errors import InvalidInput, NotFound
from workbench.limits import current_limits
from workbench.progress import null_progress
from workbench.recipes import ImportDataRecipe, recipe_to_dict
from workbench.workspace import Workspace, validate_name

ROOT = Path(__file__).resolve().parents[2]
SPLIT_FILES = {"train": "train.jsonl", "eval": "eval.jsonl", "rejects": "rejects.jsonl"}
BUNDLED = {
    "Bilingual instructions (bundled, 220+ rows)": "assets/data/instructions_bilingual.jsonl",
}


def run_import_data(
    recipe: ImportDataRecipe,
    *,
    workspace: Workspace | None = None,
    progress: Callable[..., None] = null_progress,
    should_stop: Callable[[], bool] = lambda: False,
    job_id: str = "",
    **_: Any,
) -> dict:
    """Run the recipe: read and check, dedupe, handle over-long samples, split, save.

    Returns a dict with the artifact name, counts and steps (also stored in its manifest).
    """
    ws = workspace or Workspace()
    ws.ensure()
    validate_name(recipe.name, "dataset name")
    ws.refuse_taken(recipe.name)  # fail before the work, not after it
    progress(stage="read", message=f"reading {recipe.source}", step=1, total=4)
    loaded = load_data(
        recipe.source,
        fmt=recipe.format,
        encoding=recipe.encoding,
        max_row_chars=recipe.max_row_chars,
    )
    steps = [
        {"step": "read", "rows": loaded.rows, "format": loaded.format},
        {"step": "validate", "kept": len(loaded.samples), "rejected": len(loaded.errors)},
    ]
    samples = loaded.samples
    if should_stop():
        return {"stopped": True}

    progress(stage="dedupe", message=f"removing duplicates ({recipe.dedupe})", step=2, total=4)
    samples, dropped = dedupe_samples(samples, recipe.dedupe)
    steps.append({"step": "dedupe", "mode": recipe.dedupe, "dropped": dropped})

    if recipe.cutoff > 0 and recipe.overlong != "keep":
        progress(
            stage="overlong",
            message=f"checking lengths against {recipe.cutoff} tokens",
            step=3,
            total=4,
        )
        from workbench.data.browse import load_tokenizer

        tokenizer = load_tokenizer(recipe.model, ws)
        samples, step = fit_to_cutoff(samples, tokenizer, recipe.cutoff, recipe.overlong)
        steps.append(step)
    if not samples:
        raise InvalidInput(
            "No sample is left to save: " + _first_problem(loaded.errors, steps),
            where=recipe.source,
            fix="Look at the errors (`workbench data inspect`), fix the file or choose its format.",
        )
    train, held_out = split_samples(samples, recipe.eval_fraction, recipe.seed)
    steps.append({"step": "split", "train": len(train), "eval": len(held_out), "seed": recipe.seed})

    progress(stage="save", message=f"saving dataset {recipe.name!r}", step=4, total=4)
    metrics = {
        "rows": loaded.rows,
        "train_rows": len(train),
        "eval_rows": len(held_out),
        "rejected": len(loaded.errors),
        "format": loaded.format,
        "data_kind": loaded.kind,
        "source_sha256": loaded.source.sha256,
        "steps": steps,
    }
    with ws.create(
        "dataset",
        recipe.name,
        recipe=recipe_to_dict(recipe),
        source=str(loaded.source.path),
        job=job_id,
        metrics=metrics,
        description=recipe.description,
    ) as staging:
        _write_samples(train, staging / SPLIT_FILES["train"])
        if held_out:
            _write_samples(held_out, staging / SPLIT_FILES["eval"])
        if loaded.errors:
            write_rejects(loaded.errors, staging / SPLIT_FILES["rejects"])
    return {
        "artifact": recipe.name,
        **{k: v for k, v in metrics.items() if k != "steps"},
        "steps": steps,
    }


def _first_problem(errors: list[RowError], steps: list[dict]) -> str:
    if errors:
        first = errors[0]
        return f"{len(errors)} rows were rejected (first: row {first.row}, {first.field}: {first.message})."
    return "; ".join(f"{s['step']}: {s}" for s in steps[2:]) or "the file held no rows."


def dedupe_samples(samples: list[dict], mode: str) -> tuple[list[dict], int]:
    """Drop exact (or exact and near) duplicates, keeping the first occurrence."""
    if mode == "none" or not samples:
        return samples, 0
    from workbench.data.stats import exact_duplicates, near_duplicates, sample_text

    texts = [sample_text(s) for s in samples]
    repeated = exact_duplicates(texts)
    if mode == "near":
        repeated = repeated | near_duplicates(texts)
    kept = [s for s, dup in zip(samples, repeated, strict=True) if not dup]
    return kept, len(samples) - len(kept)


def fit_to_cutoff(
    samples: list[dict], tokenizer: Any, cutoff: int, mode: str
) -> tuple[list[dict], dict]:
    """Drop or clip samples whose rendered length is over `cutoff` tokens (exact counts).

    Clip: a conversation keeps the leading turns that fit (at least one full exchange, else it
    is dropped); raw text is split into consecutive pieces that each fit.
    """
    from workbench.data.stats import render_for_length

    def length(sample: dict) -> int:
        return len(
            tokenizer(render_for_length(tokenizer, sample), add_special_tokens=False)["input_ids"]
        )

    kept, dropped, clipped, pieces = [], 0, 0, 0
    for sample in samples:
        if length(sample) <= cutoff:
            kept.append(sample)
        elif mode == "drop":
            dropped += 1
        elif "text" in sample:
            parts = _split_text(sample, tokenizer, cutoff)
            kept += parts
            clipped += 1
            pieces += len(parts)
        else:
            shorter = _clip_turns(sample, length, cutoff)
            if shorter is None:
                dropped += 1
            else:
                kept.append(shorter)
                clipped += 1
    step = {
        "step": "overlong",
        "mode": mode,
        "cutoff": cutoff,
        "dropped": dropped,
        "clipped": clipped,
    }
    if pieces:
        step["pieces"] = pieces
    return kept, step


def _clip_turns(sample: dict, length: Callable[[dict], int], cutoff: int) -> dict | None:
    messages = sample["messages"]
    ends = [
        i + 1
        for i, m in enumerate(messages)
        if m["role"] == "assistant" and not m.get("tool_calls")
    ]
    for end in reversed(ends[:-1]):
        shorter = {**sample, "messages": messages[:end]}
        if length(shorter) <= cutoff:
            return shorter
    return None


def _split_text(sample: dict, tokenizer: Any, cutoff: int) -> list[dict]:
    encoded = tokenizer(sample["text"], add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    size = max(1, cutoff - 1)  # room for the end-of-text token training appends
    parts, start = [], 0
    for first in range(size, len(offsets), size):
        end = offsets[first][0]
        parts.append({**sample, "text": sample["text"][start:end]})
        start = end
    parts.append({**sample, "text": sample["text"][start:]})
    return [p for p in parts if p["text"].strip()]


def split_samples(
    samples: list[dict], eval_fraction: float, seed: int
) -> tuple[list[dict], list[dict]]:
    """Seeded shuffle, then hold out round(n * eval_fraction) samples (at least 1 if asked)."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(samples) * eval_fraction)
    if eval_fraction > 0 and len(samples) > 1:
        n_eval = max(1, n_eval)
    n_eval = min(n_eval, len(samples) - 1)
    held = sorted(order[:n_eval])
    train = sorted(order[n_eval:])
    return [samples[i] for i in train], [samples[i] for i in held]


def _write_samples(samples: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample, ensure_ascii=False) + "\n")


# --- dataset artifacts -----------------------------------------------------------------------


def save_samples(
    ws: Workspace,
    name: str,
    samples: list[dict],
    *,
    source: str,
    description: str = "",
    recipe: dict | None = None,
    eval_fraction: float = 0.0,
    seed: int = 0,
) -> str:
    """Save canonical samples (made here, e.g. the self-cognition set) as a dataset artifact."""
    numbered = [{**strip_row(s), "row": i} for i, s in enumerate(samples, start=1)]
    train, held_out = split_samples(numbered, eval_fraction, seed)
    kind = "text" if numbered and "text" in numbered[0] else "chat"
    metrics = {
        "rows": len(numbered),
        "train_rows": len(train),
        "eval_rows": len(held_out),
        "rejected": 0,
        "format": "text" if kind == "text" else "openai",
        "data_kind": kind,
        "steps": [{"step": "generate", "rows": len(numbered)}],
    }
    with ws.create(
        "dataset",
        name,
        recipe=recipe or {},
        source=source,
        metrics=metrics,
        description=description,
    ) as staging:
        _write_samples(train, staging / SPLIT_FILES["train"])
        if held_out:
            _write_samples(held_out, staging / SPLIT_FILES["eval"])
    return name


def dataset_file(ws: Workspace, name: str, split: str = "train") -> Path:
    """The JSONL file of one split of dataset artifact `name`."""
    manifest = ws.get(name)
    if manifest.kind != "dataset":
        raise InvalidInput(
            f"{name!r} is a {manifest.kind} artifact, not a dataset.",
            where=name,
            fix="Pick a dataset: `workbench data list` shows them.",
        )
    if split not in SPLIT_FILES:
        raise InvalidInput(
            f"Unknown split {split!r}.", where=name, fix=f"Use one of: {', '.join(SPLIT_FILES)}."
        )
    path = ws.path_of(name) / SPLIT_FILES[split]
    if not path.is_file():
        raise NotFound(f"Dataset {name!r} has no {split} split.", where=str(path.parent), fix="")
    return path


def read_dataset(ws: Workspace, name: str, split: str = "train") -> list[dict]:
    """The canonical samples of one split of a dataset artifact."""
    with dataset_file(ws, name, split).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def list_datasets(ws: Workspace) -> list[dict]:
    """Dataset artifacts, newest first, with their counts."""
    rows = []
    for manifest in ws.list("dataset"):
        m = manifest.metrics
        rows.append(
            {
                "name": manifest.name,
                "kind": m.get("data_kind", ""),
                "train_rows": m.get("train_rows", 0),
                "eval_rows": m.get("eval_rows", 0),
                "rejected": m.get("rejected", 0),
                "format": m.get("format", ""),
                "source": manifest.source,
                "created": manifest.created,
                "description": manifest.description,
            }
        )
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def bundled_sources() -> dict[str, Path]:
    """The datasets shipped with Workbench, by title."""
    return {title: ROOT / path for title, path in BUNDLED.items() if (ROOT / path).is_file()}


def upload_limit_bytes() -> int:
    """WORKBENCH_MAX_UPLOAD_MB (default 200, 20 in demo mode: limits.py) in bytes."""
    return int(current_limits().max_upload_mb * 1024 * 1024)


def save_upload(ws: Workspace, filename: str, data: bytes) -> Path:
    """Keep an uploaded file under the workspace's uploads/ folder and return its path.

    The name is made safe (no folders, no odd characters); an existing file of the same name is
    never overwritten: a number is added instead.
    """
    limit = upload_limit_bytes()
    if len(data) > limit:
        raise InvalidInput(
            f"The file is {len(data) / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB upload limit.",
            where=filename,
            fix="Import it from a local path instead, or raise WORKBENCH_MAX_UPLOAD_MB.",
        )
    safe = re.sub(r"[^\w.-]+", "_", Path(filename).name).strip("._") or "upload"
    folder = ws.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / safe, 1
    while target.exists():
        if target.read_bytes() == data:
            return target  # the same file uploaded again
        n += 1
        target = folder / f"{Path(safe).stem}-{n}{Path(safe).suffix}"
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target
