"""Charts of a dataset's statistics, built without any UI.

Pure functions from the dict `stats.dataset_stats` returns to plotly Figures, so they are tested
like any other code and the Data studio page only hands them to Streamlit. Every chart takes
`labels` to translate its words (keys as in LABELS; missing keys stay English).
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

LABELS = {
    "tokens_title": "Tokens per sample (exact)",
    "tokens_title_estimated": "Tokens per sample (estimated from {sampled} tokenized rows, "
    "median error {error:.1%})",
    "tokens_title_none": "Tokens per sample: choose a model to count them",
    "tokens_axis": "tokens",
    "samples_axis": "samples",
    "cutoff": "cutoff {cutoff}: {over} over",
    "turns_title": "User turns per sample",
    "turns_axis": "user turns",
    "roles_title": "Messages and characters per role",
    "messages": "messages",
    "characters": "characters",
    "role_axis": "role",
    "language_title": "Language of the samples",
    "zh": "Chinese",
    "en": "English",
    "mixed": "mixed",
    "other": "other",
    "duplicates_title": "Repeated samples",
    "unique": "unique",
    "exact": "exact repeats",
    "near": "near repeats",
}
MARGIN = {"l": 40, "r": 20, "t": 50, "b": 40}
ROLE_ORDER = ("system", "user", "assistant", "tool")


def _words(labels: dict[str, str] | None) -> dict[str, str]:
    return {**LABELS, **(labels or {})}


def token_histogram(stats: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Bars of samples per token-length bin, with a dashed line at the training cutoff.

    The title says whether the lengths are exact or estimated (from how many tokenized rows,
    with what error). Without token statistics (no tokenizer) an empty chart says so.
    """
    words = _words(labels)
    tokens = stats.get("tokens")
    fig = go.Figure()
    if not tokens:
        return fig.update_layout(title=words["tokens_title_none"], height=320, margin=MARGIN)
    edges, counts = tokens["histogram"]["edges"], tokens["histogram"]["counts"]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig.add_trace(
        go.Bar(
            x=[a + w / 2 for a, w in zip(edges[:-1], widths, strict=True)],
            y=counts,
            width=widths,
            customdata=[[a, b] for a, b in zip(edges[:-1], edges[1:], strict=True)],
            hovertemplate="%{customdata[0]}–%{customdata[1]}: %{y}<extra></extra>",
            name=words["samples_axis"],
        )
    )
    if tokens["exact"]:
        title = words["tokens_title"]
    else:
        title = words["tokens_title_estimated"].format(
            sampled=tokens["sampled"], error=tokens["relative_error"]
        )
    cutoff, top = tokens["cutoff"], edges[-1]
    note = words["cutoff"].format(cutoff=cutoff, over=tokens["over_cutoff"])
    if cutoff <= 2 * top:
        fig.add_vline(
            x=cutoff,
            line_dash="dash",
            line_color="#c62828",
            annotation_text=note,
            annotation_position="top right",
        )
    else:  # a line far right of every bar would squeeze them into a corner
        fig.add_annotation(text=note, x=1, y=1, xref="paper", yref="paper", showarrow=False)
    fig.update_xaxes(
        title_text=words["tokens_axis"],
        range=[0, top if cutoff > 2 * top else max(top, cutoff * 1.05)],
    )
    fig.update_yaxes(title_text=words["samples_axis"])
    fig.update_layout(title=title, bargap=0.05, height=360, showlegend=False, margin=MARGIN)
    return fig


def turns_bar(stats: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Samples per number of user turns (conversations only)."""
    words = _words(labels)
    turns = sorted(stats["turns"].items(), key=lambda kv: int(kv[0]))
    fig = go.Figure(go.Bar(x=[k for k, _ in turns], y=[v for _, v in turns]))
    fig.update_xaxes(title_text=words["turns_axis"], type="category")
    fig.update_yaxes(title_text=words["samples_axis"])
    fig.update_layout(title=words["turns_title"], height=320, showlegend=False, margin=MARGIN)
    return fig


def roles_bar(stats: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Two panels: messages per role and characters per role."""
    words = _words(labels)
    roles = stats["roles"]
    names = [r for r in ROLE_ORDER if r in roles] + [r for r in roles if r not in ROLE_ORDER]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[words["messages"], words["characters"]])
    for col, key, word in ((1, "messages", "messages"), (2, "chars", "characters")):
        fig.add_trace(go.Bar(x=names, y=[roles[n][key] for n in names], name=words[word]), 1, col)
        fig.update_xaxes(title_text=words["role_axis"], row=1, col=col)
    fig.update_layout(title=words["roles_title"], height=340, showlegend=False, margin=MARGIN)
    return fig


def language_pie(stats: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Share of samples per language (Chinese, English, mixed, other)."""
    words = _words(labels)
    languages = {k: v for k, v in stats["language"].items() if v}
    fig = go.Figure(
        go.Pie(
            labels=[words.get(k, k) for k in languages],
            values=list(languages.values()),
            sort=False,
            hole=0.35,
        )
    )
    fig.update_layout(title=words["language_title"], height=320, margin=MARGIN)
    return fig


def duplicates_bar(stats: dict, labels: dict[str, str] | None = None) -> go.Figure:
    """Unique samples, exact repeats and near repeats (each repeat counted once)."""
    words = _words(labels)
    dupes = stats["duplicates"]
    unique = stats["rows"] - dupes["exact"] - dupes["near"]
    fig = go.Figure(
        go.Bar(
            x=[words["unique"], words["exact"], words["near"]],
            y=[unique, dupes["exact"], dupes["near"]],
            marker_color=["#4c78a8", "#e45756", "#f58518"],
        )
    )
    fig.update_yaxes(title_text=words["samples_axis"])
    fig.update_layout(title=words["duplicates_title"], height=320, showlegend=False, margin=MARGIN)
    return fig
