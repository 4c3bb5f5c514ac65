"""The load benchmark's simulated user (tests/e2e/streamlit_user.py) against real Streamlit
servers: it sees the workbench's Home render, switches pages within its session, reports the
exception box of a page that fails rather than a page that merely finished, and does not take
the end of a run the app started on its own for the end of its own request."""

from __future__ import annotations

import asyncio

from streamlit.proto.Block_pb2 import Block
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.e2e.browser import free_port, start_app
from tests.e2e.streamlit_user import StreamlitUser, _Tree
from workbench.i18n import t

BROKEN_APP = """
import streamlit as st

def fine():
    st.title("Fine")

def broken():
    st.title("Broken")
    raise RuntimeError("the page fails here")

st.navigation([st.Page(fine, url_path="fine"), st.Page(broken, url_path="broken")]).run()
"""

# Each page reruns the whole app once on its own, from a fragment's timer, as the sidebar's job
# box does when a job ends; the chat page answers after a pause, as a queued request does.
RERUNNING_APP = """
import time
import streamlit as st

@st.fragment(run_every=0.3)
def job_box(page):
    due = st.session_state.setdefault(f"due_{page}", time.monotonic() + 0.2)
    if time.monotonic() > due and not st.session_state.get(f"reran_{page}"):
        st.session_state[f"reran_{page}"] = True
        st.rerun()

def home():
    st.title("Home")
    job_box("home")

def chat():
    st.title("Chat")
    job_box("chat")
    prompt = st.chat_input("Ask")
    if prompt:
        with st.chat_message("user"):
            st.markdown(prompt)
        time.sleep(1.0)
        with st.chat_message("assistant"):
            st.markdown(f"echo: {prompt}")

st.navigation([st.Page(home, url_path="home"), st.Page(chat, url_path="chat")]).run()
"""


def test_home_renders_and_pages_switch_in_one_session(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_DEMO", raising=False)
    port = free_port()
    app = start_app(tmp_path / "workspace", port)

    async def walk():
        user, home = await StreamlitUser.connect(f"http://127.0.0.1:{port}", "", "lang=en", 120)
        try:
            jobs = await user.open_page("jobs", 60)
            return home, jobs, user.session_id
        finally:
            await user.close()

    try:
        home, jobs, session = asyncio.run(walk())
    finally:
        app.terminate()
        app.wait()
    assert home.title == t("home.title", "en")
    assert not home.exceptions and not home.error_boxes
    assert jobs.title == t("jobs.title", "en") and not jobs.exceptions
    assert session  # one session for both pages


def test_a_failing_page_reports_its_exception_box(tmp_path):
    script = tmp_path / "broken_app.py"
    script.write_text(BROKEN_APP, encoding="utf-8")
    port = free_port()
    app = start_app(tmp_path / "workspace", port, script=script)

    async def walk():
        user, fine = await StreamlitUser.connect(f"http://127.0.0.1:{port}", "fine", "", 60)
        try:
            return fine, await user.open_page("broken", 60)
        finally:
            await user.close()

    try:
        fine, broken = asyncio.run(walk())
    finally:
        app.terminate()
        app.wait()
    assert (fine.title, fine.exceptions) == ("Fine", [])
    assert broken.title == "Broken"
    assert broken.exceptions == ["RuntimeError: the page fails here"]


def test_a_run_the_app_starts_itself_is_not_taken_for_the_answer(tmp_path):
    """The app's own full rerun ends while the user thinks: the next page switch and the next
    question wait for their own runs (the client used to return at once, with the previous
    page's title, or with no answer on the page)."""
    script = tmp_path / "rerunning_app.py"
    script.write_text(RERUNNING_APP, encoding="utf-8")
    port = free_port()
    app = start_app(tmp_path / "workspace", port, script=script)

    async def walk():
        user, home = await StreamlitUser.connect(f"http://127.0.0.1:{port}", "home", "", 60)
        try:
            await asyncio.sleep(2)  # thinking; the app reruns Home on its own meanwhile
            chat = await user.open_page("chat", 60)
            await asyncio.sleep(2)  # and the chat page
            answer, other_runs = await user.chat("What is a CPU?", 60), user.other_runs
            try:  # an answer slower than the client waits: the error says what the page shows
                await user.chat("And a GPU?", 0.5)
            except TimeoutError as exc:
                late = str(exc)
            return home, chat, answer, other_runs, late
        finally:
            await user.close()

    try:
        home, chat, answer, other_runs, late = asyncio.run(walk())
    finally:
        app.terminate()
        app.wait()
    assert home.title == "Home"
    assert chat.title == "Chat"
    assert answer == "echo: What is a CPU?"
    assert other_runs == 2  # the two reruns the app started itself
    assert late.startswith("the chat answer on /chat did not show within 0.5 s (the server")
    assert "no answer text yet" in late  # the question is on the page, its answer not yet


def _message(tree: _Tree, path: tuple[int, ...], role: str, text: str) -> None:
    tree.blocks[path] = Block(chat_message=Block.ChatMessage(name=role))
    element = Element()
    element.markdown.body = text
    tree.elements[(*path, 0)] = element


def test_a_run_that_does_not_show_the_question_is_not_its_answer():
    """A full run that began before the server took the question (the app's own, ending late)
    shows the page without it: the client waits on for the run that shows question and answer."""

    async def wait():
        user = StreamlitUser("http://127.0.0.1:1")
        before, answered = _Tree(), _Tree()
        _message(answered, (0, 3), "user", "Hi?")
        _message(answered, (0, 4), "assistant", "Hello.")
        user._finished.put_nowait((ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY, "f", before))
        user._finished.put_nowait((ForwardMsg.FINISHED_SUCCESSFULLY, "old", before))
        user._finished.put_nowait((ForwardMsg.FINISHED_SUCCESSFULLY, "foreign", before))
        user._finished.put_nowait((ForwardMsg.FINISHED_SUCCESSFULLY, "asked", answered))
        run, tree = await user._wait_run(
            0, 1e9, frozenset({"old"}), "the answer", lambda run_id, tree: bool(tree.blocks)
        )
        return run, user.answer_to("Hi?", tree), user.other_runs

    run, answer, other_runs = asyncio.run(wait())
    assert (run.run_id, answer, other_runs) == ("asked", "Hello.", 2)
