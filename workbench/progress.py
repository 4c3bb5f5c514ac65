"""Progress sinks: how a long job reports steps, messages and metrics while it runs.

A runner takes a `progress` callable and calls it as often as it likes:

    progress(step=3, total=100, message="training", loss=1.93, lr=2e-4)

The job worker passes an `EventLog`, which appends one JSON line per call to the run folder's
events.jsonl (the UI and `workbench jobs show` read it back, `describe_event` words one for
people); tests and library callers may pass `null_progress`.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol


class Progress(Protocol):
    """Anything a runner can report progress to."""

    def __call__(
        self,
        *,
        step: int | None = None,
        total: int | None = None,
        message: str = "",
        **metrics: float,
    ) -> None: ...


def null_progress(**_: Any) -> None:
    """A progress sink that drops everything."""


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON-safe values: numbers (tensors and numpy scalars become floats), else text.

    NaN and infinities become None so every line stays valid JSON.
    """
    cleaned: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            cleaned[key] = value
            continue
        if not isinstance(value, int):
            try:
                value = float(value)  # torch / numpy scalars
            except (TypeError, ValueError):
                cleaned[key] = str(value)
                continue
        cleaned[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return cleaned


class EventLog:
    """Appends one JSON object per line to an events file, flushed at once.

    Progress lines look like
    `{"time": 1700000000.1, "step": 3, "total": 10, "message": "...", "metrics": {"loss": 1.9}}`;
    the job worker also writes status lines (`{"time": ..., "status": "running"}`) with `event`.
    The file is opened in append mode for every line and each line is written in a single
    `write`, so several processes (the worker, a cancelling CLI) can share it safely.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __call__(
        self,
        *,
        step: int | None = None,
        total: int | None = None,
        message: str = "",
        **metrics: Any,
    ) -> None:
        self.event(
            {
                "step": None if step is None else int(step),
                "total": None if total is None else int(total),
                "message": str(message),
                "metrics": clean_metrics(metrics),
            }
        )

    def event(self, payload: dict[str, Any]) -> None:
        """Append any JSON-serialisable event; a `time` stamp is added when missing."""
        record = {"time": round(time.time(), 3), **payload}
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()


def describe_event(event: dict) -> str:
    """One line for a person: `[step/total] message k=v ... status: S` (CLI `run`, `jobs show`)."""
    parts = []
    if event.get("step") is not None:
        total = event.get("total")
        parts.append(f"[{event['step']}/{total}]" if total else f"[{event['step']}]")
    if event.get("message"):
        parts.append(str(event["message"]))
    metrics = clean_metrics(event.get("metrics") or {})
    parts.extend(f"{k}={_format_value(v)}" for k, v in metrics.items())
    if event.get("status"):
        parts.append(f"status: {event['status']}")
    return " ".join(parts)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
