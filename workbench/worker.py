"""The job worker: `python -m workbench.worker JOB_ID` runs one job in its own process.

Started by `jobs.dispatch` with stdout and stderr going to the run folder's log.txt. It records
itself as the job's worker, calls the recipe's runner with an `EventLog` as progress sink and a
cheap `should_stop`, records the outcome, starts whatever the queue lets start next, and exits.

A cancel reaches the runner through `should_stop()` (the run folder's `cancel` file, or the
database, checked at most every 0.5 s). SIGTERM asks for the same graceful stop; a SIGTERM that
comes after a stop was already asked for ends the runner at once (the job is still recorded as
cancelled).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from workbench import jobs
from workbench.errors import WorkbenchError
from workbench.progress import EventLog
from workbench.recipes import load_recipe
from workbench.workspace import Workspace

# Exceptions that are not the user's doing but still have a useful next step.
ERROR_FIXES = {
    "OutOfMemoryError": "The GPU ran out of memory: lower the batch size or sequence length, use "
    "QLoRA or a smaller model, and check that no other job holds the GPU.",
    "MemoryError": "The machine ran out of RAM: use a smaller model, batch or sequence length.",
    "ModuleNotFoundError": "A Python package is missing: install it (see requirements.txt) in the "
    "environment the app runs in.",
    "ImportError": "A Python package is missing or has the wrong version: check requirements.txt.",
}


class ForcedStop(BaseException):
    """Raised in the runner by a SIGTERM that follows a stop request it did not honour."""


class StopRequest:
    """The runner's `should_stop()`: True once a cancel or SIGTERM asked the job to stop."""

    DB_INTERVAL_S = 0.5

    def __init__(self, ws: Workspace, job_id: str, run_dir: Path) -> None:
        self.ws, self.job_id = ws, job_id
        self.cancel_file = run_dir / jobs.CANCEL_FILE
        self.requested = False
        self.finishing = False  # set once the runner returned: signals no longer interrupt
        self._next_db_check = 0.0

    def __call__(self) -> bool:
        if self.requested:
            return True
        if self.cancel_file.exists():
            self.requested = True
        elif time.monotonic() >= self._next_db_check:
            self._next_db_check = time.monotonic() + self.DB_INTERVAL_S
            self.requested = jobs.cancel_requested_in_db(self.ws, self.job_id)
        return self.requested

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if self.finishing:
            return
        if self.requested or self.cancel_file.exists():
            raise ForcedStop()
        self.requested = True
        with contextlib.suppress(OSError):  # os.write: print() is not safe in a signal handler
            os.write(2, b"[workbench worker] SIGTERM: stopping at the next step\n")


def _import_runner(spec: str) -> Any:
    module_name, _, function_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def _call_runner(runner: Any, recipe: Any, **context: Any) -> Any:
    """Call `runner(recipe, ...)` with those of the context arguments it declares.

    Every runner takes `progress` and `should_stop`; `workspace`, `run_dir` and `job_id` are
    passed only to runners that ask for them (or take **kwargs).
    """
    params = inspect.signature(runner).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return runner(recipe, **context)
    return runner(recipe, **{k: v for k, v in context.items() if k in params})


def _as_result(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return {"value": value}


def _describe(exc: BaseException, job_id: str, log_path: Path) -> str:
    """Error text for an exception that is not a WorkbenchError: '<Type>: <message>' first."""
    name = type(exc).__name__
    return str(
        WorkbenchError(
            f"{name}: {exc}",
            where=f"job {job_id} (the full traceback is in {log_path})",
            fix=ERROR_FIXES.get(
                name,
                "Read the traceback in the log; if the recipe looks right, "
                "this is a bug in Workbench worth reporting.",
            ),
        )
    )


def run_job(ws: Workspace, job_id: str) -> int:
    """Run job `job_id` to its end in this process. Returns the process exit code."""
    try:
        job = jobs.get_job(ws, job_id)
    except WorkbenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = StopRequest(ws, job_id, job.run_dir)
    signal.signal(signal.SIGTERM, stop.on_sigterm)
    job = jobs.mark_running(ws, job_id)
    if job is None:
        print(
            f"[workbench worker] job {job_id} is finished or running elsewhere; nothing to do",
            file=sys.stderr,
        )
        return 2
    events = EventLog(job.run_dir / jobs.EVENTS_FILE)
    events.event({"status": "running", "pid": os.getpid()})
    began = time.monotonic()
    print(f"[workbench worker] job {job_id} ({job.kind}) started, pid {os.getpid()}", flush=True)

    status, result, error = "failed", {}, ""
    try:
        recipe = load_recipe(job.run_dir / jobs.RECIPE_FILE)
        if stop():
            status = "cancelled"
        else:
            runner = _import_runner(recipe.runner)
            value = _call_runner(
                runner,
                recipe,
                workspace=ws,
                progress=events,
                should_stop=stop,
                run_dir=job.run_dir,
                job_id=job_id,
            )
            result = _as_result(value)
            status = "cancelled" if stop.requested else "succeeded"
    except (ForcedStop, KeyboardInterrupt):
        status, error = "cancelled", "Cancelled: stopped at once after a second stop request."
    except WorkbenchError as exc:
        if stop.requested:
            status = "cancelled"
        else:
            error = str(exc)
            print(f"[workbench worker] failed:\n{error}", file=sys.stderr, flush=True)
    except BaseException as exc:  # noqa: BLE001 - a worker reports whatever ends its runner
        traceback.print_exc()
        if stop.requested:
            status = "cancelled"
        else:
            error = _describe(exc, job_id, job.run_dir / jobs.LOG_FILE)
    stop.finishing = True

    try:
        events.event({"status": status, "error": error, "result": result})
        recorded = jobs.mark_finished(ws, job_id, status, result=result, error=error)
    except Exception as exc:  # noqa: BLE001 - e.g. a result that is not JSON-safe
        traceback.print_exc()
        status, error = "failed", _describe(exc, job_id, job.run_dir / jobs.LOG_FILE)
        recorded = jobs.mark_finished(ws, job_id, status, result={}, error=error)
    took = time.monotonic() - began
    note = "" if recorded else " (already recorded by a cancel)"
    print(f"[workbench worker] job {job_id} {status} after {took:.1f} s{note}", flush=True)
    try:
        jobs.dispatch(ws)
    except Exception:  # noqa: BLE001 - the next job is started by the next reconcile anyway
        traceback.print_exc()
    return 0 if status == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m workbench.worker JOB_ID", file=sys.stderr)
        return 2
    return run_job(Workspace(), args[0])


if __name__ == "__main__":
    sys.exit(main())
