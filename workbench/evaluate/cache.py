"""The evaluation cache: one row per (model fingerprint, task version, sample) in SQLite.

A re-run computes only what is new: another model, an edited sample (its key hashes its
content), a changed template or metric (the task version hashes them). Rows are written as each
batch finishes, so a cancelled or crashed run resumes where it stopped.

    <workspace>/eval_cache.db   table results(model_fp, task_version, sample_key, task, result)

`model_fingerprint` names a model by its bytes, not its name: a renamed copy hits the cache, a
retrained artifact with the same name does not.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from workbench.evaluate.tasks import SampleResult
from workbench.workspace import Workspace

CACHE_FILE = "eval_cache.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model_fp TEXT NOT NULL,
    task_version TEXT NOT NULL,
    sample_key TEXT NOT NULL,
    task TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model_fp, task_version, sample_key)
);
"""
HASH_BYTES = 1 << 16  # head and tail of each weight file: enough to tell checkpoints apart


def _connect(ws: Workspace) -> sqlite3.Connection:
    ws.root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(ws.root / CACHE_FILE, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def lookup(
    ws: Workspace, model_fp: str, version: str, keys: Iterable[str]
) -> dict[str, SampleResult]:
    """The cached results among `keys`, by key."""
    wanted = list(keys)
    found: dict[str, SampleResult] = {}
    with closing(_connect(ws)) as conn:
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT sample_key, result FROM results WHERE model_fp = ? AND task_version = ? "
                f"AND sample_key IN ({marks})",
                [model_fp, version, *part],
            )
            for key, text in rows:
                found[key] = SampleResult.from_dict(json.loads(text))
    return found


def store(
    ws: Workspace, model_fp: str, version: str, task: str, results: dict[str, SampleResult]
) -> None:
    """Save results by sample key (in one transaction)."""
    if not results:
        return
    now = time.time()
    rows = [
        (model_fp, version, key, task, json.dumps(r.to_dict(), ensure_ascii=False), now)
        for key, r in results.items()
    ]
    with closing(_connect(ws)) as conn, conn:
        conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)


def count(ws: Workspace, model_fp: str | None = None) -> int:
    """How many results are cached (for one model, or in all)."""
    with closing(_connect(ws)) as conn:
        if model_fp is None:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return conn.execute(
            "SELECT COUNT(*) FROM results WHERE model_fp = ?", (model_fp,)
        ).fetchone()[0]


def _file_digest(path: Path, digest: hashlib._Hash) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(HASH_BYTES))
        if size > 2 * HASH_BYTES:
            handle.seek(-HASH_BYTES, 2)
            digest.update(handle.read(HASH_BYTES))


def folder_fingerprint(folder: Path) -> str:
    """Hash of a model folder: config, tokenizer and the head and tail of every weight file."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "manifest.json" and ".cache" not in path.parts:
            _file_digest(path, digest)
    return digest.hexdigest()[:20]


def model_fingerprint(name: str, ws: Workspace) -> str:
    """A short id of the model's weights (remote models: of their endpoint and model name).

    Raises:
        WorkbenchError: the model does not exist (from models.resolve_model).
    """
    from workbench.evaluate.engines import is_remote
    from workbench.models import adapter_base, resolve_model

    if is_remote(name):
        return "remote-" + hashlib.sha256(name.strip().encode()).hexdigest()[:16]
    ref = resolve_model(name, ws)
    if ref.path is None:
        return "hub-" + hashlib.sha256(ref.name.encode()).hexdigest()[:16]
    own = folder_fingerprint(ref.path)
    if ref.origin == "adapter":
        return "adapter-" + own[:10] + model_fingerprint(adapter_base(ref.manifest), ws)[:10]
    return own
