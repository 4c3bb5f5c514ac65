"""The LMDeploy backend: `lmdeploy serve api_server` in its own virtual environment, on a GPU.

LMDeploy pins an older torch and peft than Workbench and ships CUDA wheels only, so it never
goes into Workbench's environment. It lives in its own venv (WORKBENCH_LMDEPLOY_VENV, default
`<workspace>/envs/lmdeploy`, made with `python -m venv ... && .../pip install lmdeploy`), runs
as a serve job (`ServeRecipe(backend="lmdeploy")`), and is used through the remote engine:

    engine = open_engine("lmdeploy:my-merged-model")   # queues the job, waits, connects

`close()` on that engine cancels the job, which stops the LMDeploy server.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from workbench.errors import WorkbenchError
from workbench.workspace import Workspace

START_TIMEOUT_S = 900  # a first start compiles kernels and loads weights: minutes
VENV_VARIABLE = "WORKBENCH_LMDEPLOY_VENV"


def lmdeploy_venv(ws: Workspace) -> Path:
    return Path(os.environ.get(VENV_VARIABLE) or ws.root / "envs" / "lmdeploy")


def check_lmdeploy(ws: Workspace) -> Path:
    """The `lmdeploy` command of its venv, after checking that a CUDA GPU is here.

    Raises:
        WorkbenchError: no CUDA GPU, or no lmdeploy venv; the fix says how to make one.
    """
    import torch

    if not torch.cuda.is_available():
        raise WorkbenchError(
            "LMDeploy needs an NVIDIA GPU with CUDA; none is usable on this machine.",
            where="backend lmdeploy",
            fix="Use the local backend (Workbench's own engine runs on the CPU), or run this on "
            "a GPU machine.",
        )
    command = lmdeploy_venv(ws) / "bin" / "lmdeploy"
    if not command.is_file():
        venv = lmdeploy_venv(ws)
        raise WorkbenchError(
            f"LMDeploy is not installed: there is no {command}.",
            where=f"{VENV_VARIABLE} / {venv}",
            fix=f"python3 -m venv {venv} && {venv}/bin/pip install lmdeploy  (it brings its own "
            f"torch), or point {VENV_VARIABLE} at an existing LMDeploy environment.",
        )
    return command


def open_lmdeploy(target: str, ws: Workspace | None = None, **options: Any) -> Any:
    """Start a serve job with the LMDeploy backend for `target` and connect to it."""
    from workbench import jobs
    from workbench.engine.remote import open_remote
    from workbench.recipes import ServeRecipe

    ws = ws or Workspace()
    check_lmdeploy(ws)
    recipe = ServeRecipe(
        model=target, backend="lmdeploy", port=0, api_key=options.get("api_key", "")
    )
    job = jobs.submit(ws, recipe, title=f"lmdeploy: {target}")
    endpoint_file = job.run_dir / "endpoint.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not endpoint_file.is_file():
        job = jobs.get_job(ws, job.id)
        if not job.active:
            raise WorkbenchError(
                f"The LMDeploy server for {target!r} did not start: {job.error or job.status}.",
                where=f"job {job.id} ({job.run_dir / 'log.txt'})",
                fix="Read the job's log: `workbench jobs show " + job.id + "`.",
            )
        if time.monotonic() > deadline:
            jobs.cancel(ws, job.id, wait=False)
            raise WorkbenchError(
                f"The LMDeploy server for {target!r} did not answer in {START_TIMEOUT_S} s.",
                where=f"job {job.id}",
                fix="Look at its log; a big model may need more GPU memory.",
            )
        time.sleep(1.0)
    endpoint = json.loads(endpoint_file.read_text("utf-8"))
    engine = open_remote(f"{endpoint['url']}#{endpoint['served_model']}", **options)
    remote_close = engine.close

    def close() -> None:
        remote_close()
        jobs.cancel(ws, job.id, wait=False)

    engine.close = close
    engine.job_id = job.id
    return engine


def serve_lmdeploy(
    recipe: Any,
    ws: Workspace | None,
    progress: Callable[..., None],
    should_stop: Callable[[], bool],
    run_dir: Path | str | None,
) -> dict:
    """The serve job's body for backend lmdeploy: run its server until should_stop()."""
    from workbench.models import resolve_model
    from workbench.server import bind

    ws = ws or Workspace()
    command = check_lmdeploy(ws)
    ref = resolve_model(recipe.model, ws)
    if ref.path is None or ref.origin == "adapter":
        raise WorkbenchError(
            f"LMDeploy serves model folders; {recipe.model!r} is "
            + ("an adapter." if ref.origin == "adapter" else "not downloaded."),
            where=f"model {recipe.model!r}",
            fix="Merge the adapter first (Fine-tune → Merge), or prepare the model.",
        )
    port = recipe.port
    if port == 0:
        probe = bind(recipe.host, 0)
        port = probe.getsockname()[1]
        probe.close()
    args = [str(command), "serve", "api_server", str(ref.path), "--server-name", recipe.host]
    args += ["--server-port", str(port), "--model-name", recipe.model]
    if recipe.api_key:
        args += ["--api-keys", recipe.api_key]
    progress(step=0, total=1, message=f"starting LMDeploy for {recipe.model}")
    proc = subprocess.Popen(args)
    url = f"http://{'127.0.0.1' if recipe.host in ('0.0.0.0', '::') else recipe.host}:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise WorkbenchError(
                    f"LMDeploy exited with status {proc.returncode} while starting.",
                    where=" ".join(args),
                    fix="Read the job's log above this line (GPU memory, model format).",
                )
            if should_stop():
                return {"url": url, "stopped": True}
            try:
                headers = {"Authorization": f"Bearer {recipe.api_key}"} if recipe.api_key else {}
                if httpx.get(f"{url}/models", timeout=2.0, headers=headers).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise WorkbenchError(
                    f"LMDeploy did not answer within {START_TIMEOUT_S} s.", where=url
                )
            time.sleep(1.0)
        endpoint = {
            "url": url,
            "model": recipe.model,
            "served_model": recipe.model,
            "host": recipe.host,
            "port": port,
            "backend": "lmdeploy",
            "api_key_required": bool(recipe.api_key),
            "gradio": False,
        }
        if run_dir is not None:
            Path(run_dir, "endpoint.json").write_text(json.dumps(endpoint, indent=2), "utf-8")
        progress(step=1, total=1, message=f"LMDeploy serving at {url}", port=port)
        while proc.poll() is None and not should_stop():
            time.sleep(0.5)
        return {"url": url}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
