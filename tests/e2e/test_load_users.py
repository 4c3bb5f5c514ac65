"""bench/load_users.py's deadline: users still busy when it passes are stopped and reported with
what they were doing, users that raised are reported, and the wait ends on time."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time

from tests.e2e.browser import REPO_ROOT


def load_users():
    spec = importlib.util.spec_from_file_location("load_users", REPO_ROOT / "bench/load_users.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("load_users", module)
    spec.loader.exec_module(module)
    return module


def test_the_deadline_stops_busy_users_and_says_what_they_were_doing():
    bench = load_users()
    activity = bench.Activity()
    stopped = []

    async def quick():
        activity.set("user 0", "opening /jobs")
        await asyncio.sleep(0.01)
        activity.set("user 0", "done (tab open)")

    async def hangs():
        activity.set("user 1", "waiting for the chat answer")
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append("user 1")

    async def fails():
        raise RuntimeError("a bench bug")

    async def main():
        start = time.monotonic()
        waits = {"user 0": quick(), "user 1": hangs(), "api user 0": fails()}
        late, failed = await bench.until_deadline(waits, start + 0.5, activity)
        return late, failed, time.monotonic() - start, activity.counts(["user 0", "user 1"])

    late, failed, seconds, counts = asyncio.run(main())
    assert len(late) == 1 and late[0].startswith("user 1: timed out while waiting for the chat")
    assert stopped == ["user 1"]  # cancelled: its finally ran (a session closes there)
    assert failed == ["api user 0: RuntimeError: a bench bug"]
    assert 0.5 <= seconds < 5
    assert counts == "1 done (tab open), 1 waiting for the chat answer"
