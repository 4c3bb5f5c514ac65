"""The OpenAI-compatible server: `workbench serve`, and serve jobs from the Deploy page.

    GET  /health                 status, model, requests, tokens, tokens/s, active streams
    GET  /v1/models              the served model
    POST /v1/chat/completions    chat; `stream: true` sends Server-Sent Events ending `data: [DONE]`
    POST /v1/completions         plain text; also `echo` + `logprobs` with max_tokens 0 (scoring)
    /demo                        a Gradio chat demo, with --gradio

Errors are OpenAI-style objects, `{"error": {"message", "type", "param", "code"}}`: 400 for bad
parameters and prompts that are too long, 401 for a missing or wrong key, 404 for an unknown
model or path. The server binds 127.0.0.1 unless told otherwise; SIGINT/SIGTERM (or a job's
cancel) stop it gracefully: no new connections, streams in flight get a few seconds to end.

`run_serve` is the job runner (`ServeRecipe`); `workbench serve` calls the same function in the
foreground. It writes `endpoint.json` into the run folder as soon as the server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from workbench.errors import WorkbenchError
from workbench.generate import GenerationSettings
from workbench.limits import current_limits

ENDPOINT_FILE = "endpoint.json"
SHUTDOWN_GRACE_S = 5
MAX_STOP_STRINGS = 4


class APIError(Exception):
    """An error answered as an OpenAI error object."""

    def __init__(self, status: int, message: str, *, code: str = "", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        kinds = {401: "authentication_error", 404: "not_found_error", 500: "server_error"}
        return {
            "error": {
                "message": self.message,
                "type": kinds.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code or None,
            }
        }


@dataclass
class ServerStats:
    """Counters the Deploy page and /health show."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    errors: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    active: int = 0
    recent: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens) per answer

    def add_tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        now = time.time()
        self.recent.append((now, completion))
        self.recent = [(t, n) for t, n in self.recent if now - t <= 30]

    def tokens_per_s(self, window: float = 30.0) -> float:
        """Answer tokens per second over the last `window` seconds (all streams together)."""
        now = time.time()
        recent = [(t, n) for t, n in self.recent if now - t <= window]
        if not recent:
            return 0.0
        span = max(min(window, now - self.started), 1.0)
        return round(sum(n for _, n in recent) / span, 2)

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "active": self.active,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_s": self.tokens_per_s(),
            "uptime_s": round(time.time() - self.started, 1),
        }


# --- request checking --------------------------------------------------------------------------


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise APIError(
            400,
            f"'{name}' must be a number from {low} to {high}; got {value!r}.",
            code="invalid_value",
            param=name,
        )
    return float(value)


def settings_from(body: dict, *, default_max: int, allow_zero: bool = False) -> GenerationSettings:
    """GenerationSettings from an OpenAI request body; APIError(400) naming a bad parameter."""
    cap = current_limits().max_new_tokens  # demo mode (limits.py)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = default_max if cap is None else min(default_max, cap)
    low = 0 if allow_zero else 1
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < low:
        raise APIError(
            400,
            f"'max_tokens' must be an integer >= {low}; got {max_tokens!r}.",
            code="invalid_value",
            param="max_tokens",
        )
    if cap is not None and max_tokens > cap:
        raise APIError(
            400,
            f"'max_tokens' may be at most {cap} on this demo server; got {max_tokens}.",
            code="invalid_value",
            param="max_tokens",
        )
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, f"'seed' must be an integer; got {seed!r}.", param="seed")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_STRINGS
        or not all(isinstance(s, str) for s in stop)
    ):
        raise APIError(
            400,
            "'stop' must be a string or a list of up to 4 strings.",
            code="invalid_value",
            param="stop",
        )
    n = body.get("n", 1)
    if n != 1:
        raise APIError(400, f"Only n=1 is supported; got {n!r}.", code="invalid_value", param="n")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise APIError(400, "'top_p' must be above 0.", code="invalid_value", param="top_p")
    return GenerationSettings(
        max_new_tokens=max(max_tokens, 1),
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=top_p,
        seed=seed or 0,
        stop=list(stop or []),
    )


def messages_from(body: dict) -> list[dict]:
    """Chat messages with plain string content (text parts of a list are joined)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list.", param="messages")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise APIError(
                400,
                f"messages[{i}] needs a 'role' of system, user or assistant.",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise APIError(
                400, f"messages[{i}].content must be a string.", param=f"messages[{i}].content"
            )
        role = "system" if message["role"] == "developer" else message["role"]
        clean.append({"role": role, "content": content})
    return clean


# --- the app -----------------------------------------------------------------------------------


def build_app(
    engine: Any,
    model_name: str,
    *,
    api_key: str = "",
    stats: ServerStats | None = None,
    default_max_tokens: int = 512,
    gradio: bool = False,
) -> Any:
    """The FastAPI app serving `engine` under the model id `model_name`."""
    import anyio
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    stats = stats or ServerStats()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        # Each open stream waits in a worker thread for its next token: allow many.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 512
        yield

    app = FastAPI(
        title=f"Workbench: {model_name}", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.stats = stats

    def error_response(exc: APIError) -> JSONResponse:
        stats.errors += 1
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else ""
        return error_response(APIError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(APIError(400, str(exc)))

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable) -> Any:
        if request.url.path.startswith("/v1/"):
            stats.requests += 1
            if api_key:
                given = request.headers.get("authorization", "")
                token = given[7:] if given.lower().startswith("bearer ") else ""
                if not secrets.compare_digest(token.encode(), api_key.encode()):
                    return error_response(
                        APIError(
                            401,
                            "Incorrect or missing API key: send 'Authorization: Bearer KEY'.",
                            code="invalid_api_key",
                        )
                    )
        return await call_next(request)

    async def read_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise APIError(400, f"The request body is not valid JSON: {exc}.") from exc
        if not isinstance(body, dict):
            raise APIError(400, "The request body must be a JSON object.")
        model = body.get("model")
        if model not in (None, "", model_name):
            raise APIError(
                404,
                f"The model {model!r} does not exist here; this server serves {model_name!r}.",
                code="model_not_found",
                param="model",
            )
        return body

    def start(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except WorkbenchError as exc:
            too_long = "tokens long" in exc.what
            raise APIError(
                400,
                exc.what,
                code="context_length_exceeded" if too_long else "",
                param="messages" if too_long else None,
            ) from exc

    @app.get("/health")
    async def health() -> dict:
        engine_stats = engine.stats() if hasattr(engine, "stats") else {}
        return {"status": "ok", "model": model_name, **stats.to_dict(), "engine": engine_stats}

    @app.get("/v1/models")
    async def models() -> dict:
        created = int(stats.started)
        entry = {"id": model_name, "object": "model", "created": created, "owned_by": "workbench"}
        return {"object": "list", "data": [entry]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str) -> dict:
        if model_id != model_name:
            raise APIError(404, f"The model {model_id!r} does not exist.", code="model_not_found")
        return {
            "id": model_name,
            "object": "model",
            "created": int(stats.started),
            "owned_by": "workbench",
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await read_body(request)
        settings = settings_from(body, default_max=default_max_tokens)
        messages = messages_from(body)
        stream = start(lambda: engine.chat(messages, settings))
        return await respond(body, stream, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await read_body(request)
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise APIError(
                400, "'prompt' must be a non-empty string or list of strings.", param="prompt"
            )
        settings = settings_from(body, default_max=16, allow_zero=bool(body.get("echo")))
        if body.get("echo") and body.get("logprobs") is not None:
            return await score(body, prompts, settings)
        if len(prompts) > 1:
            if body.get("stream"):
                raise APIError(400, "Streaming takes one prompt.", param="prompt")
            streams = [start(lambda p=p: engine.complete(p, settings)) for p in prompts]
            texts = await asyncio.gather(*(anyio.to_thread.run_sync(s.text) for s in streams))
            return completion_body(body, streams, texts)
        stream = start(lambda: engine.complete(prompts[0], settings))
        return await respond(body, stream, chat=False)

    async def score(body: dict, prompts: list[str], settings: GenerationSettings) -> dict:
        if not hasattr(engine, "prompt_logprobs"):
            raise APIError(
                400, "This engine cannot return prompt log-probabilities.", param="logprobs"
            )
        choices = []
        for i, prompt in enumerate(prompts):
            result = await anyio.to_thread.run_sync(
                lambda p=prompt: start(lambda: engine.prompt_logprobs(p))
            )
            choices.append(
                {"index": i, "text": prompt, "logprobs": result, "finish_reason": "length"}
            )
            stats.add_tokens(len(result["tokens"]), 0)
        usage = {"prompt_tokens": sum(len(c["logprobs"]["tokens"]) for c in choices)}
        usage.update(completion_tokens=0, total_tokens=usage["prompt_tokens"])
        return {
            "id": _id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": choices,
            "usage": usage,
        }

    def usage_of(streams: list[Any]) -> dict:
        prompt = sum(s.prompt_tokens for s in streams)
        completion = sum(s.completion_tokens for s in streams)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def finish(stream: Any) -> str:
        return "length" if stream.finish_reason == "length" else "stop"

    def completion_body(body: dict, streams: list[Any], texts: list[str]) -> dict:
        for s in streams:
            stats.add_tokens(s.prompt_tokens, s.completion_tokens)
        choices = [
            {
                "index": i,
                "text": (body["prompt"][i] if body.get("echo") else "") + text,
                "logprobs": None,
                "finish_reason": finish(s),
            }
            for i, (s, text) in enumerate(zip(streams, texts, strict=True))
        ]
        return {
            "id": _id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": choices,
            "usage": usage_of(streams),
        }

    async def respond(body: dict, stream: Any, *, chat: bool) -> Any:
        created, ident = int(time.time()), _id("chatcmpl" if chat else "cmpl")
        kind = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            stats.active += 1
            try:
                text = await anyio.to_thread.run_sync(stream.text)
            finally:
                stats.active -= 1
            stats.add_tokens(stream.prompt_tokens, stream.completion_tokens)
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish(stream),
                }
            else:
                prefix = body["prompt"] if body.get("echo") else ""
                choice = {
                    "index": 0,
                    "text": prefix + text,
                    "logprobs": None,
                    "finish_reason": finish(stream),
                }
            return {
                "id": ident,
                "object": kind,
                "created": created,
                "model": model_name,
                "choices": [choice],
                "usage": usage_of([stream]),
            }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk_kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, reason: str | None = None, first: bool = False) -> str:
            if chat:
                content = {"role": "assistant", "content": ""} if first else {}
                if delta:
                    content["content"] = delta
                choice = {"index": 0, "delta": content, "logprobs": None, "finish_reason": reason}
            else:
                choice = {
                    "index": 0,
                    "text": delta or "",
                    "logprobs": None,
                    "finish_reason": reason,
                }
            data = {
                "id": ident,
                "object": chunk_kind,
                "created": created,
                "model": model_name,
                "choices": [choice],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            stats.active += 1
            done = False
            try:
                if chat:
                    yield chunk(None, first=True)
                while True:
                    piece = await anyio.to_thread.run_sync(next, stream, None)
                    if piece is None:
                        break
                    yield chunk(piece)
                yield chunk(None, finish(stream))
                if include_usage:
                    data = {
                        "id": ident,
                        "object": chunk_kind,
                        "created": created,
                        "model": model_name,
                        "choices": [],
                        "usage": usage_of([stream]),
                    }
                    yield f"data: {json.dumps(data)}\n\n"
                yield "data: [DONE]\n\n"
                done = True
            except WorkbenchError as exc:
                stats.errors += 1
                yield f"data: {json.dumps(APIError(500, exc.what).body())}\n\n"
            finally:
                stats.active -= 1
                stats.add_tokens(stream.prompt_tokens, stream.completion_tokens)
                if not done:
                    stream.abort()  # the client left: free its slot

        return _EventStream(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    if gradio:
        from workbench.demo import mount_demo

        app = mount_demo(app, engine, model_name)
    return app


class _EventStream(StreamingResponse):
    """Server-Sent Events whose generator is always closed, also when the client hung up (the
    send fails and Starlette leaves the generator suspended): its `finally` frees the slot."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def _id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# --- running it --------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one).

    Raises:
        WorkbenchError: the port is taken or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WorkbenchError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            where=f"--host {host} --port {port}",
            fix="Another server probably uses that port: choose another (--port 8001, or 0 "
            "for any free port), or stop the other server (Deploy page, `workbench jobs list`).",
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_serve(
    recipe: Any,
    *,
    workspace: Any = None,
    progress: Callable[..., None],
    should_stop: Callable[[], bool],
    run_dir: Path | str | None = None,
    job_id: str = "",
) -> dict:
    """Job runner for `ServeRecipe`: serve until `should_stop()`; returns the totals.

    Progress events every two seconds carry requests, active streams and tokens/s; the
    run folder's endpoint.json says where the server listens.
    """
    from workbench.engine import open_engine

    if recipe.backend == "lmdeploy":
        from workbench.engine.lmdeploy import serve_lmdeploy

        return serve_lmdeploy(recipe, workspace, progress, should_stop, run_dir)
    progress(step=0, total=1, message=f"loading {recipe.model}")
    engine = open_engine(
        recipe.model,
        workspace,
        device=recipe.device,
        dtype=recipe.dtype,
        weights=recipe.weights,
        slots=recipe.slots,
        max_len=recipe.max_len,
        trust_remote_code=recipe.trust_remote_code,
    )
    stats = ServerStats()
    app = build_app(engine, recipe.model, api_key=recipe.api_key, stats=stats, gradio=recipe.gradio)
    try:
        return serve_app(app, recipe, stats, progress, should_stop, run_dir, engine)
    finally:
        engine.close()


def serve_app(
    app: Any,
    recipe: Any,
    stats: ServerStats,
    progress: Callable[..., None],
    should_stop: Callable[[], bool],
    run_dir: Path | str | None,
    engine: Any = None,
) -> dict:
    """Run `app` with uvicorn in a thread until `should_stop()`, then shut down gracefully."""
    import uvicorn

    sock = bind(recipe.host, recipe.port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="uvicorn", daemon=True
    )
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.05)
    shown_host = "127.0.0.1" if recipe.host in ("0.0.0.0", "::") else recipe.host
    url = f"http://{shown_host}:{port}/v1"
    endpoint = {
        "url": url,
        "model": recipe.model,
        "served_model": recipe.model,
        "host": recipe.host,
        "port": port,
        "api_key_required": bool(recipe.api_key),
        "gradio": bool(recipe.gradio),
        "backend": "local",
        "path": getattr(engine, "path", ""),
    }
    if run_dir is not None:
        Path(run_dir, ENDPOINT_FILE).write_text(json.dumps(endpoint, indent=2), "utf-8")
    progress(step=1, total=1, message=f"serving at {url}", port=port, url=url)
    try:
        next_report = 0.0
        while thread.is_alive() and not should_stop():
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + 2.0
                progress(
                    message=f"serving at {url}",
                    requests=stats.requests,
                    active=stats.active,
                    completion_tokens=stats.completion_tokens,
                    tokens_per_s=stats.tokens_per_s(),
                )
            time.sleep(0.1)
    finally:
        server.should_exit = True
        thread.join(timeout=SHUTDOWN_GRACE_S + 5)
        sock.close()
    return {"url": url, **stats.to_dict()}
