"""Preference pairs for DPO and ORPO: import, check, browse, and build them from arena votes.

    import_prefs(ws, "pairs.jsonl", name="my-prefs")          # any of the shapes below
    prefs_from_arena(ws, name="arena-prefs")                   # the chat arena's votes

A preference dataset is a dataset artifact (`data_kind: preference`) whose samples are

    {"prompt": [{"role": "user", "content": "..."}], "chosen": "...", "rejected": "...", "row": 7}

`prompt` is the conversation so far (an optional system message first, ending with the user's
turn); `chosen` and `rejected` are two assistant answers to it, the better one first.

Shapes read (one pair per row; JSONL, JSON, CSV, Parquet through `files.read_source`):

    {"prompt": "...", "chosen": "...", "rejected": "..."}                 plain strings (TRL)
    {"prompt": [messages], "chosen": [messages], "rejected": [messages]}  conversational (TRL)
    {"chosen": [user, assistant], "rejected": [user, assistant]}          prompt in both (HH)
    {"conversations": [{"from": "human", ...}], "chosen": {"from": "gpt", "value": ...},
     "rejected": {...}}                                                   ShareGPT (LLaMA-Factory)
    {"instruction": "...", "input": "...", "chosen": "...", "rejected": "..."}  Alpaca style

`question` and `query` are read as the prompt too, `system` as a system prompt. A row that is
not a usable pair (a field missing or empty, chosen equal to rejected, a prompt that ends with
the assistant) is kept with its row number, field and reason in rejects.jsonl, as the data
studio does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.data.files import RowError, read_source
from workbench.data.formats import DEFAULT_MAX_ROW_CHARS, RowProblem
from workbench.errors import InvalidInput, NotFound
from workbench.workspace import Workspace, validate_name

PREFERENCE_KIND = "preference"
PREFS_FORMAT = "prefs"
ROOT = Path(__file__).resolve().parents[2]
BUNDLED_PREFS = {
    "Helpful vs unhelpful answers (bundled, 240 pairs)": "assets/data/preferences.jsonl"
}
PROMPT_KEYS = ("prompt", "question", "query", "instruction")
ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}
EXAMPLE = {"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "Figure it out."}


@dataclass
class LoadedPrefs:
    """A preference file read and checked: the usable pairs and every row that was not."""

    source: str
    samples: list[dict]
    errors: list[RowError]
    sha256: str = ""
    notices: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.samples) + len(self.errors)

    def summary(self, max_errors: int = 20) -> dict:
        return {
            "source": self.source,
            "rows": self.rows,
            "valid": len(self.samples),
            "invalid": len(self.errors),
            "errors": [e.to_dict() for e in self.errors[:max_errors]],
            "notices": self.notices,
        }


# --- one row -> one pair ---------------------------------------------------------------------


def _message(item: Any, where: str) -> dict:
    if isinstance(item, str):
        return {"role": "user", "content": item}
    if not isinstance(item, dict):
        raise RowProblem(where, f"must be a message object, got {type(item).__name__}")
    role = item.get("role", item.get("from"))
    content = item.get("content", item.get("value"))
    if role not in ROLE_NAMES:
        raise RowProblem(where, f"has role {role!r}; use user, assistant or system")
    if not isinstance(content, str):
        raise RowProblem(where, "has no text content")
    return {"role": ROLE_NAMES[role], "content": content}


def _messages(value: Any, where: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise RowProblem(where, f"must be text or a list of messages, got {type(value).__name__}")
    return [_message(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _answer(row: dict, key: str) -> tuple[list[dict], str]:
    """(messages before the answer, the answer text) of row[key]."""
    value = row.get(key)
    if value is None:
        raise RowProblem(key, "is missing" if key not in row else "is null")
    if isinstance(value, str):
        return [], value
    if isinstance(value, dict):
        message = _message(value, key)
        if message["role"] != "assistant":
            raise RowProblem(key, f"is a {message['role']} message; it must be the assistant's")
        return [], message["content"]
    messages = _messages(value, key)
    if not messages or messages[-1]["role"] != "assistant":
        raise RowProblem(key, "must end with the assistant's answer")
    return messages[:-1], messages[-1]["content"]


def pair_from_row(row: dict, max_chars: int = DEFAULT_MAX_ROW_CHARS) -> dict:
    """One row of any shape in the module docstring -> a checked canonical pair.

    Raises:
        RowProblem: naming the field (as the user wrote it) and what is wrong with it.
    """
    chosen_before, chosen = _answer(row, "chosen")
    rejected_before, rejected = _answer(row, "rejected")
    key = next((k for k in PROMPT_KEYS if k in row), "")
    if key:
        prompt = _messages(row[key], key)
        extra = row.get("input")
        if key == "instruction" and isinstance(extra, str) and extra.strip():
            prompt[-1] = {**prompt[-1], "content": prompt[-1]["content"] + "\n\n" + extra}
    elif "conversations" in row:
        prompt = _messages(row["conversations"], "conversations")
    elif "messages" in row:
        prompt = _messages(row["messages"], "messages")
    elif chosen_before:
        prompt = chosen_before
        if rejected_before != chosen_before:
            raise RowProblem(
                "rejected", "starts with another conversation than chosen (the prompts differ)"
            )
    else:
        raise RowProblem("prompt", "is missing (also no question, instruction or conversations)")
    for before, name in ((chosen_before, "chosen"), (rejected_before, "rejected")):
        if before and before != prompt:
            raise RowProblem(name, "holds a conversation that does not continue the prompt")
    system = row.get("system")
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    _check_pair(prompt, chosen, rejected, key or "prompt", max_chars)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _check_pair(prompt: list[dict], chosen: str, rejected: str, where: str, max_chars: int) -> None:
    if not prompt:
        raise RowProblem(where, "is an empty conversation")
    for i, message in enumerate(prompt):
        if message["role"] == "system" and i:
            raise RowProblem(where, "has a system message after the conversation started")
        if not message["content"].strip():
            raise RowProblem(where, f"has an empty {message['role']} message")
    if prompt[-1]["role"] != "user":
        raise RowProblem(where, "must end with the user's turn (the answers come after it)")
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise RowProblem(name, "is empty")
    if chosen.strip() == rejected.strip():
        raise RowProblem("rejected", "is the same answer as chosen: the pair teaches nothing")
    size = sum(len(m["content"]) for m in prompt) + len(chosen) + len(rejected)
    if size > max_chars:
        raise RowProblem("", f"is {size:,} characters long, over the {max_chars:,} limit")


def pair_messages(sample: dict, which: str) -> list[dict]:
    """The pair's prompt followed by its `which` ("chosen" or "rejected") answer."""
    return [*sample["prompt"], {"role": "assistant", "content": sample[which]}]


def prompt_text(sample: dict) -> str:
    """The last user turn of a pair (what tables show)."""
    return sample["prompt"][-1]["content"]


# --- files -----------------------------------------------------------------------------------


def load_prefs(
    source: str | Path, *, encoding: str = "utf-8", max_row_chars: int = DEFAULT_MAX_ROW_CHARS
) -> LoadedPrefs:
    """Read a preference file; every row becomes a pair (with its "row") or a RowError.

    Raises:
        NotFound / InvalidInput: the file cannot be read at all, or no row is a pair.
    """
    read = read_source(source, encoding=encoding)
    samples, errors = [], list(read.errors)
    for record in read.records:
        try:
            sample = pair_from_row(record.data, max_row_chars)
        except RowProblem as problem:
            raw = json.dumps(record.data, ensure_ascii=False, default=str)
            errors.append(RowError(record.row, problem.field, problem.message, raw))
            continue
        samples.append({**sample, "row": record.row})
    errors.sort(key=lambda e: e.row)
    if not samples:
        first = (
            f" The first problem: row {errors[0].row}, {errors[0].field}: {errors[0].message}."
            if errors
            else ""
        )
        raise InvalidInput(
            f"No row of {Path(read.path).name!r} is a preference pair.{first}",
            where=read.path,
            fix="Each row needs a prompt and two answers, e.g. " + json.dumps(EXAMPLE),
        )
    return LoadedPrefs(read.path, samples, errors, read.sha256, list(read.notices))


def import_prefs(
    ws: Workspace,
    source: str | Path,
    *,
    name: str,
    eval_fraction: float = 0.1,
    seed: int = 0,
    encoding: str = "utf-8",
    description: str = "",
) -> dict:
    """Read, check, drop exact repeats, split and save a preference dataset artifact.

    Returns the counts stored in its manifest (rows, train_rows, eval_rows, rejected, steps).
    """
    validate_name(name, "dataset name")
    ws.refuse_taken(name)
    _check_fraction(eval_fraction)
    loaded = load_prefs(source, encoding=encoding)
    samples, repeats = _drop_repeats(loaded.samples)
    steps = [
        {"step": "read", "rows": loaded.rows, "format": PREFS_FORMAT},
        {"step": "validate", "kept": len(loaded.samples), "rejected": len(loaded.errors)},
        {"step": "dedupe", "mode": "exact", "dropped": repeats},
    ]
    recipe = {"kind": "import_prefs", "source": str(source), "eval_fraction": eval_fraction}
    return save_pairs(
        ws, name, samples, source=loaded.source, steps=steps, errors=loaded.errors,
        recipe={**recipe, "seed": seed}, eval_fraction=eval_fraction, seed=seed,
        description=description, extra={"source_sha256": loaded.sha256, "rows": loaded.rows},
    )  # fmt: skip


def save_pairs(
    ws: Workspace,
    name: str,
    samples: list[dict],
    *,
    source: str,
    steps: list[dict],
    errors: list[RowError] | None = None,
    recipe: dict | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    description: str = "",
    extra: dict | None = None,
) -> dict:
    """Split `samples` (pairs with a "row") and save them as a preference dataset artifact."""
    from workbench.data.loading import write_rejects
    from workbench.data.prepare import SPLIT_FILES, split_samples

    errors = errors or []
    train, held = split_samples(samples, eval_fraction, seed)
    steps = [*steps, {"step": "split", "train": len(train), "eval": len(held), "seed": seed}]
    metrics = {
        "rows": len(samples) + len(errors),
        "train_rows": len(train),
        "eval_rows": len(held),
        "rejected": len(errors),
        "format": PREFS_FORMAT,
        "data_kind": PREFERENCE_KIND,
        **(extra or {}),
        "steps": steps,
    }
    with ws.create(
        "dataset", name, recipe=recipe or {}, source=source, metrics=metrics,
        description=description,
    ) as staging:  # fmt: skip
        for split, rows in (("train", train), ("eval", held)):
            if rows:
                with (staging / SPLIT_FILES[split]).open("w", encoding="utf-8") as out:
                    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if errors:
            write_rejects(errors, staging / SPLIT_FILES["rejects"])
    return {"artifact": name, **{k: v for k, v in metrics.items() if k != "steps"}, "steps": steps}


def _drop_repeats(samples: list[dict]) -> tuple[list[dict], int]:
    seen, kept = set(), []
    for sample in samples:
        key = json.dumps(
            [sample["prompt"], sample["chosen"], sample["rejected"]], ensure_ascii=False
        )
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept, len(samples) - len(kept)


def _check_fraction(eval_fraction: float) -> None:
    if not 0 <= eval_fraction <= 0.5:
        raise InvalidInput(
            f"The held-out share is {eval_fraction}; it must be between 0 and 0.5.",
            where="eval_fraction",
            fix="Use 0.1 to keep one pair in ten for the before/after preference accuracy.",
        )


def is_preference_dataset(ws: Workspace, name: str) -> bool:
    """Whether dataset artifact `name` holds preference pairs."""
    manifest = ws.get(name)
    return manifest.kind == "dataset" and manifest.metrics.get("data_kind") == PREFERENCE_KIND


def read_pairs(ws: Workspace, name: str, split: str = "train") -> list[dict]:
    """The pairs of one split of a preference dataset (InvalidInput for another dataset)."""
    from workbench.data.prepare import read_dataset

    if not is_preference_dataset(ws, name):
        raise InvalidInput(
            f"Dataset {name!r} holds no preference pairs (chosen/rejected answers).",
            where=f"dataset {name}",
            fix="Import pairs (`workbench data prefs-import FILE --name NAME`), build them from "
            "the arena (`workbench data prefs-from-arena --out NAME`), or use sft for this data.",
        )
    try:
        return read_dataset(ws, name, split)
    except NotFound:
        return []


def bundled_prefs() -> dict[str, Path]:
    """The preference sets shipped with Workbench, by title."""
    return {title: ROOT / path for title, path in BUNDLED_PREFS.items() if (ROOT / path).is_file()}


# --- arena votes -----------------------------------------------------------------------------


def pairs_from_votes(votes: list[dict]) -> tuple[list[dict], dict]:
    """Arena votes -> preference pairs, and counts of what was used and what was left out.

    A win gives one pair per losing model (the winner's answer chosen); ties and skips give
    none (counted); so do answers that are empty or equal to the winner's (counted as unusable).
    """
    counts = {"votes": len(votes), "wins": 0, "ties": 0, "skips": 0, "pairs": 0, "unusable": 0}
    pairs = []
    for vote in votes:
        outcome = vote.get("outcome")
        if outcome == "tie":
            counts["ties"] += 1
            continue
        if outcome != "win":
            counts["skips"] += 1
            continue
        counts["wins"] += 1
        models, answers = list(vote.get("models") or []), list(vote.get("answers") or [])
        winner = vote.get("winner")
        prompt = str(vote.get("prompt") or "")
        if winner not in models or len(answers) != len(models) or not prompt.strip():
            counts["unusable"] += 1
            continue
        best = str(answers[models.index(winner)])
        messages = [{"role": "user", "content": prompt}]
        if str(vote.get("system") or "").strip():
            messages.insert(0, {"role": "system", "content": vote["system"]})
        for model, answer in zip(models, answers, strict=True):
            if model == winner:
                continue
            answer = str(answer)
            if not best.strip() or not answer.strip() or answer.strip() == best.strip():
                counts["unusable"] += 1
                continue
            pairs.append({
                "prompt": messages, "chosen": best, "rejected": answer,
                "models": {"chosen": winner, "rejected": model}, "vote": vote.get("id", ""),
                "row": len(pairs) + 1,
            })  # fmt: skip
    counts["pairs"] = len(pairs)
    return pairs, counts


def prefs_from_arena(
    ws: Workspace, *, name: str, eval_fraction: float = 0.1, seed: int = 0, description: str = ""
) -> dict:
    """Save the arena's votes as a preference dataset artifact; returns its counts.

    Raises:
        InvalidInput: no votes yet, or no vote that names a winner with two different answers.
    """
    from workbench.chat_store import read_votes

    validate_name(name, "dataset name")
    ws.refuse_taken(name)
    _check_fraction(eval_fraction)
    votes = read_votes(ws)
    pairs, counts = pairs_from_votes(votes)
    if not pairs:
        what = (
            "There are no arena votes yet."
            if not votes
            else f"None of the {len(votes)} arena votes gives a pair ({counts['ties']} ties, "
            f"{counts['skips']} skipped, {counts['unusable']} without two different answers)."
        )
        raise InvalidInput(
            what,
            where=str(ws.root / "arena" / "votes.jsonl"),
            fix="Open Chat → Arena, let two models answer, and vote for the better answer "
            "(ties and skips make no pairs).",
        )
    steps = [{"step": "arena", **counts}]
    result = save_pairs(
        ws, name, pairs, source="arena votes", steps=steps,
        recipe={"kind": "prefs_from_arena", "eval_fraction": eval_fraction, "seed": seed},
        eval_fraction=eval_fraction, seed=seed,
        description=description or f"{counts['pairs']} pairs from {counts['votes']} arena votes",
        extra={"arena": counts},
    )  # fmt: skip
    return {**result, "arena": counts}


# --- browsing --------------------------------------------------------------------------------


def pairs_table(samples: list[dict], width: int = 80) -> list[dict]:
    """One row per pair for a table: row, prompt, chosen and rejected (shortened), lengths."""

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    return [
        {
            "row": s.get("row"),
            "prompt": short(prompt_text(s)),
            "chosen": short(s["chosen"]),
            "rejected": short(s["rejected"]),
            "chosen_chars": len(s["chosen"]),
            "rejected_chars": len(s["rejected"]),
        }
        for s in samples
    ]
