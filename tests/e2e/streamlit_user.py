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


@dataclass
class _Tree:
    """The page as the client holds it: elements and blocks by delta path."""

    elements: dict[Path, object] = field(default_factory=dict)
    blocks: dict[Path, object] = field(default_factory=dict)

    def clear(self) -> None:
        self.elements.clear()
        self.blocks.clear()

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
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._timers: dict[str, asyncio.Task] = {}
        self._intervals: dict[str, float] = {}
        self._finished: asyncio.Queue = asyncio.Queue()
        self._cache: dict[str, ForwardMsg] = {}  # hash -> message, for `ref_hash` replies
        self._compile_error = ""
        self.closed_reason = ""

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
        await user._send_rerun(page_name=page)
        return user, await user._wait_run(start, timeout)

    async def open_page(self, page: str, timeout: float = 300) -> PageRun:
        """Switch this session to the page at url path `page`, as a click in the sidebar does."""
        if page not in self.pages:
            raise KeyError(f"no page {page!r}; the app has {sorted(self.pages)}")
        self.page = page
        self.query = ""  # a browser drops the query string when the page changes
        self._stop_timers()  # as the browser does; the new page's run starts its own
        start = time.monotonic()
        await self._send_rerun(page_hash=self.pages[page])
        return await self._wait_run(start, timeout)

    async def chat(self, text: str, timeout: float = 600) -> str:
        """Type `text` into the page's chat input and return the assistant's last answer.

        Raises:
            LookupError: the page has no chat input, or no answer showed.
        """
        inputs = self.tree.of_type("chat_input")
        if not inputs:
            raise LookupError(f"page {self.page!r} has no chat input")
        state = WidgetState(id=inputs[0][1].chat_input.id)
        state.chat_input_value.CopyFrom(ChatInputValue(data=text))
        start = time.monotonic()
        await self._send_rerun(page_hash=self.page_hash, widgets=[state])
        run = await self._wait_run(start, timeout)
        if run.exceptions or run.compile_error:
            raise LookupError(f"the chat run failed: {run.exceptions or run.compile_error}")
        answer = self.last_answer()
        if not answer:
            shown = f"; error boxes: {run.error_boxes}" if run.error_boxes else ""
            raise LookupError(f"no assistant answer on the page{shown}")
        return answer

    def last_answer(self) -> str:
        """The text of the last assistant chat message on the page ("" if none)."""
        assistant = [
            path
            for path, block in self.tree.blocks.items()
            if block.WhichOneof("type") == "chat_message" and block.chat_message.name == "assistant"
        ]
        if not assistant:
            return ""
        last = max(assistant)
        texts = [
            e.markdown.body for p, e in self.tree.of_type("markdown") if p[: len(last)] == last
        ]
        return texts[0] if texts else ""

    def texts(self) -> str:
        """Headings, markdown and alerts on the page, one per line (what a reader sees)."""
        parts = []
        for _, element in sorted(self.tree.elements.items()):
            kind = element.WhichOneof("type")
            if kind in ("heading", "markdown", "alert"):
                parts.append(getattr(element, kind).body)
        return "\n".join(parts)

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
    ) -> None:
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

    async def _wait_run(self, start: float, timeout: float) -> PageRun:
        """Wait for the end of a full run (fragment runs and runs cut short by st.rerun don't
        count) and describe the page as it stands then."""
        deadline = start + timeout
        await self._until_finished(deadline, timeout)
        return self._describe(start)

    async def _until_finished(self, deadline: float, timeout: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"page {self.page!r} did not finish within {timeout:.0f} s")
            try:
                status = await asyncio.wait_for(self._finished.get(), left)
            except TimeoutError:
                raise TimeoutError(
                    f"page {self.page!r} did not finish within {timeout:.0f} s"
                ) from None
            if status is None:
                raise ConnectionError(f"the websocket closed: {self.closed_reason}")
            if status in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                return

    def _stop_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._intervals.clear()

    def _describe(self, start: float) -> PageRun:
        headings = [
            e.heading.body for _, e in self.tree.of_type("heading") if e.heading.tag == "h1"
        ]
        exceptions = [
            f"{e.exception.type}: {e.exception.message}" for _, e in self.tree.of_type("exception")
        ]
        errors = [
            e.alert.body for _, e in self.tree.of_type("alert") if e.alert.format == Alert.ERROR
        ]
        error, self._compile_error = self._compile_error, ""
        return PageRun(
            page=self.page,
            seconds=time.monotonic() - start,
            title=headings[0] if headings else "",
            exceptions=exceptions,
            error_boxes=errors,
            compile_error=error,
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
            if not msg.metadata.run.fragment_ids:  # a full run redraws the page
                self.tree.clear()
                self._stop_timers()
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
            self._finished.put_nowait(msg.script_finished)

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        """What a browser's timer for `st.fragment(run_every=...)` does."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(interval)
                self.auto_reruns += 1
                await self._send_rerun(page_hash=self.page_hash, fragment_id=fragment_id)
