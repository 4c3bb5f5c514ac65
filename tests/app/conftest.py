"""What every AppTest of the pages needs: a job queue that holds jobs (no worker starts), and
Streamlit's navigation mode on every rerun."""

from __future__ import annotations

import pytest
import streamlit.testing.v1.app_test as app_test
from streamlit.runtime.pages_manager import PagesManager


@pytest.fixture(autouse=True)
def held_queue(monkeypatch):
    """Submitted jobs stay queued: a test plays the worker where it needs one."""
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")
    monkeypatch.setenv("WORKBENCH_GPU_SLOTS", "0")


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run app.py on every rerun, as the real server does once app.py has called st.navigation.

    AppTest forgets between runs that the app uses st.navigation; with a pages/ folder beside
    app.py it then falls back to the legacy pages-folder mode and runs a page without app.py.
    """

    class NavigationPagesManager(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", NavigationPagesManager)
