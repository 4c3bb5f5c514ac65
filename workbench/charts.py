"""What the pages draw, built without any UI: job tables, progress fractions and metric charts.

Pure functions from backend objects to pandas DataFrames and plotly Figures, so they are tested
like any other code and a page only hands the result to Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.i18n import t

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
MAX_METRIC_PANELS = 6  # more panels than this become unreadable; the rest stay in the events file


def status_label(status: str, lang: str = "en") -> str:
    """A job status in the user's language (unknown statuses are shown as they are)."""
    return t(f"status.{status}", lang) if status in JOB_STATUSES else str(status)


def format_time(value: Any) -> str:
    """A job time (epoch seconds or ISO 8601 text) as local 'YYYY-MM-DD HH:MM:SS'; '' if unset."""
    if value in (None, "", 0):
        return ""
    try:
        if isinstance(value, (int, float)):
            moment = datetime.fromtimestamp(float(value))
        else:
            moment = datetime.fromisoformat(str(value))
            if moment.tzinfo is not None:
                moment = moment.astimezone()
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: Any) -> float | None:
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def format_duration(start: Any, end: Any) -> str:
    """Time between two job times as '1h 02m', '3m 05s' or '12s'; '' when either is unset."""
    a, b = _seconds(start), _seconds(end)
    if a is None or b is None or b < a:
        return ""
    total = int(round(b - a))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def jobs_frame(jobs: Iterable[Any], lang: str = "en") -> pd.DataFrame:
    """One row per job with translated column names, for a table."""
    rows = [
        {
            t("jobs.col_id", lang): job.id,
            t("jobs.col_title", lang): job.title or job.kind,
            t("jobs.col_kind", lang): job.kind,
            t("jobs.col_status", lang): status_label(job.status, lang),
            t("jobs.col_resource", lang): job.resource,
            t("jobs.col_created", lang): format_time(job.created),
            t("jobs.col_duration", lang): format_duration(job.started, job.finished),
        }
        for job in jobs
    ]
    columns = [
        "col_id",
        "col_title",
        "col_kind",
        "col_status",
        "col_resource",
        "col_created",
        "col_duration",
    ]
    return pd.DataFrame(rows, columns=[t(f"jobs.{c}", lang) for c in columns])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metrics_frame(events: Iterable[dict]) -> pd.DataFrame:
    """Numeric metrics from job events in long form: columns `step`, `metric`, `value`.

    Events without numeric metrics (status lines, messages) add nothing; text metrics are skipped.
    An event without a step is placed at its position in the list. A metric reported as null (the
    job saw NaN or infinity) is kept as NaN, so a diverging loss shows as a break in its line
    rather than silently vanishing.
    """
    rows = []
    for index, event in enumerate(events):
        step = _number(event.get("step"))
        for name, value in (event.get("metrics") or {}).items():
            number = math.nan if value is None else _number(value)
            if number is not None:
                rows.append(
                    {"step": index if step is None else step, "metric": str(name), "value": number}
                )
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def metrics_figure(events: Iterable[dict], *, x_title: str = "step") -> go.Figure:
    """One line chart per numeric metric (loss, learning rate, tokens/s...), sharing the step axis.

    Metrics have very different scales, so each gets its own panel instead of one shared y axis;
    panels follow the order in which metrics first appear. Returns an empty Figure (no traces)
    when the events hold no numeric metrics.
    """
    frame = metrics_frame(events)
    names = [
        n
        for n in frame["metric"].unique()
        if frame.loc[frame["metric"] == n, "value"].notna().any()
    ]
    names = names[:MAX_METRIC_PANELS]
    if not names:
        return go.Figure()
    fig = make_subplots(
        rows=len(names),
        cols=1,
        shared_xaxes=True,
        subplot_titles=names,
        vertical_spacing=min(0.12, 0.3 / len(names)),
    )
    for row, name in enumerate(names, start=1):
        series = frame[frame["metric"] == name]
        fig.add_trace(
            go.Scatter(
                x=series["step"],
                y=series["value"],
                name=name,
                mode="lines+markers" if len(series) <= 30 else "lines",
            ),
            row=row,
            col=1,
        )
    fig.update_xaxes(title_text=x_title, row=len(names), col=1)
    fig.update_layout(
        height=90 + 170 * len(names), showlegend=False, margin={"l": 40, "r": 20, "t": 40, "b": 40}
    )
    return fig
