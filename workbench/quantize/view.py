"""What the Quantize page draws, as plain data: the results table, the trade-off charts, the
command line. No torch here (the page imports this), only pandas and plotly."""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from workbench.workspace import Workspace

MB = 2**20
INT4_METHODS = ("int4-rtn", "int4-awq")
COLUMNS = (
    "name",
    "source",
    "method",
    "size_mb",
    "source_size_mb",
    "ppl",
    "source_ppl",
    "ppl_change_pct",
    "tokens_per_s",
    "source_tokens_per_s",
    "speedup",
)


def quantized_frame(ws: Workspace) -> pd.DataFrame:
    """One row per quantized model artifact, newest first, with its measured numbers."""
    rows = []
    for manifest in ws.list("model", variant="quantized"):
        m = manifest.metrics
        change = m.get("ppl_change")
        rows.append(
            {
                "name": manifest.name,
                "source": manifest.parents[0] if manifest.parents else manifest.source,
                "method": m.get("method", ""),
                "size_mb": round(m["size_bytes"] / MB, 1) if "size_bytes" in m else None,
                "source_size_mb": round(m["source_size_bytes"] / MB, 1)
                if "source_size_bytes" in m
                else None,
                "ppl": m.get("ppl"),
                "source_ppl": m.get("source_ppl"),
                "ppl_change_pct": round(change * 100, 2) if change is not None else None,
                "tokens_per_s": m.get("tokens_per_s"),
                "source_tokens_per_s": m.get("source_tokens_per_s"),
                "speedup": m.get("speedup"),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def tradeoff_figure(frame: pd.DataFrame, words: dict[str, str]) -> go.Figure:
    """Size on disk against perplexity: each quantized model and (hollow) its source."""
    fig = go.Figure()
    measured = frame.dropna(subset=["ppl", "size_mb"])
    sources = measured.drop_duplicates("source")
    fig.add_trace(
        go.Scatter(
            x=sources["source_size_mb"],
            y=sources["source_ppl"],
            text=sources["source"],
            mode="markers+text",
            textposition="top center",
            marker={"size": 12, "symbol": "circle-open"},
            name=words["source"],
        )
    )
    fig.add_trace(
        go.Scatter(
            x=measured["size_mb"],
            y=measured["ppl"],
            text=measured["method"],
            mode="markers+text",
            textposition="top center",
            marker={"size": 12},
            name=words["quantized"],
        )
    )
    fig.update_layout(
        xaxis_title=words["size"], yaxis_title=words["ppl"], height=340, margin={"t": 30}
    )
    return fig


def speed_figure(frame: pd.DataFrame, words: dict[str, str]) -> go.Figure:
    """Decode tokens/s of each quantized model beside its source, measured in the same run."""
    measured = frame.dropna(subset=["tokens_per_s"])
    fig = go.Figure(
        [
            go.Bar(x=measured["name"], y=measured["source_tokens_per_s"], name=words["source"]),
            go.Bar(x=measured["name"], y=measured["tokens_per_s"], name=words["quantized"]),
        ]
    )
    fig.update_layout(barmode="group", yaxis_title=words["speed"], height=340, margin={"t": 30})
    return fig


def quantize_command(recipe: Any) -> str:
    """The `workbench quantize` command that launches the same job."""
    parts = ["workbench", "quantize", "--model", recipe.model, "--method", recipe.method]
    if recipe.method in INT4_METHODS or recipe.method == "lmdeploy-awq":
        parts += ["--group", str(recipe.group)]
    if recipe.calib:
        parts += ["--calib", recipe.calib]
    parts += ["--out", recipe.out]
    if not recipe.report:
        parts.append("--no-report")
    return " ".join(shlex.quote(p) for p in parts)


def answers_frame(result: dict, words: dict[str, str]) -> pd.DataFrame:
    """The side-by-side answers of a finished quantize job."""
    rows = result.get("answers") or []
    return pd.DataFrame(
        [[r["prompt"], r["source"], r["quantized"]] for r in rows],
        columns=[words["prompt"], words["source"], words["quantized"]],
    )
