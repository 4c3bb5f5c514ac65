"""What the fine-tuning pages draw, built without any UI: training curves, run summaries, probe
answers side by side, recipe differences, the equivalent CLI line and the memory chart.

Mostly pure functions from job events, probe rows, recipe dicts and the "will it fit?" report to
pandas DataFrames, plotly Figures and plain values, so they are tested like any other code and
the pages only hand the results to Streamlit; the few that look at the workspace (names taken by
artifacts or queued jobs) say so. Functions that show words take `labels` (keys as in LABELS;
missing keys stay English).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from workbench.cli_train import FLAG_FIELDS, TRAIN_FLAGS
from workbench.errors import Conflict
from workbench.finetune.presets import PRESETS
from workbench.jobs import ACTIVE_STATUSES, job_recipe, list_jobs
from workbench.recipes import (
    DEVICES,
    DTYPES,
    SCHEDULERS,
    TRAIN_METHODS,
    TRAIN_OBJECTIVES,
    TRAIN_ON_CHOICES,
    TrainRecipe,
    recipe_to_dict,
)
from workbench.workspace import Workspace

STEP_COLUMNS = (
    "step",
    "loss",
    "eval_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "memory_mb",
    "epoch",
    "eta_s",
    *("reward_chosen", "reward_rejected", "reward_margin", "reward_acc"),  # DPO/ORPO steps
    *("pref_acc", "pref_margin"),  # DPO/ORPO: held-out preference accuracy, now and then
)
PREFERENCE_CHARTS = {  # DPO/ORPO runs: chart -> the metrics drawn together in it
    "pref_rewards": ("reward_chosen", "reward_rejected"),
    "pref_margin": ("reward_margin",),
    "pref_accuracy": ("reward_acc", "pref_acc"),
}
LIVE_METRICS = ("lr", "grad_norm", "tokens_per_s", "memory_mb")  # the small charts under the loss
SPARSE_METRICS = ("eval_loss", "pref_acc")  # measured now and then: drawn point to point
LABELS = {
    "step": "step",
    "loss": "loss",
    "eval_loss": "eval loss",
    "lr": "learning rate",
    "grad_norm": "gradient norm",
    "tokens_per_s": "tokens/s",
    "memory_mb": "memory (MB)",
    "epoch": "epoch",
    "eta_s": "time left (s)",
    "prompt": "prompt",
    "base": "base model",
    "step_n": "step {step}",
    "field": "field",
    "needed": "needed",
    "available": "free",
    "gb": "GB",
    "weights": "weights",
    "trainable_weights": "trainable weights",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
    "logits": "logits",
    "transient": "transient",
    "overhead": "runtime overhead",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARGIN = {"l": 50, "r": 20, "t": 40, "b": 40}
FIELD_FLAGS = {FLAG_FIELDS.get(flag, flag): flag for flag in TRAIN_FLAGS}
BOOL_FLAGS = ("dora", "rslora", "gradient_checkpointing")  # store_true flags: they only turn on
TRAIN_CHOICES = {  # recipe fields with a fixed set of values -> the values
    "method": TRAIN_METHODS,
    "objective": TRAIN_OBJECTIVES,
    "train_on": TRAIN_ON_CHOICES,
    "scheduler": SCHEDULERS,
    "device": DEVICES,
    "dtype": DTYPES,
}
FIT_FREE = ("out", "description", "probe_prompts", "probe_every", "eval_every", "save_every")
OUTPUT_KINDS = ("train", "merge")  # jobs whose recipe names an artifact they will create


def _words(labels: dict[str, str] | None) -> dict[str, str]:
    return {**LABELS, **(labels or {})}


def _number(value: Any) -> float | None:
    """A float from an event value; None for text, booleans and missing values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _flat(event: dict) -> dict:
    """An event's fields with its metrics lifted to the top (events.jsonl nests them)."""
    values = {k: v for k, v in event.items() if k != "metrics"}
    values.update(event.get("metrics") or {})
    return values


# --- training curves -------------------------------------------------------------------------


def train_events_frame(events: Iterable[dict]) -> pd.DataFrame:
    """One row per optimizer step from a training job's events, eval losses merged by step.

    Takes events as events.jsonl holds them (metrics nested) or as flat progress dicts. A step
    event is one with a `loss`; an eval event adds `eval_loss` to its step's row. A step seen
    twice (a resumed run repeating steps after its last checkpoint) keeps its latest values, so
    the frame is the curve the finished model actually followed. Metrics reported as null (NaN or
    infinity in training) stay NaN.

    Returns:
        DataFrame with STEP_COLUMNS, sorted by step.
    """
    rows: dict[int, dict] = {}
    for event in events:
        values = _flat(event)
        step = _number(values.get("step"))
        if step is None:
            continue
        step = int(step)
        if "loss" in values:
            row = {name: _number(values.get(name)) for name in STEP_COLUMNS}
            rows[step] = {**row, "step": step, "eval_loss": None, "pref_acc": None}
        else:  # measured now and then: merged into the step's row
            blank = {name: None for name in STEP_COLUMNS}
            for name in set(SPARSE_METRICS + ("pref_margin",)) & set(values):
                rows.setdefault(step, {**blank, "step": step})[name] = _number(values[name])
    frame = pd.DataFrame([rows[s] for s in sorted(rows)], columns=list(STEP_COLUMNS))
    numeric = frame.drop(columns="step").astype(float)
    return pd.concat([frame["step"].astype(int), numeric], axis=1)


def curves_figure(
    frames: dict[str, pd.DataFrame],
    metric: str | Sequence[str],
    labels: dict[str, str] | None = None,
) -> go.Figure:
    """Lines of one or more metrics against the step, for one run or several runs overlaid.

    Args:
        frames: run label -> `train_events_frame` of that run.
        metric: a column name ("loss") or several ("loss", "eval_loss") drawn together.
        labels: words for metric names and the axis (see LABELS).

    Returns:
        A Figure with one trace per run and metric that has values (no traces when none has).
        With one run the traces are named after the metric, otherwise after the run; the y axis
        is named after the first metric.
    """
    words = _words(labels)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    fig = go.Figure()
    for run_index, (run, frame) in enumerate(frames.items()):
        for metric_index, name in enumerate(metrics):
            if name not in frame or not frame[name].notna().any():
                continue
            series = frame[frame[name].notna()] if name in SPARSE_METRICS else frame
            if len(frames) == 1:
                trace_name = words.get(name, name)
            else:
                trace_name = run if len(metrics) == 1 else f"{run} · {words.get(name, name)}"
            color = PALETTE[(run_index if len(frames) > 1 else metric_index) % len(PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=series["step"],
                    y=series[name],
                    name=trace_name,
                    mode="lines+markers" if len(series) <= 30 else "lines",
                    line={"color": color, "dash": "dot" if name in SPARSE_METRICS else "solid"},
                    connectgaps=False,
                )
            )
    last_step = max((frame["step"].max() for frame in frames.values() if len(frame)), default=0)
    legend = len(fig.data) > 1  # above the plot, one line per trace where space is short
    fig.update_layout(
        height=300 + (20 * len(fig.data) if legend else 0),
        margin={**MARGIN, "t": 30 + 20 * len(fig.data) if legend else MARGIN["t"]},
        xaxis={"title": words["step"], "dtick": 1 if last_step <= 12 else None},  # whole steps
        yaxis_title=words.get(metrics[0], metrics[0]),
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


# --- one run at a glance ---------------------------------------------------------------------


def run_summary(job: Any, events: Sequence[dict]) -> dict:
    """What the run page says about a training job in numbers.

    Returns:
        {"status", "step", "total", "fraction" (0..1 or None), "eta_s" (only while running),
        "last_loss", "best_eval_loss", "best_eval_step", "tokens_per_s" (median over steps),
        "peak_memory_mb", "message" (the latest one), "error" (for failed jobs)}; numbers that
        the events do not have yet are None.
    """
    frame = train_events_frame(events)
    total = step = None
    message = ""
    for event in events:
        if "status" in event:
            continue
        total = event.get("total") if event.get("total") is not None else total
        step = event.get("step") if event.get("step") is not None else step
        message = event.get("message") or message
    if len(frame):
        step = int(frame["step"].iloc[-1])
    losses = frame["loss"].dropna()
    evals = frame.dropna(subset=["eval_loss"])
    best = evals.loc[evals["eval_loss"].idxmin()] if len(evals) else None
    eta = frame["eta_s"].dropna()
    running = getattr(job, "status", "") == "running"
    return {
        "status": getattr(job, "status", ""),
        "step": step,
        "total": total,
        "fraction": min(1.0, max(0.0, step / total)) if step is not None and total else None,
        "eta_s": float(eta.iloc[-1]) if running and len(eta) else None,
        "last_loss": float(losses.iloc[-1]) if len(losses) else None,
        "best_eval_loss": None if best is None else float(best["eval_loss"]),
        "best_eval_step": None if best is None else int(best["step"]),
        "tokens_per_s": _median(frame["tokens_per_s"]),
        "peak_memory_mb": _max(frame["memory_mb"]),
        "message": message,
        "error": getattr(job, "error", "") or "",
    }


def _median(series: pd.Series) -> float | None:
    values = series.dropna()
    return float(values.median()) if len(values) else None


def _max(series: pd.Series) -> float | None:
    values = series.dropna()
    return float(values.max()) if len(values) else None


def summary_cells(summary: dict) -> dict[str, str]:
    """The numbers of `run_summary` as short text: step, last_loss, best_eval, speed, memory."""

    def show(value: float | None, pattern: str = "{:.4g}") -> str:
        return "—" if value is None else pattern.format(value)

    return {
        "step": f"{show(summary['step'], '{}')} / {show(summary['total'], '{}')}",
        "last_loss": show(summary["last_loss"]),
        "best_eval": show(summary["best_eval_loss"]),
        "speed": show(summary["tokens_per_s"], "{:.0f}"),
        "memory": show(summary["peak_memory_mb"], "{:.0f} MB"),
    }


def format_seconds(seconds: float | None) -> str:
    """A duration as '1h 02m', '3m 05s' or '12s'; '' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


# --- probes ----------------------------------------------------------------------------------


def probe_table(probes: Iterable[dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per probe prompt: the prompt, the base model's answer, then the answer at each
    probe step (oldest first). A prompt answered twice at one step keeps the later answer.

    Args:
        probes: rows from `trainer.read_probes`: {step, base, prompt, answer}.
        labels: words for the "prompt", "base" and "step_n" ("step {step}") columns.
    """
    words = _words(labels)
    answers: dict[str, dict] = {}
    steps: set[int] = set()
    for row in probes:
        prompt = str(row.get("prompt", ""))
        cell = "base" if row.get("base") else int(row.get("step") or 0)
        if cell != "base":
            steps.add(cell)
        answers.setdefault(prompt, {})[cell] = str(row.get("answer", ""))
    step_columns = {s: words["step_n"].format(step=s) for s in sorted(steps)}
    columns = [words["prompt"], words["base"], *step_columns.values()]
    rows = [
        [prompt, got.get("base", ""), *(got.get(s, "") for s in step_columns)]
        for prompt, got in answers.items()
    ]
    return pd.DataFrame(rows, columns=columns)


# --- recipes ---------------------------------------------------------------------------------


def recipe_diff(a: dict, b: dict) -> list[dict]:
    """The fields in which two recipe dicts differ: [{"field", "a", "b"}], in field order.

    A field only one of them has counts as None in the other.
    """
    names = list(a) + [name for name in b if name not in a]
    return [
        {"field": name, "a": a.get(name), "b": b.get(name)}
        for name in names
        if a.get(name) != b.get(name)
    ]


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)
    return "" if value is None else str(value)


def recipes_frame(recipes: dict[str, dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The fields that differ among several runs' recipes: one row per field, one column per
    run (values as text, so a table can show numbers, names and lists alike)."""
    words = _words(labels)
    items = list(recipes.items())
    names: list[str] = []
    for _, other in items[1:]:
        for row in recipe_diff(items[0][1], other):
            if row["field"] not in names:
                names.append(row["field"])
    rows = [[name, *(_cell(recipe.get(name)) for _, recipe in items)] for name in names]
    return pd.DataFrame(rows, columns=[words["field"], *(label for label, _ in items)])


def _flag_baseline(preset: str) -> dict:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainRecipe)}
    return {**defaults, **PRESETS.get(preset, {})}


def _flags(values: dict, baseline: dict) -> list[str] | None:
    """Flags that turn `baseline` into `values`; None when a flag cannot say it (a store_true
    flag cannot turn a preset's True off)."""
    parts: list[str] = []
    for name, flag in FIELD_FLAGS.items():
        if name in ("data", "out") or values.get(name) == baseline.get(name):
            continue
        option = "--" + flag.replace("_", "-")
        if name in BOOL_FLAGS:
            if not values[name]:
                return None
            parts.append(option)
        else:
            parts += [option, str(values[name])]
    if values["packing"] != baseline["packing"]:
        if values["packing"]:
            return None
        parts.append("--no-packing")
    if values["probe_prompts"] != baseline["probe_prompts"]:
        for prompt in values["probe_prompts"]:
            parts += ["--probe", prompt]
    return parts


def train_command(recipe: TrainRecipe) -> str:
    """The `workbench train ...` line that queues the same training job.

    Starts from the recipe's preset (`--preset`) when it has one and flags can say every
    difference from it, else from the plain defaults; fields left as they are get no flag.
    Fields that have no flag (e.g. weight_decay) and differ are named in a trailing shell comment:
    `workbench run` on the recipe YAML replays those too.
    """
    values = recipe_to_dict(recipe)
    head = ["workbench", "train", "--data", recipe.data, "--out", recipe.out]
    baseline = _flag_baseline(recipe.preset)
    parts = _flags(values, baseline) if recipe.preset in PRESETS else None
    if parts is None:
        baseline = _flag_baseline("")
        parts = _flags(values, baseline) or []
    else:
        head += ["--preset", recipe.preset]
    flagless = [
        name
        for name in values
        if name not in FIELD_FLAGS
        and name not in ("kind", "packing", "probe_prompts", "preset")
        and values[name] != baseline.get(name)
    ]
    line = shlex.join(head + parts)
    if flagless:
        line += "  # also set in the recipe YAML: " + ", ".join(
            f"{name}={values[name]!r}" for name in flagless
        )
    return line


def train_defaults() -> dict:
    """Every TrainRecipe field that has a default, with that default (lists freshly made)."""
    values = {}
    for f in dataclasses.fields(TrainRecipe):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


# --- output names ----------------------------------------------------------------------------


def outputs_in_queue(ws: Workspace) -> dict[str, str]:
    """Artifact names that queued or running jobs will create -> the job's id (reads the queue)."""
    jobs = list_jobs(ws, status=ACTIVE_STATUSES, limit=None)
    return {job_recipe(job).out: job.id for job in jobs if job.kind in OUTPUT_KINDS}


def refuse_output(ws: Workspace, name: str, queued: dict[str, str]) -> None:
    """Raise Conflict when `name` is an artifact already, or a queued job's output.

    Args:
        queued: what `outputs_in_queue` returned.
    """
    ws.refuse_taken(name)
    if name in queued:
        raise Conflict(
            f"Job {queued[name]} is already making an artifact named {name!r}.",
            where="output name",
            fix="Choose another name, or cancel that job first.",
        )


def free_output_name(ws: Workspace, stem: str, queued: dict[str, str]) -> str:
    """A valid artifact name from `stem` that neither an artifact nor a queued job has."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:70] or "run"
    name, n = stem, 1
    while ws.exists(name) or name in queued:
        n += 1
        name = f"{stem}-{n}"
    return name


# --- will it fit? ----------------------------------------------------------------------------


def fit_key(recipe: TrainRecipe) -> dict:
    """The recipe as a dict with the fields that do not change `check_fit` (name, probes,
    checkpoints...) at fixed values: a cache keyed on it is not missed when only those change."""
    defaults = train_defaults()
    return {
        **recipe_to_dict(recipe),
        **{name: defaults.get(name) for name in FIT_FREE},
        "out": "fit",
    }


def fit_facts(report: dict) -> dict:
    """The numbers a sentence about a `check_fit` report needs: need and free (GB), cuda (bool),
    duration (text), steps, tps (tokens/s), tokens."""
    memory, timing = report["memory"], report["time"]
    return {
        "need": memory["total_gb"],
        "free": memory["available_gb"],
        "cuda": memory.get("device") == "cuda",
        "duration": format_seconds(timing["seconds"]) or "—",
        "steps": timing["steps"],
        "tps": timing["tokens_per_second"],
        "tokens": report.get("tokens", 0),
    }


def fit_parts_figure(report: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Two bars in GB: the memory training needs, stacked by part, and the memory free.

    Args:
        report: what `fit.check_fit` returns (uses report["memory"]["parts_gb"], "available_gb").
        labels: words for the parts, "needed", "available" and "gb".
    """
    words = _words(labels)
    memory = report["memory"]
    needed, available = words["needed"], words["available"]
    fig = go.Figure()
    parts = {name: gb for name, gb in memory["parts_gb"].items() if gb > 0}
    for index, (name, gb) in enumerate(parts.items()):
        fig.add_trace(
            go.Bar(
                y=[needed],
                x=[gb],
                name=words.get(name, name),
                orientation="h",
                marker_color=PALETTE[index % len(PALETTE)],
                hovertemplate="%{x:.3f} " + words["gb"] + "<extra>%{fullData.name}</extra>",
            )
        )
    fig.add_trace(
        go.Bar(
            y=[available],
            x=[memory["available_gb"]],
            name=available,
            orientation="h",
            marker_color="#b0b0b0" if memory.get("fits", True) else "#d62728",
            showlegend=False,
            hovertemplate="%{x:.2f} " + words["gb"] + "<extra></extra>",
        )
    )
    fig.update_layout(
        barmode="stack",
        height=220,
        margin=MARGIN,
        xaxis_title=words["gb"],
        yaxis={"categoryorder": "array", "categoryarray": [available, needed]},
        legend={"orientation": "h", "y": -0.45, "x": 0},
    )
    return fig
