"""Training on several processes: data parallel (DDP), one process per GPU.

A recipe with `processes` > 1 is trained by `run_launched`: it writes the run folder's
`accelerate.yaml` (the configuration `accelerate launch` reads; kept so the user can see and
re-run it), starts one process per GPU with `accelerate launch -m workbench.finetune.distributed`
(on a machine without GPUs, CPU processes through `torch.distributed.run` and the gloo backend,
which is how the tests check the whole path on one machine), and relays rank 0's progress
events to the job. A cancel is a file in the run folder that every rank reads at a step
boundary and all agree on (an all-reduce); all ranks then stop after the same step and rank 0
checkpoints. (The cancel path has no test yet; the job system's process-group kill is the
fallback.)

Inside each process `Ranks` carries who is who: the model is wrapped in
DistributedDataParallel, each rank takes every `world`-th micro-batch of an optimizer step, the
loss is normalised by the trained tokens of the whole step across ranks (so N processes follow
the curve of one process with N times the batch), and only rank 0 writes events, probes,
checkpoints and the artifact.

Sharded strategies (FSDP, DeepSpeed ZeRO) are not offered: accelerate runs neither on CPU
processes, so this machine cannot test them, and LoRA on models that fit one GPU gains nothing
from them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.progress import null_progress

CONFIG_FILE = "accelerate.yaml"
STOP_FILE = "stop-requested"
RESULT_FILE = "distributed-result.json"
EVENT_PREFIX = "@@workbench-progress "


class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.main = self.rank == 0
        self._accelerator = None

    @property
    def active(self) -> bool:
        return self.world > 1

    def start(self) -> None:
        """Join the process group (accelerate reads the launcher's environment)."""
        if self.active and self._accelerator is None:
            from accelerate import Accelerator

            self._accelerator = Accelerator(cpu=os.environ.get("ACCELERATE_USE_CPU") == "1")

    def wrap(self, model: Any) -> Any:
        """DistributedDataParallel around `model` (trainable weights synchronised by backward)."""
        if not self.active:
            return model
        return self._accelerator.prepare_model(model)

    def unwrap(self, model: Any) -> Any:
        return self._accelerator.unwrap_model(model) if self.active else model

    def total(self, *values: float) -> list[float]:
        """Each value summed over all ranks."""
        if not self.active:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self._accelerator.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def anyone(self, flag: bool) -> bool:
        return self.total(float(flag))[0] > 0 if self.active else flag

    def barrier(self) -> None:
        if self.active:
            self._accelerator.wait_for_everyone()

    def end(self) -> None:
        if self.active:
            import torch.distributed as dist

            self.barrier()
            dist.destroy_process_group()


def accelerate_config(processes: int, *, gpus: int, mixed_precision: str) -> dict:
    """The `accelerate launch` configuration for data-parallel training on this machine."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if gpus else "MULTI_CPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": processes,
        "gpu_ids": ",".join(str(i) for i in range(processes)) if gpus else None,
        "mixed_precision": {"bfloat16": "bf16", "float16": "fp16"}.get(mixed_precision, "no"),
        "use_cpu": not gpus,
        "main_process_port": _free_port(),
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }


def check_processes(processes: int, gpus: int) -> None:
    """Refuse more GPU processes than GPUs, with what to do."""
    if gpus and processes > gpus:
        raise WorkbenchError(
            f"The recipe asks for {processes} training processes but this machine has {gpus} "
            "GPU(s).",
            where="processes",
            fix=f"Set processes to {gpus} or fewer (one process per GPU).",
        )


def launch_command(config: dict, config_path: Path, run_dir: Path, home: Path) -> list[str]:
    """The command that starts every process of the run."""
    module = ["-m", "workbench.finetune.distributed", "--run-dir", str(run_dir)]
    module += ["--home", str(home)]
    if config["distributed_type"] == "MULTI_CPU":
        # accelerate launch starts CPU processes only through mpirun; torch's own launcher
        # starts them directly (accelerate inside each process sees ACCELERATE_USE_CPU).
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={config['num_processes']}",
            f"--master_port={config['main_process_port']}",
            *module,
        ]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_path),
        *module,
    ]


def run_launched(
    recipe: Any,
    ws: Any,
    *,
    progress: Callable[..., None],
    should_stop: Callable[[], bool],
    run_dir: Path,
    gpus: int,
    dtype: str,
    job_id: str = "",
) -> dict:
    """Train `recipe` with `recipe.processes` processes and wait; returns rank 0's result."""
    import yaml

    from workbench.recipes import dump_recipe

    check_processes(recipe.processes, gpus)
    config = accelerate_config(recipe.processes, gpus=gpus, mixed_precision=dtype)
    config_path = run_dir / CONFIG_FILE
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    (run_dir / "distributed-recipe.yaml").write_text(dump_recipe(recipe), "utf-8")
    for stale in (STOP_FILE, RESULT_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    command = launch_command(config, config_path, run_dir, ws.root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WORKBENCH_JOB_ID": job_id}
    if not gpus:
        env["ACCELERATE_USE_CPU"] = "1"
        threads = max(1, (os.cpu_count() or 1) // recipe.processes)
        env["OMP_NUM_THREADS"] = str(threads)
    progress(message=f"launching {recipe.processes} training processes", stage="launch")
    log = (run_dir / "distributed.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, bufsize=1
    )
    stop_written = False
    with log:
        for line in process.stdout:
            if line.startswith(EVENT_PREFIX):
                progress(**json.loads(line[len(EVENT_PREFIX) :]))
            if not stop_written and should_stop():
                (run_dir / STOP_FILE).touch()
                stop_written = True
        code = process.wait()
    result_path = run_dir / RESULT_FILE
    if code != 0 or not result_path.is_file():
        raise WorkbenchError(
            f"The {recipe.processes} training processes failed (exit code {code}).",
            where=str(run_dir / "distributed.log"),
            fix="Read the error at the end of that log; the last checkpoint is kept, so the job "
            "can be resumed once the cause is fixed.\n" + _tail(run_dir / "distributed.log"),
        )
    return json.loads(result_path.read_text("utf-8"))


def stop_requested(run_dir: Path) -> bool:
    return (run_dir / STOP_FILE).is_file()


def print_progress(**event: Any) -> None:
    """Rank 0's progress: one line on stdout that `run_launched` relays to the job."""
    print(EVENT_PREFIX + json.dumps(event, default=float), flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    useful = [line for line in text if "Warning" not in line and line.strip()]
    return "\n".join(useful[-lines:])


def main(argv: list[str] | None = None) -> int:
    """One training process (started by `run_launched`'s command)."""
    parser = argparse.ArgumentParser(description="one process of a multi-process training run")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    from workbench.finetune.trainer import run_train
    from workbench.recipes import load_recipe
    from workbench.workspace import Workspace

    run_dir = Path(args.run_dir)
    recipe = load_recipe(run_dir / "distributed-recipe.yaml")
    ranks = Ranks()
    result = run_train(
        recipe,
        workspace=Workspace(args.home),
        progress=print_progress if ranks.main else null_progress,
        should_stop=lambda: stop_requested(run_dir),
        run_dir=run_dir,
        job_id=os.environ.get("WORKBENCH_JOB_ID", ""),
        ranks=ranks,
    )
    if ranks.main:
        (run_dir / RESULT_FILE).write_text(json.dumps(result, default=float), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
