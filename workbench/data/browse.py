"""Browsing a loaded dataset: the table of every row, filters, pages, transcripts, token masks.

The Data studio pages draw what this module builds:

    table = browse_table(loaded, row_metrics)      # one row per file row, valid or not
    shown = filter_rows(table, query="paris", validity="valid", max_tokens=512)
    page_of(shown, page=3, size=50)
    transcript(sample)                             # [{"role", "content"}] for chat bubbles
    mask_html(render_sample(tokenizer, sample))    # every token, trained ones highlighted

The table is built once per dataset (the pages cache it); filters are vectorised so a 100k-row
table filters in well under a second. `load_cached` keeps the last few datasets read, keyed by
the file's size and modification time, so that every page and rerun shares one read.
Exports (converted rows, rejects) come back as bytes for a download button, and
`import_command` writes the CLI line that replays what the Prepare page does.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.data.files import RowError, write_rows
from workbench.data.formats import RowProblem, as_text, row_from_sample
from workbench.data.loading import LoadedData, load_data, strip_row
from workbench.data.template import TokenizedSample
from workbench.errors import NotFound, WorkbenchError
from workbench.workspace import Workspace

PREVIEW_CHARS = 120
VALIDITY = ("all", "valid", "invalid")
TABLE_COLUMNS = (
    "row",
    "valid",
    "preview",
    "answer",
    "turns",
    "chars",
    "tokens",
    "language",
    "duplicate",
    "search",
)
METRIC_COLUMNS = ("turns", "tokens", "language", "duplicate")
LOADED_KEPT = 4  # datasets kept in memory by load_cached

# Token colours of the doctor's mask: (even, odd) backgrounds, so token boundaries show.
TRAINED_BACKGROUNDS = ("#b7ebb0", "#d9f5d4")
PROMPT_BACKGROUNDS = ("#e6e6e6", "#f6f6f6")
TRAINED_STYLE = "color:#0b3d0b"
PROMPT_STYLE = "color:#808080"
# Past the cutoff: struck through in red; answer tokens lost that way on a stronger red.
CUT_BACKGROUNDS = {False: "#fde7e7", True: "#f7bcbc"}
CUT_STYLE = "color:#c62828;text-decoration:line-through"
MASK_BOX_STYLE = (
    "white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,SFMono-Regular,"
    "Menlo,Consolas,monospace;font-size:0.85rem;line-height:1.7;padding:0.75rem;"
    "border:1px solid #ddd;border-radius:0.5rem;background:#fff;color:#222"
)
NEWLINE_MARK = '<span style="opacity:0.45;user-select:none">↵</span>'


# --- loading ---------------------------------------------------------------------------------


def load_cached(
    source: str, *, fmt: str = "", encoding: str = "utf-8", max_row_chars: int = 0
) -> LoadedData:
    """`load_data(source, ...)`, read again only when the file changed (size or mtime).

    Raises:
        NotFound / InvalidInput: as `load_data`.
    """
    return _load(str(source).strip(), fmt, encoding, max_row_chars, _stamp(source))


def _stamp(source: str | Path) -> tuple:
    path = Path(str(source).strip()).expanduser()
    try:
        if path.is_dir():
            return tuple(
                (str(p), p.stat().st_mtime_ns, p.stat().st_size)
                for p in sorted(path.rglob("*"))
                if p.is_file()
            )
        stat = path.stat()
    except OSError:
        return ()
    return (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=LOADED_KEPT)
def _load(source: str, fmt: str, encoding: str, max_row_chars: int, stamp: tuple) -> LoadedData:
    options = {"max_row_chars": max_row_chars} if max_row_chars > 0 else {}
    return load_data(source, fmt=fmt, encoding=encoding, **options)


def load_tokenizer(model: str, ws: Workspace, *, prepare: bool = True) -> Any:
    """The Hugging Face tokenizer of `model` (any name `resolve_model` accepts).

    Args:
        prepare: convert the embedded default model first when the workspace does not hold it
            yet (about 40 s, once). The app's pages pass False: they must not block on it.

    Raises:
        NotFound: no such model, or a hub model that is not downloaded.
        WorkbenchError: the default model is not prepared (and `prepare` is False), or the
            tokenizer cannot load.
    """
    from workbench.models import DEFAULT_MODEL, resolve_model

    if not prepare and model.strip() == DEFAULT_MODEL and ws.path_of(DEFAULT_MODEL) is None:
        raise WorkbenchError(
            "The default model is not prepared yet, so its tokenizer is not available.",
            where=f"model {DEFAULT_MODEL!r}",
            fix="Prepare it on the Home page (about a minute on a CPU) or run "
            "`workbench models prepare default`; or pick another model.",
        )
    ref = resolve_model(model, ws)
    if ref.path is None:
        raise NotFound(
            f"The hub model {model!r} is not downloaded.",
            where=model,
            fix=f"Run `workbench models prepare {model}` where the hub is reachable, or pick a "
            "local model.",
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(ref.path))
    except Exception as exc:  # transformers raises many types for a broken tokenizer folder
        raise WorkbenchError(
            f"The tokenizer of {model!r} could not be loaded: {str(exc).splitlines()[0][:300]}",
            where=str(ref.path),
            fix="Check that the folder holds tokenizer files (tokenizer.json or similar).",
        ) from None


# --- the browse table ------------------------------------------------------------------------


def browse_table(loaded: LoadedData, row_metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per file row, valid and invalid, sorted by row number.

    Columns: row, valid, preview (first user message or text; "field: message" for an invalid
    row), answer (last assistant message), turns, chars, tokens, language, duplicate, and
    `search` (the whole lowercase text, for `filter_rows`). `row_metrics` (from stats.compute:
    row, turns, tokens, language, duplicate...) fills tokens and language and replaces the turns
    and duplicate flags computed here; without it tokens are missing (NA).
    """
    records = [_sample_record(sample) for sample in loaded.samples]
    records += [_error_record(error) for error in loaded.errors]
    table = pd.DataFrame.from_records(records, columns=[c for c in TABLE_COLUMNS if c != "tokens"])
    table["tokens"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table["language"] = ""
    table["valid"] = table["valid"].astype(bool)
    # Same text up to case, first copy kept: a quick stand-in until stats' row_metrics (which
    # also normalises spaces and finds near copies) replace it.
    table["duplicate"] = table["valid"] & table["search"].where(table["valid"]).duplicated()
    if row_metrics is not None and len(row_metrics):
        table = _merge_metrics(table, row_metrics)
    table = table.sort_values("row", kind="stable").reset_index(drop=True)
    table["turns"] = table["turns"].astype("Int64")
    table["chars"] = table["chars"].astype("int64")
    table["duplicate"] = table["duplicate"].astype(bool)
    return table[list(TABLE_COLUMNS)]


def _merge_metrics(table: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    usable = [c for c in METRIC_COLUMNS if c in metrics.columns]
    extra = metrics[["row", *usable]].drop_duplicates("row").set_index("row")
    table = table.set_index("row")
    common = table.index.intersection(extra.index)
    for column in usable:
        values = extra.loc[common, column]
        if column == "duplicate":
            values = values.fillna(False).map(bool)
        elif column == "tokens":
            values = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif column == "language":
            values = values.fillna("").astype(str)
        table.loc[common, column] = values
    return table.reset_index()


def _sample_record(sample: dict) -> dict:
    row = sample.get("row", 0)
    if "text" in sample:
        text = sample["text"]
        return {
            "row": row,
            "valid": True,
            "preview": _preview(text),
            "answer": "",
            "turns": 0,
            "chars": len(text),
            "search": text.lower(),
        }
    messages = sample["messages"]
    user, answer, turns, parts = "", None, 0, []
    for message in messages:
        role = message["role"]
        parts.append(message["content"])
        if role == "user":
            turns += 1
            user = user or message["content"]
        elif role == "assistant":
            answer = message
            if message.get("tool_calls"):
                parts.append(json.dumps(message["tool_calls"], ensure_ascii=False))
    text = "\n".join(parts)
    return {
        "row": row,
        "valid": True,
        "preview": _preview(user),
        "answer": _preview(_message_text(answer)) if answer else "",
        "turns": turns,
        "chars": len(text) - len(parts) + 1,
        "search": text.lower(),
    }


def _error_record(error: RowError) -> dict:
    problem = f"{error.field}: {error.message}" if error.field else error.message
    return {
        "row": error.row,
        "valid": False,
        "preview": _preview(problem),
        "answer": "",
        "turns": pd.NA,
        "chars": len(error.raw),
        "search": f"{problem}\n{error.raw}".lower(),
    }


def _message_text(message: dict) -> str:
    if message.get("content") or not message.get("tool_calls"):
        return message.get("content", "")
    return json.dumps(message["tool_calls"], ensure_ascii=False)


def _preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(str(text)[: limit * 2].split())  # the head is enough: 100k rows stay fast
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def with_cutoff(stats: dict, row_metrics: pd.DataFrame, cutoff: int) -> dict:
    """`stats` (from stats.compute) with the token numbers that depend on the cutoff redone.

    Changing the cutoff then costs a comparison, not another pass over the dataset.
    """
    if not stats.get("tokens") or stats["tokens"].get("cutoff") == cutoff:
        return stats
    over = int((row_metrics["tokens"] > cutoff).fillna(False).sum()) if cutoff > 0 else 0
    return {**stats, "tokens": {**stats["tokens"], "cutoff": int(cutoff), "over_cutoff": over}}


def headline_numbers(stats: dict) -> dict[str, str]:
    """The Statistics tab's numbers, formatted: samples, median tokens, over the cutoff, repeats.

    Token numbers are "—" when there was no tokenizer to count with.
    """
    tokens = stats.get("tokens")
    return {
        "samples": f"{stats['rows']:,}",
        "median_tokens": f"{tokens['median']:,.0f}" if tokens else "—",
        "over_cutoff": f"{tokens['over_cutoff']:,}" if tokens else "—",
        "exact_dupes": f"{stats['duplicates']['exact']:,}",
        "near_dupes": f"{stats['duplicates']['near']:,}",
    }


# --- filters and pages -----------------------------------------------------------------------


def filter_rows(
    table: pd.DataFrame,
    *,
    query: str = "",
    validity: str = "all",
    min_tokens: int | None = None,
    max_tokens: int | None = None,
    turns: int | tuple[int, int] | None = None,
    duplicate: bool | None = None,
) -> pd.DataFrame:
    """The rows of `table` that pass every filter given (None / "" / "all" is no filter).

    Args:
        query: words that must all appear in the row's text (case-insensitive); "#12" or "12"
            alone also finds row 12.
        validity: "all", "valid" or "invalid".
        min_tokens, max_tokens: token range (inclusive); rows without a count are left out.
        turns: exact number of user turns, or an inclusive (low, high) range.
        duplicate: True keeps only duplicates, False only first copies and unique rows.
    """
    if validity not in VALIDITY:
        raise ValueError(f"validity must be one of {VALIDITY}, got {validity!r}")
    keep = pd.Series(True, index=table.index)
    if validity != "all":
        keep &= table["valid"] if validity == "valid" else ~table["valid"]
    if min_tokens is not None:
        keep &= (table["tokens"] >= min_tokens).fillna(False).astype(bool)
    if max_tokens is not None:
        keep &= (table["tokens"] <= max_tokens).fillna(False).astype(bool)
    if turns is not None:
        low, high = turns if isinstance(turns, tuple) else (turns, turns)
        keep &= table["turns"].between(low, high).fillna(False).astype(bool)
    if duplicate is not None:
        keep &= table["duplicate"] if duplicate else ~table["duplicate"]
    words = query.lower().split()
    if words:
        found = pd.Series(True, index=table.index)
        for word in words:
            found &= table["search"].str.contains(word, regex=False)
        number = words[0].lstrip("#")
        if len(words) == 1 and number.isdigit():
            found |= table["row"] == int(number)
        keep &= found
    return table.loc[keep]


def page_count(table: pd.DataFrame, size: int) -> int:
    """How many pages of `size` rows `table` fills (at least 1)."""
    return max(1, -(-len(table) // max(1, size)))


def page_of(table: pd.DataFrame, page: int, size: int) -> pd.DataFrame:
    """Rows of page `page` (1-based; clamped to the first and last page) of `size` rows."""
    size = max(1, int(size))
    page = min(max(1, int(page)), page_count(table, size))
    return table.iloc[(page - 1) * size : page * size]


def find_row(loaded: LoadedData, row: int) -> dict | RowError | None:
    """The sample (or the error) of file row `row`, or None."""
    for sample in loaded.samples:
        if sample.get("row") == row:
            return sample
    return next((error for error in loaded.errors if error.row == row), None)


def transcript(sample: dict) -> list[dict]:
    """The sample as chat bubbles: [{"role", "content"}], tool calls shown as JSON code."""
    if "text" in sample:
        return [{"role": "text", "content": sample["text"]}]
    bubbles = []
    for message in sample["messages"]:
        content = message.get("content", "")
        if message.get("tool_calls"):
            calls = json.dumps(message["tool_calls"], ensure_ascii=False, indent=2)
            content = f"{content}\n\n```json\n{calls}\n```".strip()
        bubbles.append({"role": message["role"], "content": content})
    return bubbles


# --- the doctor's token mask -----------------------------------------------------------------


def mask_html(tokenized: TokenizedSample) -> str:
    """The exact prompt text as HTML, one span per token.

    Trained tokens have a green background, prompt tokens are grey; neighbouring tokens
    alternate in shade so boundaries show; tokens after the cutoff are struck through in red
    (on a stronger red where they are answer tokens that training loses).
    Special tokens show as their text, newlines are kept (and marked with a faint ↵), and
    everything is HTML-escaped.
    """
    kept = len(tokenized.input_ids)
    spans = []
    for index, (piece, trained) in enumerate(tokenized.pieces):
        shade = index % 2
        if index >= kept:
            style = f"background:{CUT_BACKGROUNDS[trained]};{CUT_STYLE}"
            state = "cut"
        elif trained:
            style = f"background:{TRAINED_BACKGROUNDS[shade]};{TRAINED_STYLE}"
            state = "trained"
        else:
            style = f"background:{PROMPT_BACKGROUNDS[shade]};{PROMPT_STYLE}"
            state = "prompt"
        text = html.escape(piece).replace("\n", NEWLINE_MARK + "\n")
        title = html.escape(f"#{index} {state}: {piece!r}", quote=True)
        spans.append(f'<span class="tok {state}" title="{title}" style="{style}">{text}</span>')
    return f'<div class="token-mask" style="{MASK_BOX_STYLE}">{"".join(spans)}</div>'


# --- exports ---------------------------------------------------------------------------------


def convert_samples(samples: list[dict], fmt: str) -> tuple[list[dict], list[RowError]]:
    """Each sample written as a row of `fmt`; samples that format cannot hold become errors."""
    rows, failed = [], []
    for sample in samples:
        try:
            rows.append(row_from_sample(strip_row(sample), fmt))
        except RowProblem as problem:
            raw = json.dumps(strip_row(sample), ensure_ascii=False)
            failed.append(RowError(sample.get("row", 0), problem.field, problem.message, raw))
    return rows, failed


def rows_bytes(rows: list[dict], file_type: str) -> bytes:
    """`rows` as the bytes of a jsonl, json, csv or parquet file (see files.write_rows)."""
    with tempfile.TemporaryDirectory() as folder:
        return write_rows(rows, Path(folder) / f"rows.{file_type}", file_type).read_bytes()


def rejects_bytes(errors: list[RowError]) -> bytes:
    """The rejected rows as JSONL: row, field, message and the original text."""
    lines = (
        json.dumps({**error.to_dict(), "raw": as_text(error.raw)}, ensure_ascii=False)
        for error in errors
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


def errors_frame(
    errors: list[RowError], columns: tuple[str, str, str] | None = None
) -> pd.DataFrame:
    """Errors as a table: row, field, message (or the three `columns` names given)."""
    frame = pd.DataFrame([e.to_dict() for e in errors], columns=["row", "field", "message"])
    if columns:
        frame.columns = list(columns)
    return frame


IMPORT_FLAGS = ("format", "encoding", "dedupe", "model", "cutoff", "overlong", "eval_fraction")
IMPORT_FLAGS += ("seed", "description")


def import_command(recipe: Any) -> str:
    """The `workbench data import ...` line that does what an ImportDataRecipe does.

    Flags left at their defaults are omitted; values are shell-quoted.
    """
    parts = ["workbench", "data", "import", recipe.source, "--name", recipe.name]
    defaults = {f.name: f.default for f in dataclasses.fields(recipe)}
    for name in IMPORT_FLAGS:
        value = getattr(recipe, name)
        if value != defaults.get(name):
            parts += ["--" + name.replace("_", "-"), str(value)]
    return shlex.join(parts)
