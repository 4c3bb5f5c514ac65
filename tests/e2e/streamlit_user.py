"""A simulated user of a Streamlit app that speaks the browser's websocket protocol.

What the server sees from a browser tab, without a browser's CPU: one websocket to
`/_stcore/stream`, `BackMsg.rerun_script` requests (open a page, switch pages in the same
session as a sidebar click does, submit a chat message), and the `ForwardMsg` stream back — the
page's elements, `script_finished`, and the `auto_rerun` timers of `st.fragment(run_every=...)`,
which this client keeps running like the browser does (dropped on a page change and at the
start of every full run, kept through fragment runs). The messages are Streamlit's own
protobufs (`streamlit.proto`); the protocol was read from streamlit 1.67's
`web/server/starlette/starlette_websocket.py` and `runtime/app_session.py`, and the timer
handling from its frontend bundle (`handleAutoRerun`, `cleanupAutoReruns`).

Not every run that ends answers the client's last request: the app starts full runs of its own
(a fragment that calls `st.rerun()`, as the sidebar's job box does when a job ends), and such a
run can end while the client is thinking or just before the server takes the client's request.
So a request waits for the end of a full run that started after it was sent (by the server's
`script_run_id` on `new_session` and `script_finished`) and that shows what was asked for: the
page that was opened, or the question that was typed with an answer after it.

    user = await StreamlitUser.connect("http://127.0.0.1:8501", page="")  # Home
    run = await user.open_page("jobs")           # same session, like a sidebar click
    run.title, run.seconds, run.exceptions
    answer = await user.chat("What is a CPU?")   # on the chat page
    await user.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Common_pb2 import ChatInputValue
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
from websockets.asyncio.client import connect as ws_connect

Path = tuple[int, ...]  # a delta path: root container, then the index in each nested block


@dataclass
class PageRun:
    """One full run of the app script as the client saw it when `script_finished` arrived."""

    page: str  # url path of the page that ran ("" for the default page)
    seconds: float  # request sent -> script_finished, as a user waits for it
    title: str  # the first h1 on the page
    exceptions: list[str]  # exception boxes (st.exception or an uncaught error)
    error_boxes: list[str]  # st.error boxes
    compile_error: str = ""  # the script did not compile
    run_id: str = ""  # the server's script_run_id


@dataclass
class _Tree:
    """The page as the client holds it: elements and blocks by delta path."""

    elements: dict[Path, object] = field(default_factory=dict)
    blocks: dict[Path, object] = field(default_factory=dict)

    def clear(self) -> None:
        self.elements.clear()
        self.blocks.clear()

    def copy(self) -> _Tree:
        return _Tree(dict(self.elements), dict(self.blocks))

    def of_type(self, kind: str) -> list[tuple[Path, object]]:
        return [
            (path, e) for path, e in sorted(self.elements.items()) if e.WhichOneof("type") == kind
        ]


class StreamlitUser:
    """One browser session, simulated: see the module docstring."""

    def __init__(self, base_url: str, query: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.query = query
        self.tree = _Tree()
        self.pages: dict[str, str] = {}  # url path -> page script hash (from `navigation`)
        self.page_hash = ""
        self.page = ""
        self.session_id = ""
        self.auto_reruns = 0  # fragment reruns this client asked for, as a browser's timers do
        self.other_runs = 0  # full runs that ended while a request waited, not its answer
        self.waiting_for = ""  # what the client waits for now ("" when it does not wait)
        self.closed_reason = ""
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._timers: dict[str, asyncio.Task] = {}
        self._intervals: dict[str, float] = {}
        self._finished: asyncio.Queue = asyncio.Queue()  # (status, run id, page then) or None
        self._cache: dict[str, ForwardMsg] = {}  # hash -> message, for `ref_hash` replies
        self._compile_error = ""
        self._started: set[str] = set()  # script_run_ids whose new_session came
        self._run_pages: dict[str, str] = {}  # full run id -> its page script hash
        self._run_id = ""  # the full run the page is drawn by
        self._running_since: float | None = None  # a full run started and has not ended
        self._question = ""  # the chat question being waited for

    @classmethod
    async def connect(
        cls, base_url: str, page: str = "", query: str = "", timeout: float = 300
    ) -> tuple[StreamlitUser, PageRun]:
        """Open a session on `page` (its url path, "" for the default page) as a new tab does.

        Returns:
            The user and the first run of the page.
        Raises:
            TimeoutError: the run did not finish within `timeout` seconds.
            ConnectionError: the server closed the websocket.
        """
        user = cls(base_url, query)
        url = user.base_url.replace("http", "ws", 1) + "/_stcore/stream"
        # No keepalive pings: a browser sends none, and a busy server that answers one late
        # would have this client hang up where a browser waits.
        user._ws = await ws_connect(
            url,
            subprotocols=["streamlit"],
            max_size=None,
            open_timeout=timeout,
            ping_interval=None,
        )
        user._reader = asyncio.create_task(user._read())
        user.page = page
        start = time.monotonic()
        sent = await user._send_rerun(page_name=page)
        run, _ = await user._wait_run(start, timeout, sent, f"page /{page}")
        return user, run

    async def open_page(self, page: str, timeout: float = 300) -> PageRun:
        """Switch this session to the page at url path `page`, as a click in the sidebar does."""
        if page not in self.pages:
            raise KeyError(f"no page {page!r}; the app has {sorted(self.pages)}")
        self.page = page
        self.query = ""  # a browser drops the query string when the page changes
        self._stop_timers()  # as the browser does; the new page's run starts its own
        wanted = self.pages[page]
        start = time.monotonic()
        sent = await self._send_rerun(page_hash=wanted)
        run, _ = await self._wait_run(
            start,
            timeout,
            sent,
            f"page /{page}",
            lambda run_id, tree: self._run_pages.get(run_id, wanted) == wanted,
        )
        return run

    async def chat(self, text: str, timeout: float = 600) -> str:
        """Type `text` into the page's chat input and return the assistant's answer to it.

        Waits for the end of a full run, started after the question was sent, whose page shows
        the question with an answer after it; runs the app started on its own meanwhile (a
        job box's `st.rerun()`) do not count, nor do runs that show the page without it.

        Raises:
            LookupError: the page has no chat input, the run that showed the question failed
                (an exception), or its answer was empty.
            TimeoutError: no such run ended within `timeout` seconds (the message says what
                the page showed).
        """
        inputs = self.tree.of_type("chat_input")
        if not inputs:
            raise LookupError(f"page {self.page!r} has no chat input")
        state = WidgetState(id=inputs[0][1].chat_input.id)
        state.chat_input_value.CopyFrom(ChatInputValue(data=text))
        start = time.monotonic()
        self._question = text
        try:
            sent = await self._send_rerun(page_hash=self.page_hash, widgets=[state])
            run, tree = await self._wait_run(
                start,
                timeout,
                sent,
                f"the chat answer on /{self.page}",
                lambda run_id, tree: _question_block(tree, text) is not None,
            )
        finally:
            self._question = ""
        if run.exceptions or run.compile_error:
            raise LookupError(f"the chat run failed: {run.exceptions or run.compile_error}")
        answer = self.answer_to(text, tree)
        if not answer:
            shown = f"; error boxes: {run.error_boxes}" if run.error_boxes else ""
            raise LookupError(f"the question is on the page but its answer is empty{shown}")
        return answer

    def answer_to(self, question: str, tree: _Tree | None = None) -> str:
        """The text of the assistant's message after the user's message `question` ("" if
        there is none, or it has no text yet)."""
        tree = tree or self.tree
        asked = _question_block(tree, question)
        if asked is None:
            return ""
        answers = [
            path
            for path, block in tree.blocks.items()
            if _is_message(block, "assistant") and len(path) == len(asked) and path > asked
        ]
        return _first_text(tree, min(answers)) if answers else ""

    def last_answer(self) -> str:
        """The text of the last assistant chat message on the page ("" if none)."""
        assistant = [p for p, b in self.tree.blocks.items() if _is_message(b, "assistant")]
        return _first_text(self.tree, max(assistant)) if assistant else ""

    def texts(self) -> str:
        """Headings, markdown and alerts on the page, one per line (what a reader sees)."""
        parts = []
        for _, element in sorted(self.tree.elements.items()):
            kind = element.WhichOneof("type")
            if kind in ("heading", "markdown", "alert"):
                parts.append(getattr(element, kind).body)
        return "\n".join(parts)

    def page_state(self) -> str:
        """Whether the server is running the page, and what the page shows of a question
        being waited for: for a report on a user that did not finish (a timeout, a deadline)."""
        now = time.monotonic()
        parts = []
        if self._running_since is not None:
            parts.append(f"the server is running the page ({now - self._running_since:.0f} s)")
        else:
            parts.append("no run in progress")
        if self._question:
            if _question_block(self.tree, self._question) is None:
                parts.append("the question is not on the page")
            else:
                answer = self.answer_to(self._question)
                parts.append(
                    f"answer so far {len(answer)} characters" if answer else "no answer text yet"
                )
        if self.other_runs:
            parts.append(f"{self.other_runs} run(s) ended that did not answer a request")
        if self.closed_reason:
            parts.append(f"websocket closed: {self.closed_reason}")
        return "; ".join(parts)

    async def close(self) -> None:
        self._stop_timers()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # --- the protocol ------------------------------------------------------------------------

    async def _send_rerun(
        self,
        *,
        page_name: str = "",
        page_hash: str = "",
        fragment_id: str = "",
        widgets: list[WidgetState] | None = None,
    ) -> frozenset[str]:
        """Send a rerun request; returns the runs already started (none of them answers it)."""
        started = frozenset(self._started)
        state = ClientState(
            query_string=self.query,
            page_script_hash=page_hash,
            page_name=page_name,
            fragment_id=fragment_id,
            is_auto_rerun=bool(fragment_id),
            widget_states=WidgetStates(widgets=widgets or []),
            cached_message_hashes=list(self._cache),
        )
        await self._ws.send(BackMsg(rerun_script=state).SerializeToString())
        return started

    async def _wait_run(
        self,
        start: float,
        timeout: float,
        started: frozenset[str],
        what: str,
        shows: Callable[[str, _Tree], bool] | None = None,
    ) -> tuple[PageRun, _Tree]:
        """Wait for the end of a full run that answers the request sent at `start`; returns it
        and the page as it stood when it ended.

        Fragment runs, runs cut short by a rerun, runs in `started` (begun before the request
        was sent) and runs whose page fails `shows(run id, page)` don't count, unless the page
        shows an error (what a person would see instead of what they asked for).
        """
        self.waiting_for = what
        try:
            run_id, tree = await self._until_finished(start + timeout, timeout, started, shows)
        finally:
            self.waiting_for = ""
        return self._describe(start, run_id, tree), tree

    async def _until_finished(
        self,
        deadline: float,
        timeout: float,
        started: frozenset[str],
        shows: Callable[[str, _Tree], bool] | None,
    ) -> tuple[str, _Tree]:
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                item = await asyncio.wait_for(self._finished.get(), left)
            except TimeoutError:
                raise TimeoutError(
                    f"{self.waiting_for} did not show within {timeout:g} s ({self.page_state()})"
                ) from None
            if item is None:
                raise ConnectionError(f"the websocket closed: {self.closed_reason}")
            status, run_id, tree = item
            if status not in (
                ForwardMsg.FINISHED_SUCCESSFULLY,
                ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
            ):
                continue
            if run_id in started:
                self.other_runs += 1  # begun before the request: the app's own, or the last one
                continue
            failed = status != ForwardMsg.FINISHED_SUCCESSFULLY or _shows_error(tree)
            if shows is not None and not failed and not shows(run_id, tree):
                self.other_runs += 1  # a run the app started on its own (a fragment's rerun)
                continue
            return run_id, tree

    def _stop_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._intervals.clear()

    def _describe(self, start: float, run_id: str, tree: _Tree) -> PageRun:
        headings = [e.heading.body for _, e in tree.of_type("heading") if e.heading.tag == "h1"]
        exceptions = [
            f"{e.exception.type}: {e.exception.message}" for _, e in tree.of_type("exception")
        ]
        errors = [e.alert.body for _, e in tree.of_type("alert") if e.alert.format == Alert.ERROR]
        error, self._compile_error = self._compile_error, ""
        return PageRun(
            page=self.page,
            seconds=time.monotonic() - start,
            title=headings[0] if headings else "",
            exceptions=exceptions,
            error_boxes=errors,
            compile_error=error,
            run_id=run_id,
        )

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                if msg.WhichOneof("type") == "ref_hash":  # "you have this one already"
                    cached = self._cache.get(msg.ref_hash)
                    if cached is None:
                        continue
                    metadata = msg.metadata
                    msg = ForwardMsg()
                    msg.CopyFrom(cached)
                    msg.metadata.CopyFrom(metadata)
                elif msg.metadata.cacheable and msg.hash:
                    self._cache[msg.hash] = msg
                self._handle(msg)
        except Exception as exc:  # a closed socket ends the session; waiters hear it below
            self.closed_reason = f"{type(exc).__name__}: {exc}"
        finally:
            if not self.closed_reason:
                code, reason = self._ws.close_code, self._ws.close_reason
                self.closed_reason = f"code {code} {reason or ''}".strip()
            self._finished.put_nowait(None)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.page_hash = msg.new_session.page_script_hash
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            run_id = msg.metadata.run.script_run_id
            self._started.add(run_id)
            if not msg.metadata.run.fragment_ids:  # a full run redraws the page
                self.tree.clear()
                self._stop_timers()
                self._run_id, self._running_since = run_id, time.monotonic()
                self._run_pages[run_id] = self.page_hash
        elif kind == "delta":
            path = tuple(msg.metadata.delta_path)
            delta = getattr(msg.delta, msg.delta.WhichOneof("type") or "new_element")
            if msg.delta.WhichOneof("type") == "new_element":
                self.tree.elements[path] = delta
            elif msg.delta.WhichOneof("type") == "add_block":
                self.tree.blocks[path] = delta
                self.tree.elements = {
                    p: e for p, e in self.tree.elements.items() if p[: len(path)] != path
                }
        elif kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            for p in msg.navigation.app_pages:
                if p.is_default:
                    self.pages[""] = p.page_script_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            fragment, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            if self._intervals.get(fragment) == interval:
                return  # the browser keeps a timer that already ticks at this pace
            if fragment in self._timers:
                self._timers[fragment].cancel()
            self._intervals[fragment] = interval
            self._timers[fragment] = asyncio.create_task(self._auto_rerun(fragment, interval))
        elif kind == "stop_auto_rerun":
            for fragment in msg.stop_auto_rerun.fragment_ids:
                self._intervals.pop(fragment, None)
                timer = self._timers.pop(fragment, None)
                if timer is not None:
                    timer.cancel()
        elif kind == "session_event":
            if msg.session_event.WhichOneof("type") == "script_compilation_exception":
                error = msg.session_event.script_compilation_exception
                self._compile_error = f"{error.type}: {error.message}"
        elif kind == "script_finished":
            run_id = msg.metadata.run.script_run_id
            if run_id == self._run_id:
                self._running_since = None
            # the page as it stands now: the reader may have moved on when the waiter looks
            self._finished.put_nowait((msg.script_finished, run_id, self.tree.copy()))

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        """What a browser's timer for `st.fragment(run_every=...)` does."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(interval)
                self.auto_reruns += 1
                await self._send_rerun(page_hash=self.page_hash, fragment_id=fragment_id)


def _is_message(block, role: str) -> bool:
    return block.WhichOneof("type") == "chat_message" and block.chat_message.name == role


def _first_text(tree: _Tree, block: Path) -> str:
    """The first markdown text inside `block` ("" if it has none yet)."""
    texts = [e.markdown.body for p, e in tree.of_type("markdown") if p[: len(block)] == block]
    return texts[0] if texts else ""


def _shows_error(tree: _Tree) -> bool:
    """Whether the page shows an exception or an error box."""
    return bool(tree.of_type("exception")) or any(
        e.alert.format == Alert.ERROR for _, e in tree.of_type("alert")
    )


def _question_block(tree: _Tree, question: str) -> Path | None:
    """Path of the last user message on the page whose text is `question` (None if none;
    st.markdown strips the text it shows)."""
    asked = [
        path
        for path, block in tree.blocks.items()
        if _is_message(block, "user") and _first_text(tree, path) == question.strip()
    ]
    return max(asked) if asked else None
