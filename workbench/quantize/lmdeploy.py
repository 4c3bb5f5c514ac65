"""LMDeploy's AWQ (`lmdeploy lite auto_awq`), run from its own virtual environment on a GPU.

lmdeploy ships CUDA wheels only and pins an older torch and peft than Workbench, so it never goes
into the main environment. Workbench looks for its command in WORKBENCH_LMDEPLOY (the path of
the `lmdeploy` executable) or `.venv-lmdeploy/bin/lmdeploy` beside the repository, and runs

    lmdeploy lite auto_awq SOURCE --work-dir OUT --w-bits 4 --w-group-size G

as a subprocess. The result is an AWQ folder that `lmdeploy serve api_server` (TurboMind) runs.
On a machine without an NVIDIA GPU the method is refused before anything starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from workbench.errors import WorkbenchError

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "On a machine with an NVIDIA GPU: `python -m venv .venv-lmdeploy && "
    ".venv-lmdeploy/bin/pip install lmdeploy` (or set WORKBENCH_LMDEPLOY to its `lmdeploy`)."
)


def lmdeploy_command() -> Path | None:
    """The `lmdeploy` executable of its own environment, or None."""
    configured = os.environ.get("WORKBENCH_LMDEPLOY", "")
    candidates = [Path(configured)] if configured else []
    candidates.append(ROOT / ".venv-lmdeploy" / "bin" / "lmdeploy")
    found = shutil.which("lmdeploy")
    candidates += [Path(found)] if found else []
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def check_lmdeploy() -> Path:
    """The lmdeploy command, or WorkbenchError saying what is missing (GPU first) and the way out."""
    from workbench.hardware import detect_hardware

    if not detect_hardware().gpus:
        raise WorkbenchError(
            "LMDeploy's AWQ (lite auto_awq) needs an NVIDIA GPU with CUDA; this machine has none.",
            where="method lmdeploy-awq",
            fix="Use int4-awq: Workbench's own activation-aware int4, which runs on the CPU. "
            "Or run this method on a GPU machine. " + INSTALL_HINT,
        )
    command = lmdeploy_command()
    if command is None:
        raise WorkbenchError(
            "lmdeploy is not installed (it lives in its own environment, not Workbench's).",
            where="method lmdeploy-awq",
            fix=INSTALL_HINT + " Or use int4-awq.",
        )
    return command


def run_auto_awq(
    source: Path, out: Path, group: int, progress: Callable[..., None], calib: str = "pileval"
) -> dict:
    """Run `lmdeploy lite auto_awq` on `source` into `out`; returns facts for the manifest.

    Raises:
        WorkbenchError: the command fails (its last output lines are in the message).
    """
    command = check_lmdeploy()
    args = [str(command), "lite", "auto_awq", str(source), "--work-dir", str(out)]
    args += ["--w-bits", "4", "--w-group-size", str(group), "--calib-dataset", calib]
    progress(message="running " + " ".join(args[1:4]) + " (LMDeploy)")
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise WorkbenchError(
            f"lmdeploy lite auto_awq failed (exit {done.returncode}):\n{tail}",
            where=str(command),
            fix="Its calibration set is downloaded from the hub: check the network or "
            "HF_ENDPOINT, and the GPU memory; or use int4-awq.",
        )
    return {"bits": 4, "group_size": group, "runtime": "lmdeploy", "calibration": calib}
