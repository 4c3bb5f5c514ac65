"""Generation engines: one interface for chat, evaluation and agents, several backends.

    engine = open_engine("default")                       # local: a workspace model, a folder
    engine = open_engine("openai:http://127.0.0.1:8000/v1#default", api_key="...")  # remote
    engine = open_engine("lmdeploy:internlm2-merged")     # lmdeploy server on a GPU (a job)
    for piece in engine.chat([{"role": "user", "content": "Hi"}], GenerationSettings()):
        print(piece, end="")
    engine.loglikelihood([("The capital of France is", " Paris")])  # [(-1.2, True)]
    engine.close()

`chat` and `complete` return a `TextStream` (an iterator of text pieces that also reports
prompt_tokens, completion_tokens, finish_reason and timing once read). Backends are chosen by
the name's prefix (`BACKENDS`); a name without a prefix is a local model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from workbench.generate import GenerationSettings
from workbench.workspace import Workspace

__all__ = [
    "BACKENDS",
    "Engine",
    "GenerationSettings",
    "open_engine",
    "parse_engine_name",
    "shared_engine",
]


@runtime_checkable
class Engine(Protocol):
    """What every backend offers.

    Attributes:
        name: the name it was opened with.
    """

    name: str

    def chat(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to chat messages ({"role", "content"} dicts)."""
        ...

    def complete(self, prompt: str, settings: GenerationSettings) -> Iterator[str]:
        """Stream the plain continuation of `prompt`."""
        ...

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """For each (context, continuation): the summed log-probability of the continuation's
        tokens, and whether greedy decoding would produce exactly the continuation."""
        ...

    def close(self) -> None:
        """Free the model or the server behind it."""
        ...


def _open_local(target: str, ws: Workspace | None, **options: Any) -> Engine:
    from workbench.engine.local import open_local

    return open_local(target, ws, **options)


def _open_remote(target: str, ws: Workspace | None, **options: Any) -> Engine:
    from workbench.engine.remote import open_remote

    return open_remote(target, **options)


def _open_lmdeploy(target: str, ws: Workspace | None, **options: Any) -> Engine:
    from workbench.engine.lmdeploy import open_lmdeploy

    return open_lmdeploy(target, ws, **options)


BACKENDS: dict[str, Callable[..., Engine]] = {
    "local": _open_local,
    "openai": _open_remote,
    "lmdeploy": _open_lmdeploy,
}


def parse_engine_name(name: str) -> tuple[str, str]:
    """(backend, target): "openai:URL#model" -> ("openai", "URL#model"); "x" -> ("local", "x").

    Only the prefixes in BACKENDS count, so a Windows path "C:\\models" or a hub id stays local.
    """
    prefix, sep, rest = name.partition(":")
    if sep and prefix in BACKENDS and prefix != "local":
        return prefix, rest
    if sep and prefix == "local":
        return "local", rest
    return "local", name


def open_engine(name: str, ws: Workspace | None = None, **options: Any) -> Engine:
    """Open the engine that `name` points at.

    Args:
        name: a workspace model, "default" or a local folder (local backend);
            "openai:URL#model" (any OpenAI-compatible server; options may carry api_key);
            "lmdeploy:MODEL" (starts an LMDeploy server on a GPU machine).
        ws: the workspace (WORKBENCH_HOME when None).
        options: backend options (local: device, dtype, weights, slots, max_len,
            trust_remote_code; remote: api_key, timeout).

    Raises:
        WorkbenchError: the model cannot be found or loaded, the endpoint is malformed or
            unreachable, or the backend cannot run on this machine.
    """
    backend, target = parse_engine_name(name.strip())
    engine = BACKENDS[backend](target, ws, **options)
    engine.name = name
    return engine


_SHARED: dict[tuple[str, str, str], Engine] = {}
_SHARED_LOCK = threading.Lock()  # held only to look up and update _SHARED, never to load
_LOADING: dict[tuple[str, str, str], threading.Lock] = {}  # one load at a time per model
SHARED_MAX = 4


def _busy(engine: Engine) -> bool:
    """Whether some session is being answered by (or waits for) this engine."""
    loop = getattr(engine, "loop", None)
    return bool(loop is not None and (loop.active or loop.waiting))


def shared_engine(name: str, ws: Workspace | None = None, *, api_key: str = "") -> Engine:
    """One open engine per model for the whole process (the app's pages and all its users);
    when more than SHARED_MAX are open, the least recently used idle ones are closed (never one
    that is answering someone). Local engines get 4 slots, so a classroom's questions are
    batched together. Loading a model blocks only the sessions that asked for that model."""
    ws = ws or Workspace()
    owner = ws.catalogue if ws.catalogue is not None and ws.in_catalogue(name) else ws
    key = (name, api_key, str(owner.root))  # a class shares one engine per catalogue model
    with _SHARED_LOCK:
        engine = _SHARED.pop(key, None)
        if engine is not None:
            _SHARED[key] = engine  # most recently used last
            return engine
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        with _SHARED_LOCK:
            engine = _SHARED.get(key)  # loaded by the session this one waited for
        if engine is None:
            backend, _ = parse_engine_name(name)
            options = {"api_key": api_key} if backend == "openai" else {"slots": 4}
            engine = open_engine(name, ws, **options)
        with _SHARED_LOCK:
            _SHARED.pop(key, None)
            _SHARED[key] = engine
            _LOADING.pop(key, None)
            idle = [k for k, e in _SHARED.items() if k != key and not _busy(e)]
            while len(_SHARED) > SHARED_MAX and idle:
                _SHARED.pop(idle.pop(0)).close()
        return engine
