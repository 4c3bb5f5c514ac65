"""What the fine-tuning pages draw: curves from events, run summaries, probe answers side by side,
recipe differences, the CLI line (replayed through the real parser) and the memory chart."""

from __future__ import annotations

import math
import shlex
from types import SimpleNamespace

import pytest

from workbench.cli import build_parser
from workbench.cli_train import train_recipe_from_args
from workbench.finetune.presets import apply_preset
from workbench.finetune.view import (
    STEP_COLUMNS,
    curves_figure,
    fit_parts_figure,
    format_seconds,
    probe_table,
    recipe_diff,
    recipes_frame,
    run_summary,
    train_command,
    train_events_frame,
)
from workbench.recipes import TrainRecipe, recipe_from_dict, recipe_to_dict


def step_event(step: int, loss: float | None, total: int = 6, **more) -> dict:
    metrics = {
        "loss": loss,
        "lr": 1e-3 * step,
        "grad_norm": 0.5,
        "tokens_per_s": 100.0 + step,
        "memory_mb": 500.0 + step,
        "epoch": step / 3,
        "eta_s": 10.0 * (total - step),
        **more,
    }
    return {"time": float(step), "step": step, "total": total, "message": "", "metrics": metrics}


def eval_event(step: int, value: float) -> dict:
    return {
        "time": step + 0.5,
        "step": step,
        "total": None,
        "message": "",
        "metrics": {"eval_loss": value},
    }


EVENTS = [
    {"time": 0.0, "status": "running", "pid": 1},
    {"time": 0.1, "step": None, "total": None, "message": "loading the model", "metrics": {"stage": "load"}},
    {"time": 0.2, "step": 0, "total": 6, "message": "training 8 examples", "metrics": {"examples": 8}},
    step_event(1, 3.0),
    step_event(2, 2.5),
    step_event(3, None),  # a NaN loss is written as null
    eval_event(3, 2.2),
    step_event(4, 1.8),
    step_event(5, 1.5),
    step_event(6, 1.2),
    eval_event(6, 1.9),
]  # fmt: skip


def test_events_become_one_row_per_step_with_eval_merged():
    frame = train_events_frame(EVENTS)
    assert list(frame.columns) == list(STEP_COLUMNS)
    assert list(frame["step"]) == [1, 2, 3, 4, 5, 6]
    assert math.isnan(frame["loss"][2])  # kept as a gap, not dropped
    assert frame["eval_loss"].dropna().tolist() == [2.2, 1.9]
    assert frame.loc[frame["step"] == 6, "eval_loss"].item() == 1.9
    assert frame["memory_mb"].tolist()[-1] == 506.0


def test_flat_progress_dicts_work_too_and_a_repeated_step_keeps_the_latest():
    flat = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}, {"step": 2, "eval_loss": 1.7}]
    resumed = [{"step": 2, "loss": 1.8}, {"step": 3, "loss": 1.6}]  # after a crash at step 2
    frame = train_events_frame(flat + resumed)
    assert frame["loss"].tolist() == [2.0, 1.8, 1.6]
    assert frame["eval_loss"].isna().all()  # that eval belonged to the abandoned step 2


def test_no_events_give_an_empty_frame_and_an_empty_figure():
    frame = train_events_frame([{"status": "queued"}])
    assert frame.empty and list(frame.columns) == list(STEP_COLUMNS)
    assert not curves_figure({"run": frame}, ("loss", "eval_loss")).data


def test_one_run_draws_loss_and_eval_loss_named_after_the_metric():
    fig = curves_figure({"r1": train_events_frame(EVENTS)}, ("loss", "eval_loss"))
    names = [trace.name for trace in fig.data]
    assert names == ["loss", "eval loss"]
    loss, evals = fig.data
    assert list(loss.x) == [1, 2, 3, 4, 5, 6]
    assert math.isnan(loss.y[2])  # a gap in the line
    assert list(evals.x) == [3, 6]  # eval points joined to each other, not broken by gaps
    assert fig.layout.xaxis.title.text == "step"


def test_several_runs_overlay_named_after_the_run_with_translated_axes():
    other = train_events_frame([{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0}])
    labels = {"step": "步数", "loss": "损失"}
    fig = curves_figure({"a": train_events_frame(EVENTS), "b": other}, "loss", labels)
    assert [trace.name for trace in fig.data] == ["a", "b"]
    assert fig.data[0].line.color != fig.data[1].line.color
    assert fig.layout.xaxis.title.text == "步数" and fig.layout.yaxis.title.text == "损失"


def test_run_summary_of_a_running_job():
    job = SimpleNamespace(status="running", error="")
    summary = run_summary(job, EVENTS)
    assert summary["step"] == 6 and summary["total"] == 6 and summary["fraction"] == 1.0
    assert summary["last_loss"] == 1.2
    assert (summary["best_eval_loss"], summary["best_eval_step"]) == (1.9, 6)
    assert summary["tokens_per_s"] == 103.5  # median of 101..106
    assert summary["peak_memory_mb"] == 506.0
    assert summary["eta_s"] == 0.0
    partial = run_summary(job, EVENTS[:5])
    assert partial["fraction"] == pytest.approx(2 / 6) and partial["eta_s"] == 40.0
    assert partial["best_eval_loss"] is None


def test_run_summary_before_any_step_and_after_a_failure():
    queued = run_summary(SimpleNamespace(status="queued", error=""), EVENTS[:3])
    assert queued["step"] == 0 and queued["fraction"] == 0.0 and queued["last_loss"] is None
    assert queued["message"] == "training 8 examples"
    failed = run_summary(SimpleNamespace(status="failed", error="Out of memory"), EVENTS[:6])
    assert failed["eta_s"] is None and failed["error"] == "Out of memory"


def test_format_seconds():
    assert format_seconds(None) == ""
    assert format_seconds(12.4) == "12s"
    assert format_seconds(185) == "3m 05s"
    assert format_seconds(3720) == "1h 02m"


def test_probe_table_puts_base_then_each_step_in_columns():
    probes = [
        {"step": 0, "base": True, "prompt": "Who are you?", "answer": "I am SmolLM."},
        {"step": 0, "base": True, "prompt": "你是谁？", "answer": "我是 SmolLM。"},
        {"step": 4, "base": False, "prompt": "Who are you?", "answer": "I am Puyu."},
        {"step": 4, "base": False, "prompt": "你是谁？", "answer": "我是书生。"},
        {"step": 8, "base": False, "prompt": "Who are you?", "answer": "I am Puyu!"},
    ]
    table = probe_table(probes)
    assert list(table.columns) == ["prompt", "base model", "step 4", "step 8"]
    assert table.iloc[0].tolist() == ["Who are you?", "I am SmolLM.", "I am Puyu.", "I am Puyu!"]
    assert table.iloc[1].tolist() == ["你是谁？", "我是 SmolLM。", "我是书生。", ""]
    zh = probe_table(probes, {"prompt": "问题", "base": "基础模型", "step_n": "第 {step} 步"})
    assert list(zh.columns) == ["问题", "基础模型", "第 4 步", "第 8 步"]
    assert probe_table([]).empty


def test_recipe_diff_lists_only_what_differs():
    a = recipe_to_dict(TrainRecipe(data="qa", out="a", lora_rank=8))
    b = recipe_to_dict(TrainRecipe(data="qa", out="b", lora_rank=16, dora=True))
    assert recipe_diff(a, b) == [
        {"field": "out", "a": "a", "b": "b"},
        {"field": "lora_rank", "a": 8, "b": 16},
        {"field": "dora", "a": False, "b": True},
    ]
    assert recipe_diff(a, a) == []
    assert recipe_diff({"x": 1}, {"y": 2}) == [
        {"field": "x", "a": 1, "b": None},
        {"field": "y", "a": None, "b": 2},
    ]


def test_recipes_frame_has_a_column_per_run():
    recipes = {
        "r1": recipe_to_dict(TrainRecipe(data="qa", out="a")),
        "r2": recipe_to_dict(TrainRecipe(data="qa", out="b", probe_prompts=["hi", "你好"])),
        "r3": recipe_to_dict(TrainRecipe(data="qa", out="c", learning_rate=1e-3)),
    }
    frame = recipes_frame(recipes, {"field": "字段"})
    assert list(frame.columns) == ["字段", "r1", "r2", "r3"]
    assert list(frame["字段"]) == ["out", "probe_prompts", "learning_rate"]
    assert frame.iloc[1].tolist() == ["probe_prompts", "", "hi | 你好", ""]


def replay(command: str) -> TrainRecipe:
    """The recipe the real CLI builds from a command line."""
    argv = shlex.split(command.split("  #")[0])
    assert argv[:2] == ["workbench", "train"]
    return train_recipe_from_args(build_parser().parse_args(argv[1:]))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"model": "tiny", "max_steps": 5, "learning_rate": 1e-3, "probe_prompts": ["Who are you?"]},
        {"method": "qlora", "dora": True, "rslora": True, "packing": False, "lora_targets": "q_proj,v_proj"},
        {"gradient_checkpointing": True, "device": "cpu", "dtype": "float32", "description": "my run"},
    ],
)  # fmt: skip
def test_the_command_replays_to_the_same_recipe(fields):
    recipe = TrainRecipe(data="qa", out="my-lora", **fields)
    command = train_command(recipe)
    assert "#" not in command
    assert replay(command) == recipe


def test_the_command_uses_the_preset_and_names_only_changes():
    fields = apply_preset("classroom", {"data": "qa", "out": "me", "lora_rank": 4, "max_steps": 5})
    recipe = recipe_from_dict({"kind": "train", **fields})
    command = train_command(recipe)
    assert command == "workbench train --data qa --out me --preset classroom --max-steps 5 --rank 4"
    assert replay(command) == recipe


def test_a_preset_value_no_flag_can_undo_falls_back_to_plain_flags():
    fields = apply_preset("quality", {"data": "qa", "out": "me", "gradient_checkpointing": False})
    recipe = recipe_from_dict({"kind": "train", **fields})
    command = train_command(recipe)
    assert "--preset" not in command and "--gradient-checkpointing" not in command
    assert "--rank 64" in command
    assert replay(command) == TrainRecipe(**{**fields, "preset": ""})


def test_fields_without_a_flag_are_named_in_a_comment():
    command = train_command(TrainRecipe(data="qa", out="me", weight_decay=0.1))
    assert command.endswith("# also set in the recipe YAML: weight_decay=0.1")


def test_fit_parts_figure_stacks_the_parts_against_the_free_memory():
    report = {
        "memory": {
            "parts_gb": {"weights": 0.5, "gradients": 0.0, "activations": 1.25, "overhead": 0.4},
            "available_gb": 20.0,
            "total_gb": 2.15,
            "fits": True,
        }
    }
    fig = fit_parts_figure(report, {"weights": "权重", "needed": "需要", "available": "可用"})
    bars = [(trace.name, trace.y[0], trace.x[0]) for trace in fig.data]
    assert bars == [("权重", "需要", 0.5), ("activations", "需要", 1.25),
                    ("runtime overhead", "需要", 0.4), ("可用", "可用", 20.0)]  # fmt: skip
    assert fig.layout.barmode == "stack"
