"""Reading eval artifacts back: leaderboards, per-sample differences, paired comparisons, exports.

Pure functions from an eval artifact's results.json and samples.jsonl to pandas DataFrames and
text (CSV, Markdown, JSON), so the page, the CLI and tests share them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.errors import InvalidInput
from workbench.evaluate.runner import RESULTS_FILE, SAMPLES_FILE
from workbench.evaluate.stats import Estimate, paired_difference
from workbench.workspace import Manifest, Workspace

METRIC_COLUMNS = ["model", "task", "metric", "value", "low", "high", "n", "samples"]


@dataclass
class EvalReport:
    """One eval artifact: its results document and its per-sample lines."""

    name: str
    document: dict
    samples: list[dict]

    @property
    def metrics(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.document.get("metrics", []))
        return frame if not frame.empty else pd.DataFrame(columns=[*METRIC_COLUMNS, "headline"])

    @property
    def headline(self) -> pd.DataFrame:
        frame = self.metrics
        return frame[frame["headline"].astype(bool)] if not frame.empty else frame

    @property
    def models(self) -> list[str]:
        return list(self.document.get("models", []))

    def task(self, name: str) -> dict:
        return next((t for t in self.document.get("tasks", []) if t["name"] == name), {})


def list_evals(ws: Workspace) -> list[Manifest]:
    """Eval artifacts, newest first."""
    return ws.list("eval")


def load_report(ws: Workspace, name: str) -> EvalReport:
    """Read eval artifact `name`. Raises NotFound / InvalidInput naming the file."""
    manifest = ws.get(name)
    if manifest.kind != "eval":
        raise InvalidInput(
            f"{name!r} is a {manifest.kind} artifact, not an eval result.",
            where=f"artifact {name}",
            fix="Pick an eval artifact (`workbench eval` makes them).",
        )
    folder = ws.path_of(name)
    return read_report(folder, name)


def read_report(folder: Path, name: str = "") -> EvalReport:
    try:
        document = json.loads((folder / RESULTS_FILE).read_text("utf-8"))
        lines = (folder / SAMPLES_FILE).read_text("utf-8").splitlines()
        samples = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"The eval result in {str(folder)!r} cannot be read: {exc}.",
            where=str(folder),
            fix="Run the evaluation again; the cache makes it quick.",
        ) from exc
    return EvalReport(name or folder.name, document, samples)


def leaderboard(report: EvalReport) -> pd.DataFrame:
    """Models as rows, tasks as columns, each cell the task's headline metric."""
    frame = report.headline
    if frame.empty:
        return pd.DataFrame()
    table = frame.pivot_table(index="model", columns="task", values="value", aggfunc="first")
    order = [m for m in report.models if m in table.index]
    tasks = [t["name"] for t in report.document.get("tasks", []) if t["name"] in table.columns]
    return table.reindex(index=order, columns=tasks)


def metrics_table(report: EvalReport) -> pd.DataFrame:
    """Every metric with its 95% interval, as a readable table."""
    frame = report.metrics
    if frame.empty:
        return frame
    out = frame[METRIC_COLUMNS].copy()
    out["95% CI"] = [
        f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(frame["low"], frame["high"], strict=True)
    ]
    return out.drop(columns=["low", "high"])


def sample_frame(report: EvalReport, task: str) -> pd.DataFrame:
    """One row per sample of `task`: question, right answer, and each model's output and score."""
    task_info = report.task(task)
    metric = task_info.get("metric", "")
    rows: dict[str, dict] = {}
    for line in report.samples:
        if line["task"] != task:
            continue
        row = rows.setdefault(
            line["id"],
            {
                "id": line["id"],
                "question": line.get("question", ""),
                "target": line.get("target", ""),
            },
        )
        row[f"{line['model']} · output"] = line.get("output", "")
        row[f"{line['model']} · score"] = line.get("scores", {}).get(metric)
    return pd.DataFrame(list(rows.values()))


def disagreements(report: EvalReport, task: str, models: list[str] | None = None) -> pd.DataFrame:
    """The samples of `task` where the chosen models' scores differ (both outputs shown)."""
    frame = sample_frame(report, task)
    models = models or report.models
    columns = [f"{m} · score" for m in models if f"{m} · score" in frame.columns]
    if frame.empty or len(columns) < 2:
        return frame.iloc[0:0]
    differ = frame[columns].nunique(axis=1, dropna=False) > 1
    keep = ["id", "question", "target"] + [
        c for m in models for c in (f"{m} · output", f"{m} · score") if c in frame
    ]
    return frame.loc[differ, keep].reset_index(drop=True)


def paired(report: EvalReport, task: str, a: str, b: str, seed: int = 0) -> Estimate | None:
    """Mean score of `a` minus `b` on the samples both scored, with a paired bootstrap interval."""
    frame = sample_frame(report, task)
    left, right = f"{a} · score", f"{b} · score"
    if frame.empty or left not in frame or right not in frame:
        return None
    both = frame[[left, right]].dropna()
    if both.empty:
        return None
    return paired_difference(both[left].tolist(), both[right].tolist(), seed=seed)


def compare_runs(old: EvalReport, new: EvalReport) -> pd.DataFrame:
    """Headline metrics of two runs side by side, for the (model, task) pairs both have."""
    keys = ["model", "task", "metric"]
    a, b = old.headline, new.headline
    if a.empty or b.empty:
        return pd.DataFrame(columns=[*keys, old.name, new.name, "change"])
    merged = a[[*keys, "value"]].merge(b[[*keys, "value"]], on=keys, suffixes=("_old", "_new"))
    merged = merged.rename(columns={"value_old": old.name, "value_new": new.name})
    merged["change"] = merged[new.name] - merged[old.name]
    return merged


def to_csv(report: EvalReport) -> str:
    return report.metrics.to_csv(index=False)


def to_json(report: EvalReport) -> str:
    return json.dumps(report.document, indent=2, ensure_ascii=False, default=str)


def to_markdown(report: EvalReport) -> str:
    """A Markdown table: one row per model, one column per task, value and 95% interval."""
    frame = report.headline
    tasks = [t["name"] for t in report.document.get("tasks", []) if t["name"] in set(frame["task"])]
    lines = [
        f"# {report.name}",
        "",
        "| model | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for model in report.models:
        cells = []
        for task in tasks:
            hit = frame[(frame["model"] == model) & (frame["task"] == task)]
            if hit.empty:
                cells.append("–")
                continue
            row = hit.iloc[0]
            cells.append(f"{row['value']:.3f} [{row['low']:.3f}, {row['high']:.3f}]")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    metric_names = {t["name"]: t["metric"] for t in report.document.get("tasks", [])}
    lines += ["", "Metrics: " + ", ".join(f"{t}: {metric_names.get(t, '')}" for t in tasks)]
    lines.append("Brackets: 95% bootstrap confidence intervals.")
    return "\n".join(lines) + "\n"
