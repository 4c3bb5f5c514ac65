"""The lineage graph drawn on the home page."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from workbench.lineage_view import lineage_dot
from workbench.workspace import Manifest


def chain() -> list[Manifest]:
    return [
        Manifest("smol", "model", "base", created="2025-01-01T00:00:00+00:00"),
        Manifest("alpaca-zh", "dataset", created="2025-01-01T00:00:01+00:00"),
        Manifest(
            "smol-lora",
            "adapter",
            parents=["smol", "alpaca-zh"],
            created="2025-01-01T00:00:02+00:00",
            metrics={"train_loss": 1.23456, "note": "x"},
        ),
        Manifest(
            "smol-merged",
            "model",
            "merged",
            parents=["smol-lora"],
            created="2025-01-01T00:00:03+00:00",
        ),
        Manifest(
            "smol-int4",
            "model",
            "quantized",
            parents=["smol-merged"],
            created="2025-01-01T00:00:04+00:00",
            metrics={"size_mb": 80, "ppl": 12.5},
        ),
    ]


def edges_of(manifests):
    return [(p, m.name) for m in manifests for p in m.parents]


def test_the_chain_is_drawn_parent_to_child_with_scores():
    nodes = chain()
    dot = lineage_dot(nodes, edges_of(nodes))
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert "rankdir=LR" in dot
    for parent, child in edges_of(nodes):
        assert f'"{parent}" -> "{child}";' in dot
    assert "train_loss: 1.235" in dot  # numbers are shown, text metrics are not
    assert "note" not in dot
    assert "model · quantized" in dot
    assert 'shape="cylinder"' in dot  # datasets look different from models


def test_same_graph_gives_same_text_whatever_the_order():
    nodes = chain()
    assert lineage_dot(nodes, edges_of(nodes)) == lineage_dot(nodes[::-1], edges_of(nodes)[::-1])


def test_a_deleted_parent_is_drawn_dashed_with_the_given_word():
    child = Manifest("orphan-lora", "adapter", parents=["gone"])
    dot = lineage_dot([child], edges_of([child]), missing_label="已缺失")
    assert re.search(r'"gone" \[.*dashed.*label="gone\\n已缺失"', dot)
    assert '"gone" -> "orphan-lora";' in dot


def test_names_and_metrics_cannot_break_the_dot_syntax():
    odd = Manifest('we"ird\\name', "model", "base", metrics={'a"b': 1.0})
    dot = lineage_dot([odd], [])
    assert '"we\\"ird\\\\name"' in dot
    assert re.sub(r"\\.", "", dot).count('"') % 2 == 0  # every string is closed


def test_an_empty_workspace_gives_an_empty_graph():
    dot = lineage_dot([], [])
    assert "->" not in dot and "label" not in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graphviz_accepts_it():
    nodes = chain()
    result = subprocess.run(
        ["dot", "-Tsvg"],
        input=lineage_dot(nodes, edges_of(nodes)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
