"""Reports and charts from a real eval run of two different tiny models."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest

from tests.conftest import build_tiny_model
from workbench.evaluate import charts, report
from workbench.evaluate.runner import run_eval
from workbench.recipes import EvalRecipe

TASKS = ["knowledge-en", "reasoning-zh"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_models(workspace, tiny_artifact, tmp_path):
    other = build_tiny_model(tmp_path / "other", layers=1, hidden=32)
    with workspace.create("model", "tiny-small", variant="quantized", parents=["tiny"]) as staging:
        for item in other.iterdir():
            shutil.copy2(item, staging / item.name)
    return workspace, ["tiny", "tiny-small"]


@pytest.fixture
def run(two_models):
    ws, models = two_models
    result = run_eval(
        EvalRecipe(models=models, tasks=TASKS, limit=10, dtype="float32", name="cmp"), workspace=ws
    )
    return ws, result, report.load_report(ws, "cmp")


def test_leaderboard_and_exports(run):
    ws, result, rep = run
    board = report.leaderboard(rep)
    assert list(board.index) == ["tiny", "tiny-small"] and list(board.columns) == TASKS
    for row in result["metrics"]:
        if row["headline"]:
            assert board.loc[row["model"], row["task"]] == row["value"]
    csv = pd.read_csv(io.StringIO(report.to_csv(rep)))
    assert len(csv) == len(result["metrics"])
    markdown = report.to_markdown(rep)
    assert "| tiny-small |" in markdown and "95% bootstrap" in markdown
    assert json.loads(report.to_json(rep))["metrics"] == result["metrics"]
    assert [m.name for m in report.list_evals(ws)] == ["cmp"]


def test_disagreements_are_exactly_the_samples_scored_differently(run):
    _, _, rep = run
    scores: dict[str, dict[str, float]] = {}
    for line in rep.samples:
        if line["task"] == "knowledge-en":
            scores.setdefault(line["id"], {})[line["model"]] = line["scores"]["acc"]
    differ = sorted(i for i, s in scores.items() if s["tiny"] != s["tiny-small"])
    frame = report.disagreements(rep, "knowledge-en")
    assert sorted(frame["id"]) == differ
    assert {"tiny · output", "tiny-small · output", "question", "target"} <= set(frame.columns)
    estimate = report.paired(rep, "knowledge-en", "tiny", "tiny-small")
    mean = sum(s["tiny"] - s["tiny-small"] for s in scores.values()) / len(scores)
    assert estimate.value == pytest.approx(mean)
    assert estimate.low <= estimate.value <= estimate.high


def test_compare_runs(run):
    ws, _, first = run
    run_eval(
        EvalRecipe(models=["tiny"], tasks=TASKS[:1], limit=10, dtype="float32", name="again"),
        workspace=ws,
    )
    table = report.compare_runs(first, report.load_report(ws, "again"))
    assert list(table["model"]) == ["tiny"] and (table["change"] == 0).all()


def test_charts(run):
    _, _, rep = run
    bars = charts.task_bars(rep)
    assert [trace.name for trace in bars.data] == ["tiny", "tiny-small"]
    assert all(list(trace.x) == TASKS and trace.error_y.array is not None for trace in bars.data)
    assert charts.lower_bars(rep) is None  # no perplexity task in this run
    radar = charts.capability_radar(rep)  # two capabilities: too few axes, so one per task
    assert {tuple(trace.theta) for trace in radar.data} == {(*TASKS, TASKS[0])}
    assert list(charts.capability_scores(rep)["capability"].unique()) == ["knowledge", "reasoning"]
    scatter = charts.quality_scatter(rep, "size_mb")
    labels = sorted(trace.text[0] for trace in scatter.data)
    assert labels == ["tiny (base)", "tiny-small (quantized)"]
    points = charts.model_points(rep).set_index("model")
    assert points.loc["tiny-small", "size_mb"] < points.loc["tiny", "size_mb"]
    assert (points["speed"] > 0).all()


def test_a_model_artifact_is_not_an_eval(run):
    from workbench.errors import InvalidInput

    ws, _, _ = run
    with pytest.raises(InvalidInput, match="not an eval result"):
        report.load_report(ws, "tiny")
