"""Read a dataset, detect its format, and turn every row into a checked canonical sample.

    loaded = load_data("train.jsonl")          # format detected
    loaded = load_data("train.csv", fmt="alpaca")
    loaded.samples   # canonical samples, each with the "row" it came from
    loaded.errors    # every row that could not be used: row, field, reason

No row is ever dropped silently: a row is either a sample or an error, and
`write_rejects` keeps the errors with the original text beside the dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.files import Record, RowError, SourceFile, read_source
from workbench.data.formats import (
    DEFAULT_MAX_ROW_CHARS,
    FORMATS,
    RowProblem,
    sample_from_row,
)
from workbench.errors import InvalidInput

DETECTION_SAMPLE = 500
CERTAIN = 0.95  # a format that fits this share of the rows checked is taken without doubt


@dataclass
class Detection:
    """Which format the rows look like, and how sure that is.

    Attributes:
        format: the best format, or "" when no format fits any row.
        confidence: share of the checked rows that fit it, lowered when another format fits
            as well (0..1).
        scores: share of checked rows each format fits.
        checked: how many rows were checked (evenly spread through the file).
        reason: one sentence for the user.
    """

    format: str
    confidence: float
    scores: dict[str, float]
    checked: int
    reason: str

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "confidence": round(self.confidence, 3),
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
            "checked": self.checked,
            "reason": self.reason,
        }


@dataclass
class LoadedData:
    """A dataset read and checked: samples, errors and what was learned on the way."""

    source: SourceFile
    detection: Detection
    format: str
    samples: list[dict]
    errors: list[RowError]
    notices: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.samples) + len(self.errors)

    @property
    def kind(self) -> str:
        return FORMATS[self.format].kind

    def summary(self, max_errors: int = 1000) -> dict:
        """The JSON object `workbench data inspect --json` prints (stats added by the caller)."""
        return {
            "source": self.source.path,
            "file_type": self.source.file_type,
            "format": self.format,
            "detected": self.detection.to_dict(),
            "rows": self.rows,
            "valid": len(self.samples),
            "invalid": len(self.errors),
            "row_unit": self.source.unit,
            "errors": [e.to_dict() for e in self.errors[:max_errors]],
            "errors_shown": min(len(self.errors), max_errors),
            "notices": self.source.notices + self.notices,
            "sha256": self.source.sha256,
        }


def detect_format(records: list[Record]) -> Detection:
    """Score every format on up to DETECTION_SAMPLE rows spread evenly through `records`."""
    if not records:
        return Detection("", 0.0, {}, 0, "There are no readable rows to look at.")
    step = max(1, len(records) // DETECTION_SAMPLE)
    checked = [r.data for r in records[::step][:DETECTION_SAMPLE]]
    scores = {
        name: sum(1 for row in checked if fmt.matches(row)) / len(checked)
        for name, fmt in FORMATS.items()
    }
    ranked = sorted(scores, key=lambda n: -scores[n])  # stable: FORMATS order breaks ties
    best, runner_up = ranked[0], ranked[1]
    if scores[best] == 0:
        columns = sorted({k for row in checked for k in row})
        return Detection(
            "", 0.0, scores, len(checked), f"No known format fits; the rows have: {columns}."
        )
    confidence = scores[best] * (1 - 0.5 * scores[runner_up])
    if scores[runner_up] > 0:
        reason = (
            f"{scores[best]:.0%} of {len(checked)} checked rows look like "
            f"{FORMATS[best].title}, {scores[runner_up]:.0%} like {FORMATS[runner_up].title}."
        )
    else:
        reason = (
            f"{scores[best]:.0%} of {len(checked)} checked rows look like {FORMATS[best].title}."
        )
    return Detection(best, confidence, scores, len(checked), reason)


def load_data(
    source: str | Path,
    *,
    fmt: str = "",
    encoding: str = "utf-8",
    file_type: str = "",
    max_row_chars: int = DEFAULT_MAX_ROW_CHARS,
) -> LoadedData:
    """Read `source`, detect (or use `fmt`), and convert every row to a canonical sample.

    Raises:
        NotFound / InvalidInput: the file cannot be read at all (see files.read_source), the
            format is unknown, or no format fits and none was chosen.
    """
    if fmt and fmt not in FORMATS:
        raise InvalidInput(
            f"Unknown dataset format {fmt!r}.",
            where="format",
            fix=f"Use one of: {', '.join(FORMATS)} (or leave it empty to detect it).",
        )
    read = read_source(source, file_type=file_type, encoding=encoding)
    detection = detect_format(read.records)
    chosen = fmt or detection.format
    if not chosen:
        if not read.records:
            raise InvalidInput(
                f"No row of {Path(read.path).name!r} could be read; the first problem: "
                f"row {read.errors[0].row}: {read.errors[0].message}.",
                where=read.path,
                fix="Fix the file (is it the right file, in the right encoding?).",
            )
        raise InvalidInput(
            f"The format of {Path(read.path).name!r} was not recognised. {detection.reason}",
            where=read.path,
            fix="Choose the format (CLI: --format). Expected shapes: "
            + "; ".join(f"{f.title}: {json.dumps(f.example)}" for f in FORMATS.values()),
        )
    notices = []
    if fmt and detection.format and fmt != detection.format:
        notices.append(
            f"You chose {FORMATS[fmt].title}; the rows look more like "
            f"{FORMATS[detection.format].title} ({detection.reason})"
        )
    samples, errors = convert_records(read.records, chosen, max_row_chars)
    errors = sorted(read.errors + errors, key=lambda e: e.row)
    return LoadedData(read, detection, chosen, samples, errors, notices)


def convert_records(
    records: list[Record], fmt: str, max_row_chars: int = DEFAULT_MAX_ROW_CHARS
) -> tuple[list[dict], list[RowError]]:
    """Each record becomes a canonical sample carrying its "row", or a RowError."""
    samples, errors = [], []
    for record in records:
        try:
            sample = sample_from_row(record.data, fmt, max_row_chars)
        except RowProblem as problem:
            raw = json.dumps(record.data, ensure_ascii=False, default=str)
            errors.append(RowError(record.row, problem.field, problem.message, raw))
            continue
        sample["row"] = record.row
        samples.append(sample)
    return samples, errors


def write_rejects(errors: list[RowError], path: Path) -> None:
    """One JSON line per rejected row: row, field, message and the original text."""
    with path.open("w", encoding="utf-8") as out:
        for error in errors:
            out.write(json.dumps({**error.to_dict(), "raw": error.raw}, ensure_ascii=False) + "\n")


def strip_row(sample: dict) -> dict:
    """The sample without its bookkeeping ("row"), as a format writer or trainer wants it."""
    return {k: v for k, v in sample.items() if k != "row"}
