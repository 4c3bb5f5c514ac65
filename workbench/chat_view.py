"""What the Chat and Deploy pages show, computed here so the pages stay thin.

Model choices (workspace models and running servers), generation settings from widgets, answer
statistics, the endpoints of serve jobs with their live numbers, and copy-paste snippets.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput
from workbench.generate import GenerationSettings
from workbench.workspace import Workspace

SERVE_KIND = "serve"


def local_models(ws: Workspace) -> list[str]:
    """Names of models and adapters the local engine can open: "default" first."""
    from workbench.models import list_models

    names = [row["name"] for row in list_models(ws)]
    names += [m.name for m in ws.list("adapter")]
    return list(dict.fromkeys(names))


def serve_jobs(ws: Workspace, limit: int = 20) -> list[dict]:
    """Serve jobs, newest first, each with its endpoint (once it listens) and live numbers.

    Row keys: job (the Job), endpoint (dict or {}), engine_name ("openai:URL#model" or ""),
    requests, active, tokens_per_s, completion_tokens.
    """
    from workbench.jobs import latest_progress, list_jobs

    rows = []
    for job in list_jobs(ws, limit=200):
        if job.kind != SERVE_KIND:
            continue
        endpoint = read_endpoint(job.run_dir) if job.status == "running" else {}
        metrics = latest_progress(job)["metrics"] if job.active else {}
        rows.append(
            {
                "job": job,
                "endpoint": endpoint,
                "engine_name": (
                    f"openai:{endpoint['url']}#{endpoint['served_model']}" if endpoint else ""
                ),
                "requests": metrics.get("requests", 0),
                "active": metrics.get("active", 0),
                "tokens_per_s": metrics.get("tokens_per_s", 0.0),
                "completion_tokens": metrics.get("completion_tokens", 0),
            }
        )
        if len(rows) >= limit:
            break
    return rows


def read_endpoint(run_dir: Path | str) -> dict:
    try:
        return json.loads(Path(run_dir, "endpoint.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def engine_choices(ws: Workspace) -> list[str]:
    """Everything the chat page can talk to: local models, then running servers."""
    running = [row["engine_name"] for row in serve_jobs(ws) if row["engine_name"]]
    return local_models(ws) + running


def settings_from(
    max_new_tokens: int, temperature: float, top_p: float, seed: int, stop_text: str
) -> GenerationSettings:
    """GenerationSettings from the page's widgets; stop strings one per line."""
    stop = [line for line in stop_text.splitlines() if line]
    return GenerationSettings(
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_p=float(top_p),
        seed=int(seed),
        stop=stop,
    )


def answer_stats(stream: Any) -> dict:
    """Tokens, speed, time to first token and why it ended, for the line under an answer."""
    return {
        "tokens": stream.completion_tokens,
        "tokens_per_s": stream.tokens_per_s,
        "first_token_s": round(stream.first_token_s or 0.0, 2),
        "finish": stream.finish_reason,
    }


def snippets(url: str, model: str, api_key: str = "") -> dict[str, str]:
    """curl, openai-Python and CLI snippets for an endpoint ("url" ends in /v1)."""
    key = api_key or "none"
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "stream": True},
        ensure_ascii=False,
    )
    auth = f" \\\n  -H 'Authorization: Bearer {api_key}'" if api_key else ""
    curl = (
        f"curl -N {url}/chat/completions \\\n  -H 'Content-Type: application/json'{auth} \\\n"
        f"  -d {shlex.quote(body)}"
    )
    python = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}", api_key="{key}")\n'
        "stream = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        '    messages=[{"role": "user", "content": "Hello!"}],\n'
        "    stream=True,\n"
        ")\n"
        "for chunk in stream:\n"
        '    print(chunk.choices[0].delta.content or "", end="", flush=True)\n'
    )
    engine = f"openai:{url}#{model}"
    return {"curl": curl, "python": python, "engine": engine}


def serve_command(recipe: Any) -> str:
    """The `workbench serve` command line that starts the same server."""
    parts = ["workbench", "serve", "--model", recipe.model]
    if recipe.host != "127.0.0.1":
        parts += ["--host", recipe.host]
    parts += ["--port", str(recipe.port)]
    if recipe.api_key:
        parts += ["--api-key", "***"]
    if recipe.gradio:
        parts.append("--gradio")
    if recipe.weights != "auto":
        parts += ["--weights", recipe.weights]
    if recipe.slots != 8:
        parts += ["--slots", str(recipe.slots)]
    return shlex.join(parts)


def port_in_use(ws: Workspace, port: int) -> str:
    """Id of an active serve job that asked for `port`, or ""."""
    from workbench.jobs import job_recipe

    for row in serve_jobs(ws):
        if row["job"].active and port and job_recipe(row["job"]).port == port:
            return row["job"].id
    return ""


def refuse_port(ws: Workspace, port: int) -> None:
    job_id = port_in_use(ws, port)
    if job_id:
        raise InvalidInput(
            f"Port {port} is already used by server job {job_id}.",
            where="port",
            fix="Choose another port, or stop that server first.",
        )
