"""Reading dataset files into numbered records, and writing rows back out.

Every record keeps the number a user sees for it: the line for JSONL, CSV (the line where the
record starts; the header is line 1) and text files, the position (1-based) for JSON arrays,
Parquet files, `datasets` folders and hub datasets. A problem with one record becomes a
`RowError` and the other records are still read; a problem with the whole file (empty, not text,
not parseable at all) raises `InvalidInput`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, NotFound

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
SUFFIX_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
    ".md": "text",
}
FILE_TYPES = ("jsonl", "json", "csv", "parquet", "text", "datasets", "hub")
EXPORT_TYPES = ("jsonl", "json", "csv", "parquet")
HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
NOT_UTF8 = "\x00not-utf8:"  # marks an undecodable JSONL line (JSON text cannot hold NUL)
RAW_KEPT = 2000
HUB_TIMEOUT_S = 5.0  # characters of a bad row kept in the rejects file


@dataclass
class RowError:
    """One bad record: where it is in the file, which field, and why.

    `row` is 1-based and counts what the user sees (a line or a position, see `unit`).
    """

    row: int
    field: str
    message: str
    raw: str = ""

    def to_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class Record:
    row: int
    data: dict


@dataclass
class SourceFile:
    """What a file held: its records, the records that could not be read, and notices.

    Attributes:
        path: the file or folder read (or the hub id).
        file_type: one of FILE_TYPES.
        unit: "line" when row numbers are lines, "row" when they are positions.
        records: the records read, in file order.
        errors: records that could not be read (bad JSON, not UTF-8, not an object...).
        notices: things the user should know that are not errors (a BOM skipped...).
        sha256: hash of the bytes read, recorded in the dataset's manifest.
        size_bytes: size on disk.
        columns: the keys seen in the records, most common first.
    """

    path: str
    file_type: str
    unit: str
    records: list[Record]
    errors: list[RowError] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    sha256: str = ""
    size_bytes: int = 0
    columns: list[str] = field(default_factory=list)


def read_source(
    source: str | Path, *, file_type: str = "", encoding: str = "utf-8", hub_split: str = "train"
) -> SourceFile:
    """Read a JSONL, JSON, CSV, Parquet or text file, a `datasets` folder or a hub dataset.

    Args:
        source: a path, or a hub dataset id ("org/name") where the hub is reachable.
        file_type: force a type from FILE_TYPES; empty picks it from the suffix and content.
        encoding: the text encoding of the file (e.g. "gb18030" for GBK-encoded Chinese).
        hub_split: the split to read from a hub dataset or a `datasets` DatasetDict folder.

    Raises:
        NotFound: no such file, folder or reachable hub dataset.
        InvalidInput: empty file, unknown type, wrong encoding, unparseable JSON or CSV.
    """
    text_source = str(source).strip()
    path = Path(text_source).expanduser()
    if file_type and file_type not in FILE_TYPES:
        raise InvalidInput(
            f"Unknown file type {file_type!r}.",
            where=text_source,
            fix=f"Use one of: {', '.join(FILE_TYPES)}.",
        )
    if file_type == "hub" or (not path.exists() and HUB_DATASET_ID.fullmatch(text_source)):
        return _read_hub(text_source, hub_split)
    if not path.exists():
        raise NotFound(
            f"There is no file or folder {text_source!r}.",
            where=str(path.absolute()),
            fix="Check the path (relative paths start in the folder the app or CLI runs in).",
        )
    if path.is_dir():
        return _read_datasets_folder(path, hub_split)
    data = path.read_bytes()
    kind = file_type or _guess_type(path, data)
    if kind == "parquet":
        return _read_parquet(path, data)
    if kind == "jsonl" and encoding == "utf-8" and data[:2] not in UTF16_BOMS:
        text, notices = _decode_lines(data, path)
    else:
        text, notices = _decode(data, path, encoding)
    if not text.strip():
        raise InvalidInput(
            f"The file {path.name!r} is empty.",
            where=str(path),
            fix="Pick the file that holds your data, or export it again.",
        )
    readers = {"jsonl": _parse_jsonl, "json": _parse_json, "csv": _parse_csv, "text": _parse_text}
    if kind not in readers:
        raise InvalidInput(
            f"Cannot read {path.name!r}: its type is not one Workbench reads.",
            where=str(path),
            fix="Use JSONL, JSON, CSV/TSV, Parquet, a .txt/.md file or a `datasets` folder.",
        )
    result = readers[kind](text, path)
    result.notices[:0] = notices
    result.sha256 = hashlib.sha256(data).hexdigest()
    result.size_bytes = len(data)
    result.columns = _columns(result.records)
    return result


def _guess_type(path: Path, data: bytes) -> str:
    if path.suffix.lower() in SUFFIX_TYPES:
        return SUFFIX_TYPES[path.suffix.lower()]
    if data[:4] == b"PAR1":
        return "parquet"
    head = data[:4096].lstrip(UTF8_BOM).lstrip()
    if head[:1] == b"[":
        return "json"
    if head[:1] == b"{":
        return "jsonl"
    return ""


def _decode(data: bytes, path: Path, encoding: str) -> tuple[str, list[str]]:
    """Decode the whole file; a BOM is skipped with a notice, bad bytes name their line."""
    notices = []
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
        notices.append("The file starts with a UTF-8 byte-order mark (BOM); it was skipped.")
    elif data[:2] in UTF16_BOMS:
        notices.append("The file is UTF-16 text (it starts with a UTF-16 byte-order mark).")
        encoding = "utf-16"
    try:
        return data.decode(encoding), notices
    except LookupError:
        raise InvalidInput(
            f"Unknown text encoding {encoding!r}.",
            where=str(path),
            fix="Use utf-8 (the default), gb18030 for GBK Chinese, or latin-1.",
        ) from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidInput(
            f"The file is not {encoding} text: byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column} cannot be decoded.",
            where=f"{path}, line {line}",
            fix=_encoding_fix(data, encoding),
        ) from None


def _decode_lines(data: bytes, path: Path) -> tuple[str, list[str]]:
    """Decode JSONL line by line, so that one line of bad bytes rejects only that line.

    Lines that are not UTF-8 are replaced by a marker that `_parse_jsonl` reports as a row error.
    When most lines are bad, the whole file is in another encoding: say so instead.
    """
    try:
        return _decode(data, path, "utf-8")
    except InvalidInput as whole_file:
        lines = data.removeprefix(UTF8_BOM).split(b"\n")
        decoded, bad = [], 0
        for line in lines:
            try:
                decoded.append(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                bad += 1
                decoded.append(f"{NOT_UTF8}{exc.start + 1}:0x{line[exc.start]:02x}")
        if bad > max(3, len(lines) // 10):
            raise whole_file from None
        notices = ["The file starts with a UTF-8 byte-order mark (BOM); it was skipped."]
        return "\n".join(decoded), notices if data.startswith(UTF8_BOM) else []


def _encoding_fix(data: bytes, encoding: str) -> str:
    for candidate in ("gb18030", "utf-16"):
        if candidate == encoding:
            continue
        try:
            data.decode(candidate)
        except UnicodeDecodeError:
            continue
        return (
            f"It decodes as {candidate}: choose that encoding (CLI: --encoding {candidate}), "
            "or re-save the file as UTF-8."
        )
    return "Re-save the file as UTF-8, or choose its encoding (CLI: --encoding latin-1)."


def _parse_jsonl(text: str, path: Path) -> SourceFile:
    result = SourceFile(str(path), "jsonl", "line", [])
    blank = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            blank += 1
            continue
        if line.startswith(NOT_UTF8):
            column, byte = line.removeprefix(NOT_UTF8).split(":")
            message = (
                f"is not UTF-8 text (byte {byte} at column {column}); re-save the file as UTF-8"
            )
            result.errors.append(RowError(number, "", message))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            result.errors.append(
                RowError(number, "", f"not valid JSON: {exc.msg} (column {exc.colno})", line)
            )
            continue
        _add_record(result, number, value, line)
    if blank > 1:  # one blank line is the usual final newline
        result.notices.append(f"Blank lines skipped: {blank - 1}.")
    return result


def _parse_json(text: str, path: Path) -> SourceFile:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line, named .json
            result = _parse_jsonl(text, path)
            result.notices.append("The file holds one JSON object per line; it was read as JSONL.")
            return result
        raise InvalidInput(
            f"{path.name!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            where=f"{path}, line {exc.lineno}",
            fix="Fix the JSON there (a missing comma or quote is common), or save one object per "
            "line as .jsonl so that one bad row does not stop the whole file.",
        ) from None
    notices = []
    if isinstance(value, dict):
        lists = [
            k for k, v in value.items() if isinstance(v, list) and v and isinstance(v[0], dict)
        ]
        if len(lists) == 1:
            notices.append(f"The rows were read from the file's {lists[0]!r} list.")
            value = value[lists[0]]
        else:
            value = [value]
    if not isinstance(value, list):
        raise InvalidInput(
            f"{path.name!r} holds a JSON {type(value).__name__}, not a list of rows.",
            where=str(path),
            fix="A JSON dataset is a list of objects: [{...}, {...}].",
        )
    result = SourceFile(str(path), "json", "row", [], notices=notices)
    for number, item in enumerate(value, start=1):
        _add_record(result, number, item, "")
    return result


def _parse_csv(text: str, path: Path) -> SourceFile:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InvalidInput(f"Cannot read the CSV header: {exc}.", where=f"{path}, line 1") from None
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if "" in header or dupes:
        problem = f"repeated column names {dupes}" if dupes else "an empty column name"
        raise InvalidInput(
            f"The CSV header has {problem}.",
            where=f"{path}, line 1",
            fix="Give every column a distinct name in the first line.",
        )
    result = SourceFile(str(path), "csv", "line", [])
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.errors.append(RowError(start, "", f"not valid CSV: {exc}"))
            start = reader.line_num + 1
            continue
        if cells and any(c.strip() for c in cells):
            if len(cells) != len(header):
                result.errors.append(
                    RowError(
                        start,
                        "",
                        f"has {len(cells)} fields, the header has {len(header)} (an unquoted "
                        f"{delimiter!r} inside a value?)",
                        delimiter.join(cells)[:RAW_KEPT],
                    )
                )
            else:
                result.records.append(
                    Record(start, dict(zip(header, map(_cell, cells), strict=True)))
                )
        start = reader.line_num + 1
    return result


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _cell(value: str) -> Any:
    """CSV cells that hold JSON lists or objects (a `conversations` column) are parsed."""
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped, strict=False)  # spreadsheets keep raw newlines
        except json.JSONDecodeError:
            pass
    return value


def _parse_text(text: str, path: Path) -> SourceFile:
    """Plain text for continued pre-training: one record per paragraph (blank-line separated)."""
    result = SourceFile(str(path), "text", "line", [])
    start, lines = 0, []
    for number, line in enumerate(text.split("\n") + [""], start=1):
        if line.strip():
            start = start or number
            lines.append(line)
        elif lines:
            result.records.append(Record(start, {"text": "\n".join(lines)}))
            start, lines = 0, []
    return result


def _read_parquet(path: Path, data: bytes) -> SourceFile:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InvalidInput(
            f"{path.name!r} is not a readable Parquet file: {exc}.",
            where=str(path),
            fix="Export it again, or use JSONL or CSV.",
        ) from None
    result = _from_rows(str(path), "parquet", rows)
    result.sha256 = hashlib.sha256(data).hexdigest()
    result.size_bytes = len(data)
    return result


def _read_datasets_folder(path: Path, split: str) -> SourceFile:
    if not any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        raise InvalidInput(
            f"The folder {path.name!r} is not a saved `datasets` dataset.",
            where=str(path),
            fix="Pick a data file inside it, or a folder written by Dataset.save_to_disk().",
        )
    import datasets

    loaded = datasets.load_from_disk(str(path))
    notices = []
    if isinstance(loaded, datasets.DatasetDict):
        loaded, notices = _pick_split(loaded, split, str(path))
    result = _from_rows(str(path), "datasets", loaded.to_list())
    result.notices[:0] = notices
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if item.is_file():
            digest.update(item.relative_to(path).as_posix().encode())
            digest.update(item.read_bytes())
            result.size_bytes += item.stat().st_size
    result.sha256 = digest.hexdigest()
    return result


def _pick_split(loaded: Any, split: str, where: str) -> tuple[Any, list[str]]:
    if split not in loaded:
        raise InvalidInput(
            f"The dataset has no split {split!r}.",
            where=where,
            fix=f"Choose one of its splits: {', '.join(loaded)}.",
        )
    others = [s for s in loaded if s != split]
    notices = [f"Read the {split!r} split; also there: {', '.join(others)}."] if others else []
    return loaded[split], notices


def _read_hub(hub_id: str, split: str) -> SourceFile:
    import os

    import datasets

    try:
        if not os.environ.get("HF_HUB_OFFLINE"):
            # One short request first: a closed network fails in seconds, not after retries.
            from huggingface_hub import HfApi

            HfApi().dataset_info(hub_id, timeout=HUB_TIMEOUT_S)
        loaded = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # offline, unknown id, gated: all surface as different types
        raise NotFound(
            f"Could not load the hub dataset {hub_id!r}: {str(exc).splitlines()[0][:300]}",
            where=hub_id,
            fix="Check the id and your network (HF_ENDPOINT sets a mirror); or download the "
            "files and import them from disk.",
        ) from None
    result = _from_rows(hub_id, "hub", loaded.to_list())
    result.sha256 = f"hub:{hub_id}:{getattr(loaded, '_fingerprint', '')}"
    return result


def _from_rows(path: str, file_type: str, rows: list) -> SourceFile:
    result = SourceFile(path, file_type, "row", [])
    for number, row in enumerate(rows, start=1):
        _add_record(result, number, row, "")
    if not rows:
        raise InvalidInput(f"{path!r} holds no rows.", where=path, fix="Pick a dataset with data.")
    result.columns = _columns(result.records)
    return result


def _add_record(result: SourceFile, number: int, value: Any, raw: str) -> None:
    if isinstance(value, dict):
        result.records.append(Record(number, value))
    else:
        result.errors.append(
            RowError(
                number,
                "",
                f"expected a JSON object {{...}}, got {_json_type(value)}",
                raw or json.dumps(value, ensure_ascii=False)[:RAW_KEPT],
            )
        )


def _json_type(value: Any) -> str:
    names = {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
    }
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _columns(records: list[Record]) -> list[str]:
    counts: dict[str, int] = {}
    for record in records[:1000]:
        for key in record.data:
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: -counts[k])


# --- writing ---------------------------------------------------------------------------------


def write_rows(rows: list[dict], path: str | Path, file_type: str = "") -> Path:
    """Write rows as JSONL, JSON, CSV (nested values as JSON text) or Parquet; returns the path.

    The type comes from `file_type` or the suffix. The file is written next to its final name and
    renamed into place, so a failure never leaves half a file.
    """
    path = Path(path).expanduser()
    kind = file_type or SUFFIX_TYPES.get(path.suffix.lower(), "")
    if kind not in EXPORT_TYPES:
        raise InvalidInput(
            f"Cannot write {path.name!r}: unknown file type.",
            where=str(path),
            fix=f"End the name with .jsonl, .json, .csv or .parquet (types: {EXPORT_TYPES}).",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if kind == "jsonl":
        with partial.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif kind == "json":
        partial.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif kind == "csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with partial.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row.get(c, "")) for c in columns])
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), partial)
    partial.replace(path)
    return path


def _csv_cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
