"""The load benchmark's simulated user (tests/e2e/streamlit_user.py) against real Streamlit
servers: it sees the workbench's Home render, switches pages within its session, and reports the
exception box of a page that fails rather than a page that merely finished."""

from __future__ import annotations

import asyncio

from tests.e2e.browser import free_port, start_app
from tests.e2e.streamlit_user import StreamlitUser
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
