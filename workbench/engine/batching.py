"""The decode loop: one thread owns the model and serves every request, a step at a time.

Requests arrive from any thread (`submit`); at each step the loop admits waiting requests into
free cache slots (running their prompts), then advances every active request by one token in a
single batched forward pass. Each request gets its tokens through its own queue, so a slow
reader never holds the others back; a request whose reader went away (`cancel`) leaves its slot
at the next step.

Runners (the model side) implement `prefill(slot, ids) -> logits [V]`,
`decode(tokens, positions) -> logits [S, V]` for the first S slots, `release(slot)` and
`score(rows, starts) -> [TokenScores]`; see lean.py and runners.py.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

DONE = object()


@dataclass
class TokenScores:
    """Scores of a row's tokens from some position on (what a runner's `score` returns).

    logprobs[i]: log-probability of the i-th scored token; greedy_ids[i] and greedy_logprobs[i]:
    the most likely token at that position and its log-probability.
    """

    logprobs: list[float]
    greedy_ids: list[int]
    greedy_logprobs: list[
        float
    ]  # the last item a request's queue receives (after its finish_reason is set)


@dataclass
class Request:
    """One generation: prompt ids in, token ids out through `out`.

    finish_reason becomes "stop" (an end token), "length" (max_new_tokens or the cache end),
    "cancelled" (the reader left), or "error" (then `error` holds the exception).
    """

    ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    end_ids: tuple[int, ...] = ()
    # f(generated ids, logits [V]) -> logits, applied before each choice (constrained decoding)
    logits_processor: Callable[[list[int], torch.Tensor], torch.Tensor] | None = None
    generated_ids: list[int] = field(default_factory=list)
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finish_reason: str = ""
    error: BaseException | None = None
    generated: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    # set by the loop
    slot: int = -1
    position: int = 0
    last: int = 0
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        self.cancelled.set()


def sample(logits: torch.Tensor, request: Request) -> int:
    """Next token from logits [V]: argmax when temperature is 0, else temperature + top-p
    (after the request's logits processor, if it has one)."""
    if request.logits_processor is not None:
        logits = request.logits_processor(request.generated_ids, logits)
    if request.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > request.top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=request.generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=request.generator))


class DecodeLoop:
    """A thread that runs requests on `runner` with up to `runner.slots` at once.

    Stats for the deploy page: `requests_total`, `tokens_total`, `active`, `waiting`.
    """

    def __init__(self, runner: Any, name: str = "workbench-decode") -> None:
        self.runner = runner
        self.lock = threading.Lock()  # held for each step; scoring takes it too
        self._pending: queue.Queue[Request] = queue.Queue()
        self._wake = threading.Event()
        self._closed = False
        self._active: dict[int, Request] = {}
        self.requests_total = 0
        self.tokens_total = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return self._pending.qsize()

    def submit(self, request: Request) -> Request:
        if self._closed:
            raise RuntimeError("the engine is closed")
        self.requests_total += 1
        self._pending.put(request)
        self._wake.set()
        return request

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)

    # --- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            if not self._active and self._pending.empty():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                with self.lock:
                    self._admit()
                    self._step()
            except BaseException as exc:  # noqa: BLE001 - every waiting reader must hear of it
                traceback.print_exc()
                for request in list(self._active.values()):
                    self._finish(request, "error", exc)
        for request in list(self._active.values()):
            self._finish(request, "cancelled")
        while not self._pending.empty():
            self._finish(self._pending.get_nowait(), "cancelled")

    def _free_slot(self) -> int:
        for slot in range(self.runner.slots):
            if slot not in self._active:
                return slot
        return -1

    def _admit(self) -> None:
        while not self._pending.empty():
            slot = self._free_slot()
            if slot < 0:
                return
            request = self._pending.get_nowait()
            if request.cancelled.is_set():
                self._finish(request, "cancelled")
                continue
            request.slot = slot
            request.generator = torch.Generator().manual_seed(request.seed)
            self._active[slot] = request
            try:
                logits = self.runner.prefill(slot, request.ids)
            except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
                self._finish(request, "error", exc)
                continue
            request.position = len(request.ids)
            self._emit(request, sample(logits, request))

    def _step(self) -> None:
        for request in list(self._active.values()):
            if request.cancelled.is_set():
                self._finish(request, "cancelled")
        if not self._active:
            return
        width = max(self._active) + 1
        tokens, positions = [0] * width, [0] * width
        for slot, request in self._active.items():
            tokens[slot], positions[slot] = request.last, request.position
        logits = self.runner.decode(tokens, positions)
        for slot, request in list(self._active.items()):
            request.position += 1
            self._emit(request, sample(logits[slot], request))

    def _emit(self, request: Request, token: int) -> None:
        if request.first_token_s is None:
            request.first_token_s = time.perf_counter() - request.submitted
        request.last = token
        if token in request.end_ids:
            self._finish(request, "stop")
            return
        request.generated += 1
        self.tokens_total += 1
        if request.logits_processor is not None:
            request.generated_ids.append(token)
        request.out.put(token)
        if (
            request.generated >= request.max_new_tokens
            or request.position + 1 >= self.runner.max_len
        ):
            self._finish(request, "length")

    def _finish(self, request: Request, reason: str, error: BaseException | None = None) -> None:
        if request.finish_reason:
            return
        request.finish_reason, request.error = reason, error
        if self._active.get(request.slot) is request:
            del self._active[request.slot]
            self.runner.release(request.slot)
        request.out.put(DONE)
