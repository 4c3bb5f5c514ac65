"""What the Jobs page draws: the metrics chart, progress, job tables and times."""

from __future__ import annotations

import json
import math
from pathlib import Path

from workbench.charts import (
    format_duration,
    format_time,
    jobs_frame,
    metrics_figure,
    metrics_frame,
)
from workbench.jobs import Job, latest_progress

EVENTS = [
    {"time": 1.0, "status": "running"},
    {
        "time": 2.0,
        "step": 1,
        "total": 4,
        "message": "training",
        "metrics": {"loss": 2.0, "lr": 1e-4},
    },
    {
        "time": 3.0,
        "step": 2,
        "total": 4,
        "message": "training",
        "metrics": {"loss": None, "lr": 2e-4, "phase": "warmup", "done": True},
    },
    {"time": 4.0, "step": 3, "total": 4, "message": "eval", "metrics": {"eval_loss": 1.5}},
    {"time": 5.0, "step": 4, "total": 4, "message": "training", "metrics": {"loss": 1.0}},
    {"time": 6.0, "status": "succeeded"},
]


def test_metrics_frame_keeps_numbers_and_marks_nulls_as_gaps():
    frame = metrics_frame(EVENTS)
    assert set(frame["metric"]) == {"loss", "lr", "eval_loss"}  # text and booleans left out
    loss = frame[frame["metric"] == "loss"]
    assert list(loss["step"]) == [1, 2, 4]
    assert math.isnan(loss["value"].iloc[1])  # a NaN loss in the job stays visible as a gap


def test_one_panel_per_metric_in_order_of_appearance():
    fig = metrics_figure(EVENTS, x_title="步数")
    assert [trace.name for trace in fig.data] == ["loss", "lr", "eval_loss"]
    assert list(fig.data[0].x) == [1, 2, 4]
    assert fig.layout.xaxis3.title.text == "步数"
    assert fig.data[0].yaxis != fig.data[1].yaxis  # loss and lr do not share a scale


def test_events_without_metrics_give_an_empty_figure():
    assert not metrics_figure([{"time": 1.0, "status": "queued"}]).data
    assert not metrics_figure([]).data
    events_without_steps = [{"metrics": {"acc": 0.5}}, {"metrics": {"acc": 0.7}}]
    assert list(metrics_figure(events_without_steps).data[0].x) == [0, 1]


def test_progress_fraction(tmp_path):
    def fraction(step, total):
        (tmp_path / "events.jsonl").write_text(json.dumps({"step": step, "total": total}) + "\n")
        job = Job(id="20250101-120000-generate-1a2b3c", kind="generate", run_dir=tmp_path)
        return latest_progress(job)["fraction"]

    assert fraction(5, 10) == 0.5
    assert fraction(12, 10) == 1.0
    assert fraction(3, None) is None
    assert fraction(None, 10) is None
    assert fraction(1, 0) is None


def test_times_and_durations():
    assert format_time("") == ""
    assert len(format_time("2025-01-02T03:04:05+00:00")) == len("2025-01-02 03:04:05")
    assert format_time("not a time") == "not a time"
    start, end = "2025-01-02T03:04:05+00:00", "2025-01-02T04:06:15+00:00"
    assert format_duration(start, end) == "1h 02m"
    assert format_duration(start, "2025-01-02T03:07:10+00:00") == "3m 05s"
    assert format_duration(start, "2025-01-02T03:04:17+00:00") == "12s"
    assert format_duration(start, "") == ""


def test_jobs_frame_translates_headers_and_statuses():
    job = Job(
        id="20250101-000000-generate-abcdef",
        kind="generate",
        status="failed",
        created="2025-01-01T00:00:00+00:00",
        started="2025-01-01T00:00:00+00:00",
        finished="2025-01-01T00:00:30+00:00",
        run_dir=Path("/tmp/x"),
    )
    frame = jobs_frame([job], "zh")
    assert list(frame["状态"]) == ["失败"]
    assert list(frame["标题"]) == ["generate"]  # no title: the kind stands in
    assert list(frame["耗时"]) == ["30s"]
    assert jobs_frame([], "en").columns[0] == "ID"
