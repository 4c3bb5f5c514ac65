"""What the Evaluate pages need besides reports and charts: choices for the widgets, prompt
previews, the equivalent CLI command, uploaded task files kept in the workspace, and the
verdict on a difference between two models."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput
from workbench.evaluate.custom import TASK_FILE_SUFFIXES
from workbench.evaluate.stats import Estimate
from workbench.evaluate.suites import SUITES, resolve_tasks, task_names
from workbench.evaluate.tasks import KINDS, headline_metric
from workbench.workspace import Workspace

UPLOAD_FOLDER = "eval_tasks"


def model_choices(ws: Workspace) -> list[str]:
    """'default', then the workspace's models and adapters, newest first."""
    names = ["default"] + [m.name for m in ws.list("model") if m.name != "default"]
    return names + [m.name for m in ws.list("adapter")]


def task_choices() -> list[str]:
    """Suites first (they expand to several tasks), then every bundled task."""
    return list(SUITES) + task_names()


def save_upload(ws: Workspace, filename: str, data: bytes) -> Path:
    """Keep an uploaded task file in the workspace (the job reads it later); returns its path."""
    name = Path(filename).name
    if not name.lower().endswith(TASK_FILE_SUFFIXES):
        raise InvalidInput(
            f"{name!r} is not a task file.",
            where=name,
            fix=f"Upload one of: {', '.join(TASK_FILE_SUFFIXES)}.",
        )
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "task.jsonl"
    folder = ws.root / UPLOAD_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    path.write_bytes(data)
    return path


def prompt_previews(specs: list[str], ws: Workspace | None = None) -> list[dict]:
    """For each task the specs name: kind, headline metric and the exact prompt of sample 1."""
    rows = []
    for task in resolve_tasks(specs, ws):
        example = KINDS[task.kind].prompt(task, task.samples[0]) if task.samples else ""
        rows.append(
            {
                "task": task.name,
                "kind": task.kind,
                "metric": headline_metric(task),
                "samples": len(task.samples),
                "prompt": example,
            }
        )
    return rows


def eval_command(recipe: Any) -> str:
    """The `workbench eval` line that runs the same recipe."""
    parts = ["workbench", "eval", "--models", ",".join(recipe.models)]
    parts += ["--tasks", ",".join(recipe.tasks)]
    for flag, value, default in (
        ("--limit", recipe.limit, 0),
        ("--judge", recipe.judge, ""),
        ("--identity-name", recipe.identity_name, ""),
        ("--identity-author", recipe.identity_author, ""),
        ("--name", recipe.name, ""),
        ("--batch-size", recipe.batch_size, 32),
    ):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)


def difference_verdict(estimate: Estimate | None) -> str:
    """ "better", "worse" or "unclear" (the 95% interval of the difference contains 0)."""
    if estimate is None or estimate.n == 0:
        return "unclear"
    if estimate.low > 0:
        return "better"
    if estimate.high < 0:
        return "worse"
    return "unclear"
