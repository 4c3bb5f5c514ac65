"""Evaluation figures, built without any UI: pure functions from an EvalReport to plotly Figures.

    task_bars       grouped bars per task, one colour per model, 95% intervals as error bars
    capability_radar  the mean headline score per capability (knowledge, reasoning, math...)
    quality_scatter   mean score against model size or speed (quantized models show their
                      variant), to see what a smaller or faster model costs

Scores where lower is better (bits per byte) are left out of the bars, the radar and the mean,
and get their own bar chart (`lower_bars`). Words come from `labels` (English by default).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.evaluate.report import EvalReport

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
LABELS = {
    "model": "model",
    "score": "score",
    "task": "task",
    "size_mb": "size (MB)",
    "speed": "samples per second",
    "mean_score": "mean score",
    "lower_better": "lower is better",
}
MARGIN = {"l": 50, "r": 20, "t": 40, "b": 40}


def _words(labels: dict | None) -> dict:
    return {**LABELS, **(labels or {})}


def _higher(report: EvalReport) -> pd.DataFrame:
    frame = report.headline
    return frame[~frame["lower_is_better"].astype(bool)] if not frame.empty else frame


def _color(report: EvalReport, model: str) -> str:
    models = report.models
    return PALETTE[models.index(model) % len(PALETTE)] if model in models else PALETTE[0]


def _bars(report: EvalReport, frame: pd.DataFrame, title: str, words: dict) -> go.Figure:
    fig = go.Figure()
    for model in report.models:
        rows = frame[frame["model"] == model]
        if rows.empty:
            continue
        fig.add_bar(
            name=model,
            x=rows["task"],
            y=rows["value"],
            marker_color=_color(report, model),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (rows["high"] - rows["value"]).tolist(),
                "arrayminus": (rows["value"] - rows["low"]).tolist(),
            },
            customdata=rows[["metric", "n"]].values,
            hovertemplate="%{x}: %{y:.3f} (%{customdata[0]}, n=%{customdata[1]})<extra>"
            + model
            + "</extra>",
        )
    fig.update_layout(
        barmode="group", title=title, margin=MARGIN, height=360, legend={"orientation": "h"}
    )
    fig.update_yaxes(title=words["score"], rangemode="tozero")
    return fig


def task_bars(report: EvalReport, labels: dict | None = None, title: str = "") -> go.Figure:
    """Grouped bars of each task's headline score (higher is better), with 95% intervals."""
    words = _words(labels)
    return _bars(report, _higher(report), title, words).update_yaxes(range=[0, 1.05])


def lower_bars(report: EvalReport, labels: dict | None = None) -> go.Figure | None:
    """Bars of the lower-is-better scores (perplexity tasks), or None when there are none."""
    frame = report.headline
    if frame.empty:
        return None
    frame = frame[frame["lower_is_better"].astype(bool)]
    if frame.empty:
        return None
    words = _words(labels)
    return _bars(report, frame, words["lower_better"], words)


def capability_scores(report: EvalReport) -> pd.DataFrame:
    """Mean headline score per (model, capability), higher-is-better tasks only."""
    frame = _higher(report)
    if frame.empty:
        return pd.DataFrame(columns=["model", "capability", "value"])
    return frame.groupby(["model", "capability"], as_index=False, sort=False)["value"].mean()


def capability_radar(report: EvalReport, labels: dict | None = None) -> go.Figure:
    """One closed line per model over the capabilities the run measured (over its tasks when
    it measured fewer than three capabilities: a radar needs three axes to mean anything)."""
    scores = capability_scores(report)
    if scores["capability"].nunique() < 3:
        frame = _higher(report)
        scores = frame.rename(columns={"task": "axis"})[["model", "axis", "value"]]
    else:
        scores = scores.rename(columns={"capability": "axis"})
    capabilities = list(dict.fromkeys(scores["axis"]))
    fig = go.Figure()
    for model in report.models:
        rows = scores[scores["model"] == model].set_index("axis")["value"]
        values = [float(rows.get(c, 0.0)) for c in capabilities]
        if not values:
            continue
        fig.add_scatterpolar(
            r=values + values[:1],
            theta=capabilities + capabilities[:1],
            name=model,
            line_color=_color(report, model),
            fill="toself",
            opacity=0.6,
        )
    fig.update_layout(
        polar={"radialaxis": {"range": [0, 1]}},
        margin=MARGIN,
        height=380,
        legend={"orientation": "h"},
    )
    return fig


def model_points(report: EvalReport) -> pd.DataFrame:
    """Per model: mean headline score, size on disk, samples per second, variant."""
    frame = _higher(report)
    facts = report.document.get("model_facts", {})
    timing = pd.DataFrame(report.document.get("timing", []))
    rows = []
    for model in report.models:
        scores = frame[frame["model"] == model]["value"]
        if scores.empty:
            continue
        info = facts.get(model, {})
        speed = None
        if not timing.empty:
            mine = timing[(timing["model"] == model) & (timing["computed"] > 0)]
            if not mine.empty and mine["seconds"].sum() > 0:
                speed = float(mine["computed"].sum() / mine["seconds"].sum())
        rows.append(
            {
                "model": model,
                "mean_score": float(scores.mean()),
                "size_mb": info.get("size_mb"),
                "speed": speed,
                "variant": info.get("variant") or ("remote" if info.get("remote") else ""),
            }
        )
    return pd.DataFrame(rows)


def quality_scatter(
    report: EvalReport, x: str = "size_mb", labels: dict | None = None
) -> go.Figure:
    """Mean score against size ("size_mb") or speed ("speed"), one labelled point per model."""
    words = _words(labels)
    points = model_points(report)
    fig = go.Figure()
    if not points.empty:
        points = points.dropna(subset=[x])
    for _, row in points.iterrows():
        label = row["model"] + (f" ({row['variant']})" if row["variant"] else "")
        fig.add_scatter(
            x=[row[x]],
            y=[row["mean_score"]],
            mode="markers+text",
            text=[label],
            textposition="top center",
            name=row["model"],
            marker={"size": 14, "color": _color(report, row["model"])},
        )
    fig.update_layout(margin=MARGIN, height=360, showlegend=False)
    fig.update_xaxes(title=words[x])
    if not points.empty:  # room on both sides for the labels
        low, high = float(points[x].min()), float(points[x].max())
        pad = max((high - low) * 0.25, abs(high) * 0.1, 1e-3)
        fig.update_xaxes(range=[low - pad, high + pad])
    fig.update_yaxes(title=words["mean_score"], range=[0, 1.05])
    return fig
