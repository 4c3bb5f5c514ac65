"""TextStream: the answer as it is produced, plus what a server reports about it afterwards.

Every backend's `chat` and `complete` return one. It is an iterator of text pieces (so code that
only wants text just loops over it); once the loop ends it also tells the token counts, why the
answer ended and how long it took. Closing it early (a stop button, a client that hung up)
cancels the generation and frees its slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from workbench.generate import _StopCutter


class TextStream:
    """Iterator of text pieces with usage facts filled in as it runs.

    `pieces(stream)` makes the backend's generator of raw pieces; it fills in the counts and
    calls `stream.set_finish(reason)` before it ends. Stop strings are cut here.

    Attributes:
        prompt_tokens, completion_tokens: token counts (0 where a remote server does not say).
        finish_reason: "stop" (end of turn or a stop string), "length", "cancelled", or "" while
            running.
        token_ids: the generated ids (local engines only).
        first_token_s: seconds from the call to the first piece.
        seconds: seconds from the call to the end.
    """

    def __init__(
        self,
        pieces: Callable[[TextStream], Iterator[str]],
        *,
        stop: list[str] | None = None,
        on_close: Callable[[], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        prompt_tokens: int = 0,
    ) -> None:
        self._source = pieces(self)  # a generator: nothing runs before the first read
        self._cut = _StopCutter(stop or [])
        self._on_close = on_close
        self._on_abort = on_abort
        self._started = time.perf_counter()
        self._gen = self._run()
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason = ""
        self.token_ids: list[int] = []
        self.first_token_s: float | None = None
        self.seconds = 0.0

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    @property
    def tokens_per_s(self) -> float:
        busy = self.seconds - (self.first_token_s or 0.0)
        return round((self.completion_tokens - 1) / busy, 2) if busy > 0 else 0.0

    def text(self) -> str:
        """Read the whole answer (what is left of it)."""
        return "".join(self)

    def close(self) -> None:
        """Stop generating; the pieces already read stay valid."""
        self._gen.close()

    def abort(self) -> None:
        """Cancel from another thread (one that may be blocked reading): the generation stops
        at its next step and the reader sees the stream end."""
        if self._on_abort is not None:
            self._on_abort()

    def _run(self) -> Iterator[str]:
        try:
            for piece in self._source:
                out = self._cut.feed(piece)
                if out:
                    if self.first_token_s is None:
                        self.first_token_s = time.perf_counter() - self._started
                    yield out
                if self._cut.hit:
                    self.finish_reason = "stop"
                    break
            tail = self._cut.flush()
            if tail:
                yield tail
        finally:
            if not self.finish_reason:
                self.finish_reason = "cancelled"
            self.seconds = time.perf_counter() - self._started
            if self.first_token_s is None:
                self.first_token_s = self.seconds
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            if self._on_close is not None:
                self._on_close()

    def set_finish(self, reason: str) -> None:
        """Backends call this as their source ends (before the stream's own bookkeeping)."""
        if not self.finish_reason:
            self.finish_reason = reason


def stream_together(streams: list[TextStream], poll_s: float = 0.1) -> Iterator[list[str]]:
    """Read several streams at once (one thread each) and yield everyone's text so far, every
    `poll_s` seconds and once more at the end: the arena shows answers growing side by side.

    Errors end that stream's text with a line that says what went wrong; closing the iterator
    aborts every stream still running.
    """
    import threading

    texts = [""] * len(streams)
    done = [threading.Event() for _ in streams]

    def read(i: int) -> None:
        try:
            for piece in streams[i]:
                texts[i] += piece
        except Exception as exc:  # noqa: BLE001 - shown in place of the answer
            texts[i] += f"\n\n[{getattr(exc, 'what', None) or exc}]"
        finally:
            done[i].set()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(streams))]
    for thread in threads:
        thread.start()
    try:
        while not all(d.is_set() for d in done):
            time.sleep(poll_s)
            yield list(texts)
        yield list(texts)
    finally:
        for stream in streams:
            stream.abort()
