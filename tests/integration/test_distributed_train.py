"""Data-parallel training on one machine: two real CPU processes (gloo) started the way a
multi-GPU run is, checked against one process doing the same work with gradient accumulation."""

from __future__ import annotations

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig

from workbench.errors import WorkbenchError
from workbench.finetune.distributed import accelerate_config, check_processes
from workbench.finetune.trainer import run_train
from workbench.recipes import TrainRecipe

from ..unit.test_finetune import (
    chat_data,  # noqa: F401  (fixture)
    losses_of,
    recipe,
)


def test_two_processes_follow_the_curve_of_one_with_twice_the_batch(
    workspace,
    chat_data,  # noqa: F811
    tmp_path,
):
    common = {"max_steps": 2, "batch_size": 2, "dtype": "float32", "packing": False}
    single: list[dict] = []
    run_train(
        recipe(out="single", grad_accum=2, **common),
        workspace=workspace,
        progress=lambda **e: single.append(e),
        run_dir=tmp_path / "single",
    )
    double: list[dict] = []
    result = run_train(
        recipe(out="double", processes=2, **common),
        workspace=workspace,
        progress=lambda **e: double.append(e),
        run_dir=tmp_path / "double",
    )
    assert result["processes"] == 2 and result["steps"] == 2
    assert losses_of(double) == pytest.approx(losses_of(single), rel=1e-4)
    assert [e["step"] for e in double if "loss" in e] == [1, 2]  # rank 0's events, relayed once
    assert workspace.get("double").kind == "adapter"
    config = yaml.safe_load((tmp_path / "double" / "accelerate.yaml").read_text())
    assert config["num_processes"] == 2 and config["distributed_type"] == "MULTI_CPU"


def test_a_multi_gpu_config_is_one_accelerate_reads(tmp_path):
    path = tmp_path / "accelerate.yaml"
    config = accelerate_config(4, gpus=4, mixed_precision="bfloat16")
    path.write_text(yaml.safe_dump(config))
    parsed = ClusterConfig.from_yaml_file(path)
    assert parsed.distributed_type == "MULTI_GPU"
    assert parsed.num_processes == 4 and parsed.gpu_ids == "0,1,2,3"
    assert parsed.mixed_precision == "bf16"


def test_more_processes_than_gpus_is_refused():
    with pytest.raises(WorkbenchError, match="has 2 GPU"):
        check_processes(4, gpus=2)
    with pytest.raises(WorkbenchError, match="processes"):
        TrainRecipe(data="d", out="o", processes=0)
