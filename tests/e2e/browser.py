"""Driving the workbench in Debian's Chromium: start the app as a real server, open pages, wait
for Streamlit to finish a run, fill widgets by their labels, and save screenshots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # DESIGN.md: no sandbox (root), no GPU, and no calls home on a closed network
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = REPO_ROOT / "test-artifacts" / "e2e"
PAGE_TIMEOUT_MS = 180_000  # a first page render imports torch; CI machines are slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(
    home: Path, port: int, env: dict | None = None, script: Path = REPO_ROOT / "app.py"
) -> subprocess.Popen:
    """`streamlit run app.py` (or `script`) on 127.0.0.1:port with WORKBENCH_HOME=home; waits
    until healthy."""
    environ = {**os.environ, "WORKBENCH_HOME": str(home), **(env or {})}
    log = open(home.parent / f"streamlit-{port}.log", "wb")  # noqa: SIM115 (kept open by the server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script)]
        + ["--server.address", "127.0.0.1", "--server.port", str(port)]
        + ["--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not start; see {log.name}")


def settle(page, timeout_s: float = 180) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    time.sleep(0.8)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator("[data-testid='stStatusWidget']").count() == 0:
            time.sleep(0.4)
            if page.locator("[data-testid='stStatusWidget']").count() == 0:
                return
        time.sleep(0.3)
    raise TimeoutError("the app kept running for longer than expected")


def open_page(page, base: str, path: str) -> None:
    """Go to `path` and wait for its title and for the run to end."""
    page.goto(base + path, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=PAGE_TIMEOUT_MS)
    settle(page)


def main_area(page):
    return page.locator("[data-testid='stMainBlockContainer']")


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the select box labelled `label`."""
    main_area(page).get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def add_choice(page, label: str, option: str) -> None:
    """Add `option` to the multiselect labelled `label` (typed: long lists are virtualised)."""
    main_area(page).get_by_label(label, exact=True).click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    settle(page)


def fill(page, label: str, value: str) -> None:
    """Type into the text or number box labelled `label` and commit it."""
    box = main_area(page).get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)


def click(page, name: str) -> None:
    main_area(page).get_by_role("button", name=name).first.click()
    settle(page)


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_text(page, text: str, timeout_s: float = 300, reload_every_s: float = 0) -> None:
    """Wait until `text` shows in the main area (reloading the page every so often if asked)."""
    deadline = time.monotonic() + timeout_s
    last_reload = time.monotonic()
    while time.monotonic() < deadline:
        if main_area(page).get_by_text(text, exact=False).count():
            return
        if reload_every_s and time.monotonic() - last_reload > reload_every_s:
            page.reload()
            settle(page)
            last_reload = time.monotonic()
        time.sleep(1)
    raise TimeoutError(f"{text!r} did not appear within {timeout_s:.0f} s")
