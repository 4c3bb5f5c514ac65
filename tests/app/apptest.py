"""Helpers the AppTests of every page share: open the app on a page, rerun, read the page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90  # the first render imports torch (hardware detection); a busy CI machine is slow


def open_app(lang: str = "en", page: str | None = None, **query: str) -> AppTest:
    """app.py in `lang` (with query parameters), switched to `page`; fails on any exception."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({"lang": lang, **query})
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything a user reads on the page, as one string."""
    kinds = ("title", "subheader", "markdown", "caption", "info", "warning", "error", "success")
    return "\n".join(str(e.value) for kind in (*kinds, "code") for e in at.get(kind))


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def frame_with(at: AppTest, column: str):
    """The first table on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)
