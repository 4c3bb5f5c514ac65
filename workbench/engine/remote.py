"""The remote engine: any OpenAI-compatible server over HTTP (our own, LMDeploy, vLLM, Ollama).

    open_remote("http://127.0.0.1:8000/v1#default", api_key="secret")

The part after `#` names the model on that server; without it the server's first model is used.
Chat and completion stream through Server-Sent Events; log-likelihoods come from
`/v1/completions` with `echo` and `logprobs` (our server, vLLM and LMDeploy's PyTorch engine
answer it; servers that do not get a clear error).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx

from workbench.engine.stream import TextStream
from workbench.errors import InvalidInput, WorkbenchError
from workbench.generate import GenerationSettings

SCORE_BATCH = 16
ENDPOINT_FORM = "openai:http://HOST:PORT/v1#MODEL (the #MODEL part is optional)"


def split_endpoint(target: str) -> tuple[str, str]:
    """("http://host:port/v1", "model") from "http://host:port/v1#model"; checks the URL."""
    url, _, model = target.strip().partition("#")
    url = url.rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(
            f"{url!r} is not an http(s) URL.",
            where="endpoint",
            fix=f"Write it as {ENDPOINT_FORM}, e.g. openai:http://127.0.0.1:8000/v1#default.",
        )
    if not parsed.path.rstrip("/").endswith("/v1"):
        url += "/v1"
    return url, model.strip()


def open_remote(target: str, *, api_key: str = "", timeout: float = 600.0) -> RemoteEngine:
    """Connect to the server at `target` ("URL#model") and check that it answers."""
    url, model = split_endpoint(target)
    engine = RemoteEngine(url, model, api_key=api_key, timeout=timeout)
    engine.model = model or engine.first_model()
    return engine


class RemoteEngine:
    """An OpenAI-compatible endpoint behind the Engine protocol."""

    backend = "remote"

    def __init__(self, url: str, model: str, *, api_key: str = "", timeout: float = 600.0):
        self.url, self.model, self.name = url, model, f"openai:{url}#{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )

    def first_model(self) -> str:
        data = self._json("GET", "/models")
        models = [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]
        if not models:
            raise WorkbenchError(
                f"The server at {self.url} lists no model.",
                where=f"{self.url}/models",
                fix=f"Name the model: {ENDPOINT_FORM}.",
            )
        return models[0]

    def models(self) -> list[str]:
        data = self._json("GET", "/models")
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]

    # --- the protocol ------------------------------------------------------------------------

    def chat(self, messages: list[dict], settings: GenerationSettings) -> TextStream:
        body = {"messages": messages, **self._params(settings)}
        return self._open("/chat/completions", body, settings, chat=True)

    def complete(self, prompt: str, settings: GenerationSettings) -> TextStream:
        body = {"prompt": prompt, **self._params(settings)}
        return self._open("/completions", body, settings, chat=False)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        results = []
        for first in range(0, len(requests), SCORE_BATCH):
            batch = requests[first : first + SCORE_BATCH]
            body = {
                "model": self.model,
                "prompt": [context + continuation for context, continuation in batch],
                "max_tokens": 0,
                "echo": True,
                "logprobs": 1,
                "temperature": 0.0,
            }
            data = self._json("POST", "/completions", body)
            choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
            if len(choices) != len(batch):
                raise self._no_logprobs(f"it returned {len(choices)} choices for {len(batch)}")
            for (context, _), choice in zip(batch, choices, strict=True):
                results.append(self._continuation_score(choice, len(context)))
        return results

    def close(self) -> None:
        self.client.close()

    # --- helpers -----------------------------------------------------------------------------

    def _params(self, settings: GenerationSettings) -> dict:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if settings.stop:
            params["stop"] = list(settings.stop)
        return params

    def _open(self, path: str, body: dict, settings: GenerationSettings, *, chat: bool):
        live: dict[str, httpx.Response] = {}

        def abort() -> None:
            if "response" in live:
                live["response"].close()  # the server sees the client leave and frees the slot

        return TextStream(
            lambda stream: self._stream(path, body, stream, live, chat=chat),
            stop=settings.stop,
            on_abort=abort,
        )

    def _stream(
        self, path: str, body: dict, stream: TextStream, live: dict, *, chat: bool
    ) -> Iterator[str]:
        try:
            with self.client.stream("POST", path, json=body) as response:
                live["response"] = response
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        raise self._error_from(chunk, path)
                    usage = chunk.get("usage") or {}
                    if usage:
                        stream.prompt_tokens = usage.get("prompt_tokens", 0)
                        stream.completion_tokens = usage.get("completion_tokens", 0)
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") if chat else None
                        piece = piece if chat else choice.get("text")
                        if piece:
                            if not usage:
                                stream.completion_tokens += 1  # until the server's count
                            yield piece
                        if choice.get("finish_reason"):
                            stream.set_finish(choice["finish_reason"])
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._http_error(response)
        try:
            return response.json()
        except ValueError as exc:
            raise WorkbenchError(
                f"The server at {self.url} answered {path} with something that is not JSON.",
                where=f"{self.url}{path}",
                fix="Check that the URL points at an OpenAI-compatible API (it usually ends "
                "in /v1).",
            ) from exc

    def _continuation_score(self, choice: dict, context_chars: int) -> tuple[float, bool]:
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens")
        values = logprobs.get("token_logprobs")
        offsets = logprobs.get("text_offset")
        tops = logprobs.get("top_logprobs")
        if not tokens or values is None or offsets is None or tops is None:
            raise self._no_logprobs("its answer has no prompt log-probabilities")
        first = next(
            (
                i
                for i, (t, o) in enumerate(zip(tokens, offsets, strict=False))
                if o + len(t) > context_chars
            ),
            None,
        )
        if first is None or first == 0:
            raise self._no_logprobs("the continuation's tokens could not be found")
        total, greedy = 0.0, True
        for token, value, top in zip(tokens[first:], values[first:], tops[first:], strict=True):
            total += float(value)
            if top:
                best = max(top.values())
                greedy = greedy and float(value) >= best - 1e-6 and token in top
        return total, greedy

    def _no_logprobs(self, reason: str) -> WorkbenchError:
        return WorkbenchError(
            f"The server at {self.url} cannot score continuations: {reason}.",
            where=f"{self.url}/completions (echo + logprobs)",
            fix="Log-likelihood tasks need a server that returns prompt log-probabilities "
            "(Workbench's own `workbench serve`, vLLM, LMDeploy's PyTorch engine); use "
            "generation tasks with this endpoint, or evaluate the model locally.",
        )

    def _http_error(self, response: httpx.Response) -> WorkbenchError:
        try:
            data = response.json()
        except ValueError:
            data = {}
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        fixes = {
            401: "Give the right API key (the server was started with --api-key).",
            404: f"Check the model name after '#': {ENDPOINT_FORM}.",
        }
        return WorkbenchError(
            f"The server at {self.url} refused the request (HTTP {response.status_code}): "
            f"{message or response.text[:200] or 'no details'}",
            where=str(response.request.url),
            fix=fixes.get(response.status_code, "Read the message above; check the request."),
        )

    def _error_from(self, chunk: dict, path: str) -> WorkbenchError:
        error = chunk.get("error") or {}
        return WorkbenchError(
            f"The server at {self.url} failed mid-answer: {error.get('message', error)}",
            where=f"{self.url}{path}",
            fix="Try again; if it repeats, look at the server's log.",
        )

    def _unreachable(self, exc: Exception) -> WorkbenchError:
        return WorkbenchError(
            f"Cannot reach the server at {self.url}: {type(exc).__name__}: {exc}",
            where=self.url,
            fix="Check that the server runs (`workbench serve`, or the Deploy page) and that "
            "the host and port are right.",
        )
