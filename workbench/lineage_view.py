"""The lineage of the workspace's artifacts as a Graphviz DOT graph (base -> adapter -> merged ->
quantized, datasets feeding fine-tunes, eval results hanging off the models they scored).

`lineage_dot` is pure: it takes what `Workspace.graph()` returns and gives DOT text that the home
page hands to `st.graphviz_chart` (and that `dot -Tsvg` renders the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# (kind, variant) -> Graphviz node attributes. A kind with no variant-specific entry uses (kind, "").
NODE_STYLES: dict[tuple[str, str], dict[str, str]] = {
    ("model", "base"): {"shape": "box", "fillcolor": "#dbeafe"},
    ("model", "merged"): {"shape": "box", "fillcolor": "#bfdbfe"},
    ("model", "quantized"): {"shape": "box", "fillcolor": "#e9d5ff"},
    ("model", ""): {"shape": "box", "fillcolor": "#dbeafe"},
    ("adapter", ""): {"shape": "component", "fillcolor": "#dcfce7"},
    ("dataset", ""): {"shape": "cylinder", "fillcolor": "#fef9c3"},
    ("eval", ""): {"shape": "note", "fillcolor": "#ffedd5"},
    ("missing", ""): {
        "shape": "box",
        "fillcolor": "#f3f4f6",
        "style": "dashed,filled",
        "fontcolor": "#6b7280",
    },
}
MAX_METRICS_SHOWN = 3


def _quote(text: str) -> str:
    """A DOT double-quoted string; newlines become DOT's centred line breaks."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _format_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return None


def _metric_lines(metrics: dict) -> list[str]:
    """Up to a few numeric metrics as 'name: value' lines (text and nested values are left out)."""
    lines = []
    for key, value in metrics.items():
        shown = _format_value(value)
        if shown is not None:
            lines.append(f"{key}: {shown}")
        if len(lines) == MAX_METRICS_SHOWN:
            break
    return lines


def _node_label(manifest: Any) -> str:
    kind = getattr(manifest, "kind", "") or ""
    variant = getattr(manifest, "variant", "") or ""
    lines = [manifest.name, f"{kind} · {variant}" if variant else kind]
    return "\n".join(lines + _metric_lines(getattr(manifest, "metrics", None) or {}))


def _node_attrs(kind: str, variant: str) -> dict[str, str]:
    style = NODE_STYLES.get((kind, variant)) or NODE_STYLES.get((kind, "")) or {"shape": "box"}
    return {"style": "rounded,filled", "fillcolor": "#ffffff", **style}


def lineage_dot(
    manifests: Sequence[Any],
    edges: Iterable[tuple[str, str]],
    *,
    missing_label: str = "missing",
) -> str:
    """DOT text of the artifact graph, drawn left to right from parents to children.

    Args:
        manifests: the artifacts (objects with name, kind, variant, metrics), e.g. from
            `Workspace.graph()`; drawn oldest first so the layout is stable between reloads.
        edges: (parent, child) names. A parent that is not among `manifests` (deleted, or a hub
            model never imported) is drawn as a dashed node labelled `missing_label`.
        missing_label: the word shown under such a node, in the user's language.

    Returns:
        A `digraph` in DOT syntax; an empty graph when there are no artifacts.
    """
    ordered = sorted(manifests, key=lambda m: (getattr(m, "created", "") or "", m.name))
    known = {m.name for m in ordered}
    edge_list = sorted({(str(p), str(c)) for p, c in edges})
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        '  graph [bgcolor="transparent", nodesep=0.3, ranksep=0.5];',
        '  node [fontname="Helvetica", fontsize=11, penwidth=1.2, color="#64748b"];',
        '  edge [color="#64748b", arrowsize=0.7];',
    ]
    for manifest in ordered:
        attrs = _node_attrs(getattr(manifest, "kind", ""), getattr(manifest, "variant", "") or "")
        attrs["label"] = _node_label(manifest)
        lines.append(f"  {_quote(manifest.name)} [{_attrs(attrs)}];")
    missing = sorted({name for edge in edge_list for name in edge if name not in known})
    for name in missing:
        attrs = _node_attrs("missing", "")
        attrs["label"] = f"{name}\n{missing_label}"
        lines.append(f"  {_quote(name)} [{_attrs(attrs)}];")
    for parent, child in edge_list:
        lines.append(f"  {_quote(parent)} -> {_quote(child)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{key}={_quote(value)}" for key, value in attrs.items())
