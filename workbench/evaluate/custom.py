"""Bring your own task: a JSONL, CSV or YAML file becomes a Task.

JSONL (one object a line) or CSV (a header row), by the fields present:

    question + choices + answer   multiple choice; `answer` is a 0-based index or a letter
                                  (A = the first choice). In CSV, `choices` is a JSON list or
                                  "a | b | c", or the choices are columns A, B, C, D...
    question + answer             generation; numeric match when every answer is a number,
                                  else exact match (a JSON list of answers accepts any of them)
    question + checks             generation scored by instruction checks (see checks.py)
    text                          perplexity

An `id` field names a sample; without one, its line number does. A YAML file sets everything
else and points at the data (or lists `samples` inline):

    name: capitals
    kind: multiple_choice          # optional: inferred from the fields
    data: capitals.jsonl           # relative to the YAML file
    template: "Q: {question}\\nA:"
    fewshot: [{question: "Capital of Italy?", choices: [Rome, Milan], answer: 0}]
    metric: exact                  # generation: numeric | exact | contains | instructions
    language: en

Every problem is reported with the file, the line and the field.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import InvalidInput
from workbench.evaluate.checks import CJK, parse_number
from workbench.evaluate.tasks import LETTERS, Task, check_task

TASK_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".yaml", ".yml")
YAML_FIELDS = [f.name for f in fields(Task) if f.name not in ("samples", "source")] + [
    "data",
    "samples",
]


def looks_like_task_file(name: str) -> bool:
    return name.lower().endswith(TASK_FILE_SUFFIXES) or "/" in name or "\\" in name


def load_task_file(path: str | Path, *, name: str = "") -> Task:
    """Read a task file (JSONL, JSON list, CSV or YAML) and check every sample.

    Raises:
        InvalidInput: the file is missing or unreadable, a row lacks the fields of any task kind,
            an answer is out of range, an unknown YAML field (with a did-you-mean).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidInput(
            f"Task file {str(path)!r} does not exist.",
            where=str(path),
            fix="Check the path, or use a bundled task name (`workbench eval --list`).",
        )
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path)
    rows = _read_rows(path)
    return build_task(rows, name=name or path.stem, source=str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"Cannot read task file {str(path)!r}: {exc}.",
            where=str(path),
            fix="Save it as UTF-8 text.",
        ) from exc


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from a JSONL, JSON-list or CSV file."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        return [(reader.line_num, dict(row)) for row in reader]
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(
                f"{path.name} is not valid JSON: {exc}.", where=str(path), fix="Fix the JSON."
            ) from exc
        return [(i + 1, row) for i, row in enumerate(data)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(
                f"Line {number} of {path.name} is not valid JSON: {exc}.",
                where=f"{path}:{number}",
                fix="Write one JSON object per line.",
            ) from exc
        rows.append((number, row))
    return rows


def _choices_from_row(row: dict, where: str) -> list[str] | None:
    choices = row.get("choices")
    if isinstance(choices, str):
        text = choices.strip()
        if text.startswith("["):
            try:
                choices = json.loads(text)
            except ValueError as exc:
                raise InvalidInput(
                    f"`choices` is not a valid JSON list: {exc}.", where=where,
                    fix='Write e.g. ["Paris", "Lyon"] or Paris | Lyon.',
                ) from exc  # fmt: skip
        else:
            choices = [c.strip() for c in text.split("|")]
    if choices is None:
        lettered = [row[k] for k in LETTERS if k in row and str(row[k]).strip()]
        choices = lettered if len(lettered) >= 2 else None
    if choices is not None and not isinstance(choices, list):
        raise InvalidInput(
            f"`choices` must be a list, got {type(choices).__name__}.", where=where,
            fix='Write e.g. "choices": ["Paris", "Lyon"].',
        )  # fmt: skip
    return [str(c) for c in choices] if choices is not None else None


def _answer_index(answer: Any, choices: list[str], where: str) -> int:
    if isinstance(answer, bool):
        answer = None
    if isinstance(answer, str):
        text = answer.strip()
        if re.fullmatch(r"\d+", text):
            answer = int(text)
        elif re.fullmatch(r"[A-Za-z]", text):
            answer = LETTERS.index(text.upper())
        elif text in choices:
            answer = choices.index(text)
    if not isinstance(answer, int):
        raise InvalidInput(
            f"`answer` is {answer!r}: it is not a choice index or letter.",
            where=f"{where}: field 'answer'",
            fix="Use a 0-based index (0 = first choice) or a letter (A = first choice).",
        )
    if not 0 <= answer < len(choices):
        raise InvalidInput(
            f"`answer` {answer} is out of range: there are {len(choices)} choices "
            f"(0 to {len(choices) - 1}, or A to {LETTERS[len(choices) - 1]}).",
            where=f"{where}: field 'answer'",
            fix="Point `answer` at one of the choices; indexes start at 0.",
        )
    return answer


def _sample(number: int, row: Any, source: str, declared: str = "") -> tuple[str, dict]:
    """(inferred kind, sample) for one row; raises InvalidInput naming the line and field.

    A declared `judge` or `identity` kind takes rows with a question alone (a judge row may add
    a `reference` answer)."""
    where = f"{source}:{number}"
    if not isinstance(row, dict):
        raise InvalidInput(
            f"Line {number} is a {type(row).__name__}, not an object with fields.",
            where=where,
            fix='Write e.g. {"question": "...", "answer": "..."}.',
        )
    sample_id = str(row.get("id") or f"line {number}")
    question = str(row.get("question") or row.get("prompt") or "").strip()
    choices = _choices_from_row(row, where)
    if choices is not None:
        if not question:
            raise _missing("question", number, where, "a multiple-choice row")
        if row.get("answer") in (None, ""):
            raise _missing("answer", number, where, "a multiple-choice row")
        index = _answer_index(row["answer"], choices, where)
        return "multiple_choice", {"id": sample_id, "question": question, "choices": choices, "answer": index}  # fmt: skip
    if declared in ("judge", "identity"):
        if not question:
            raise _missing("question", number, where, f"a {declared} row")
        sample = {"id": sample_id, "question": question}
        if declared == "judge" and row.get("reference") not in (None, ""):
            sample["reference"] = str(row["reference"])
        return declared, sample
    if question and row.get("checks") not in (None, ""):
        checks = row["checks"]
        if isinstance(checks, str):
            try:
                checks = json.loads(checks)
            except ValueError as exc:
                raise InvalidInput(
                    f"`checks` is not valid JSON: {exc}.", where=f"{where}: field 'checks'",
                    fix='Write e.g. [{"type": "lowercase"}].',
                ) from exc  # fmt: skip
        return "instructions", {"id": sample_id, "question": question, "checks": checks}
    if question and row.get("answer") not in (None, ""):
        answer = row["answer"]
        if isinstance(answer, str) and answer.strip().startswith("["):
            with contextlib.suppress(ValueError):
                answer = json.loads(answer)
        return "generation", {"id": sample_id, "question": question, "answer": answer}
    if str(row.get("text") or "").strip():
        return "perplexity", {"id": sample_id, "text": str(row["text"])}
    if question:
        raise _missing("answer", number, where, "a question")
    raise InvalidInput(
        f"Line {number} has none of the fields a task needs (found: {', '.join(row) or 'none'}).",
        where=where,
        fix="Give question + choices + answer (multiple choice), question + answer "
        "(generation), question + checks (instructions) or text (perplexity).",
    )


def _missing(field_name: str, number: int, where: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"Line {number}: {what} has no `{field_name}` field.",
        where=f"{where}: field {field_name!r}",
        fix=f"Add `{field_name}` to every row.",
    )


def build_task(rows: list[tuple[int, dict]], *, name: str, source: str, **settings: Any) -> Task:
    """A checked Task from (line number, row) pairs; the kind is inferred unless given."""
    if not rows:
        raise InvalidInput(
            f"Task file {source!r} has no samples.", where=source, fix="Add at least one row."
        )
    inferred: dict[str, int] = {}
    samples = []
    for number, row in rows:
        kind, sample = _sample(number, row, source, str(settings.get("kind") or ""))
        inferred.setdefault(kind, number)
        samples.append(sample)
    if len(inferred) > 1:
        (first, a), (second, b) = list(inferred.items())[:2]
        raise InvalidInput(
            f"Task file mixes kinds: line {a} is {first}, line {b} is {second}.",
            where=f"{source}:{b}",
            fix="Keep one kind of task per file.",
        )
    found = next(iter(inferred))
    kind = settings.pop("kind", None) or ("generation" if found == "instructions" else found)
    if found == "instructions":
        settings.setdefault("metric", "instructions")
    elif kind == "generation" and not settings.get("metric"):
        numeric = all(
            parse_number(str(a)) is not None
            for s in samples
            for a in (s["answer"] if isinstance(s["answer"], list) else [s["answer"]])
        )
        settings["metric"] = "numeric" if numeric else "exact"
    if "language" not in settings:
        text = "".join(str(s.get("question") or s.get("text", "")) for s in samples[:50])
        settings["language"] = "zh" if len(CJK.findall(text)) > 0.2 * max(len(text), 1) else "en"
    task = Task(name=name, kind=kind, samples=samples, source=source, **settings)
    return check_task(task)


def _load_yaml(path: Path) -> Task:
    try:
        spec = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InvalidInput(
            f"The task file is not valid YAML: {getattr(exc, 'problem', exc)}.",
            where=f"{path}:{mark.line + 1}" if mark else str(path),
            fix="Fix the YAML at that line.",
        ) from exc
    if not isinstance(spec, dict):
        raise InvalidInput(
            "A YAML task file must be a mapping of fields.",
            where=str(path),
            fix="Start with `name:` and `data:` (or `samples:`).",
        )
    for key in spec:
        if key not in YAML_FIELDS:
            close = difflib.get_close_matches(str(key), YAML_FIELDS, n=1)
            raise InvalidInput(
                f"Unknown field {key!r} in task file {path.name}.",
                where=f"{path}: field {key!r}",
                fix=(f"Did you mean {close[0]!r}? " if close else "")
                + f"Known fields: {', '.join(YAML_FIELDS)}.",
            )
    settings = {k: v for k, v in spec.items() if k not in ("data", "samples", "name")}
    if "data" in spec:
        data = (path.parent / str(spec["data"])).resolve()
        if not data.is_file():
            raise InvalidInput(
                f"The data file {spec['data']!r} named in {path.name} does not exist.",
                where=f"{path}: field 'data'",
                fix="Give a path relative to the YAML file.",
            )
        rows = _read_rows(data)
        source = str(data)
    elif isinstance(spec.get("samples"), list):
        rows = list(enumerate(spec["samples"], 1))
        source = str(path)
    else:
        raise InvalidInput(
            f"Task file {path.name} has neither `data` nor `samples`.",
            where=str(path),
            fix="Add `data: file.jsonl` (relative to the YAML file) or a `samples:` list.",
        )
    fewshot = settings.get("fewshot") or []
    if fewshot:
        settings["fewshot"] = [
            _sample(i, row, f"{path} (fewshot)")[1] for i, row in enumerate(fewshot, 1)
        ]
    return build_task(rows, name=str(spec.get("name") or path.stem), source=source, **settings)
