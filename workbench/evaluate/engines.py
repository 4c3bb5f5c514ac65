"""The engine evaluation talks to: chat through `workbench.engine`, log-likelihoods with the
shared question prefix computed once.

Evaluation asks a model for two things: chat answers (generation, identity, judge) and
log-likelihoods (multiple choice, perplexity). `EvalEngine` opens what a run needs, when it is
first needed:

    chat            `workbench.engine.open_engine(name)`: the project's engine (a local model's
                    lean decode loop, or a remote "openai:URL#model" server);
    loglikelihood   local models: `scoring.score_requests` on the Hugging Face model from
                    `models.load_model` (each question's context runs once for all its
                    choices); remote models: the remote engine's own `loglikelihood`.

A local model loaded for scoring is handed to the chat engine too (`loaded=`), so it is read
from disk once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from workbench.errors import WorkbenchError
from workbench.evaluate.scoring import score_requests
from workbench.workspace import Workspace


def is_remote(name: str) -> bool:
    """True for names served elsewhere ("openai:URL#model", "lmdeploy:..."), not loaded here."""
    if importlib.util.find_spec("workbench.engine") is None:
        return name.strip().startswith(("openai:", "lmdeploy:"))
    from workbench.engine import parse_engine_name

    return parse_engine_name(name.strip())[0] != "local"


class EvalEngine:
    """Chat and log-likelihoods for one model, each part opened on first use."""

    def __init__(
        self,
        name: str,
        ws: Workspace,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
    ) -> None:
        self.name, self.ws = name, ws
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.remote = is_remote(name)
        self._loaded: Any = None
        self._engine: Any = None

    def loaded(self) -> Any:
        """The local Hugging Face model and tokenizer (a `LoadedModel`), loaded once."""
        if self._loaded is None:
            from workbench.models import load_model

            self._loaded = load_model(self.name, self.ws, device=self.device, dtype=self.dtype)
        return self._loaded

    def engine(self) -> Any:
        """The project engine for chat, opened once."""
        if self._engine is None:
            if importlib.util.find_spec("workbench.engine") is None:
                if self.remote:
                    raise WorkbenchError(
                        f"Remote model {self.name!r} needs workbench.engine, which is missing.",
                        where=f"model {self.name!r}",
                        fix="Update Workbench, or evaluate a local model.",
                    )
                self._engine = _PlainChat(self.loaded())
                return self._engine
            from workbench.engine import open_engine

            options: dict[str, Any] = {}
            if not self.remote:
                options = {"device": self.device, "dtype": self.dtype}
                if self._loaded is not None and not type(self._loaded.model).__name__.startswith(
                    "Peft"  # the engine merges adapters in place; keep the scoring copy intact
                ):
                    options["loaded"] = self._loaded
            self._engine = open_engine(self.name, self.ws, **options)
        return self._engine

    def prepare(self, *, chat: bool, score: bool) -> None:
        """Open the parts a run needs now, so a model that cannot load fails before any task."""
        if score and not self.remote:
            self.loaded()
        if chat or (score and self.remote):
            self.engine()

    def chat(self, messages: list[dict], settings: Any) -> Iterator[str]:
        return self.engine().chat(messages, settings)

    def complete(self, prompt: str, settings: Any) -> Iterator[str]:
        return self.engine().complete(prompt, settings)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        if self.remote:
            return self.engine().loglikelihood(requests)
        loaded = self.loaded()
        return score_requests(loaded.model, loaded.tokenizer, requests, batch_size=self.batch_size)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine = self._loaded = None


class _PlainChat:
    """Chat with `generate.stream_chat` (only where workbench.engine is not installed)."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded

    def chat(self, messages: list[dict], settings: Any) -> Iterator[str]:
        from workbench.generate import stream_chat

        return stream_chat(self.loaded, messages, settings)

    def complete(self, prompt: str, settings: Any) -> Iterator[str]:
        raise WorkbenchError("Plain completion needs workbench.engine.", where=self.loaded.ref.name)

    def close(self) -> None:
        self.loaded = None
