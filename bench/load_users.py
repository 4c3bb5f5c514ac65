"""Many users at once: simulated students browse the app and chat, while others call the API.

    python bench/load_users.py                    # 20 protocol users + 2 browsers + 20 API users
    python bench/load_users.py --users 3 --browsers 1 --api-users 2 --jobs 1   # a quick check

Starts, on 127.0.0.1 only, `streamlit run app.py` (WORKBENCH_LIMIT_TOKENS caps answers, as a
demo space would) and `workbench serve` on the same workspace, queues a few generation jobs
(long enough to be active while users browse, so every tab's job box polls), then runs every
user at once:

- a protocol user (`--users`) is one app session driven over Streamlit's own websocket
  protocol (tests/e2e/streamlit_user.py): what the server sees from a browser tab, without a
  browser's CPU — in a class the browsers run on the students' machines, not on the server. It
  opens Home, then switches within the same session to Jobs, Data › Import, Evaluate and Chat
  (as a click in the sidebar does), pausing a little between pages like a person, keeps the
  fragment timers (`st.fragment(run_every=...)`) going as the browser would, asks the chat a
  question and waits for the answer; its session stays open until every user is done;
- a browser user (`--browsers`) is a Chromium context (Debian's Chromium through Playwright)
  that does the same by clicking the sidebar links, measuring what a person sees under load;
- an API user (`--api-users`) sends chat completions to the server with the official client.

Prints how long pages took to render per page and per kind of user (median, p95, max; for a
protocol user, request to `script_finished`; for a browser, click to title shown and run
ended), every error seen (an exception box, an error box, a page that never finished, a failed
request), the chat answers received, whether every queued job ended `succeeded` — nothing
lost — and the load average before and after. A line every 30 s says how far the users are.
After `--deadline` seconds (default 600) the bench stops waiting: every user still busy is
reported as timed out with what it was doing (the page it was opening, the chat answer it was
waiting for, what its page showed), and the summary is printed all the same. Exit status 1 if
anything failed or timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, free_port, start_app  # noqa: E402
from tests.e2e.streamlit_user import StreamlitUser  # noqa: E402
from workbench import jobs  # noqa: E402
from workbench.i18n import t  # noqa: E402
from workbench.models import _link_or_copy, ensure_default_model  # noqa: E402
from workbench.recipes import GenerateRecipe  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402

# url path -> the page's title (how a browser user knows the page it clicked has rendered)
PAGES = {
    "": t("home.title", "en"),
    "jobs": t("jobs.title", "en"),
    "data_import": t("data.import_title", "en"),
    "evaluate": t("eval.title", "en"),
    "chat": t("chat.title", "en"),
}
ANSWER_TOKENS = 24
QUESTION = "In one sentence, what is a CPU?"
PAGE_TIMEOUT_S = 300
CHAT_TIMEOUT_S = 600
DEADLINE_S = 600
CLEANUP_S = 30  # how long users stopped at the deadline get to close their sessions


class Activity:
    """What every user is doing now: for the progress line, and for users a deadline stops."""

    def __init__(self) -> None:
        self.now: dict[str, tuple[str, float]] = {}  # user -> (what, since when)
        self.sessions: dict[str, StreamlitUser] = {}  # protocol users' sessions, while open

    def set(self, name: str, what: str) -> None:
        self.now[name] = (what, time.monotonic())

    def describe(self, name: str) -> str:
        what, since = self.now.get(name, ("not started", time.monotonic()))
        line = f"{what} (for {time.monotonic() - since:.0f} s)"
        session = self.sessions.get(name)
        return f"{line}; {session.page_state()}" if session is not None else line

    def counts(self, names) -> str:
        """The users in `names` by what they do (3 waiting for the chat answer, 1 opening ...)."""
        counter = Counter(self.now.get(name, ("not started", 0.0))[0] for name in names)
        return ", ".join(f"{n} {what}" for what, n in counter.most_common())


def new_report() -> dict:
    return {
        "page_s": defaultdict(list),  # (kind, page) -> seconds
        "chat_s": defaultdict(list),  # kind -> seconds
        "api_s": [],
        "answers": [],  # what the protocol users' chats answered
        "errors": [],
        "timed_out": [],  # users the deadline stopped, with what they were doing
        "auto_reruns": 0,
        "other_runs": 0,
        "activity": Activity(),
    }


async def until_deadline(
    waits: dict[str, Awaitable], deadline: float, activity: Activity
) -> tuple[list[str], list[str]]:
    """Wait for every named awaitable until `deadline` (time.monotonic()) and cancel the ones
    still running then.

    Returns:
        A line for each of those (the user and what it was doing), and one for each that
        raised (what it raised).
    """
    tasks = {name: asyncio.ensure_future(wait) for name, wait in waits.items()}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - time.monotonic()))
    late = [name for name, task in tasks.items() if not task.done()]
    lines = [f"{name}: timed out while {activity.describe(name)}" for name in late]
    for name in late:
        tasks[name].cancel()
    if late:
        await asyncio.wait([tasks[name] for name in late], timeout=CLEANUP_S)
    return lines, crashed(tasks)


def crashed(tasks: dict[str, asyncio.Future]) -> list[str]:
    """A line for each task that ended with an exception of its own (not a cancellation)."""
    return [
        f"{name}: {type(task.exception()).__name__}: {task.exception()}"
        for name, task in tasks.items()
        if task.done() and not task.cancelled() and task.exception() is not None
    ]


async def think(seconds: float) -> None:
    """A person's pause between clicks (0.5x to 1.5x `seconds`)."""
    await asyncio.sleep(seconds * random.uniform(0.5, 1.5))


async def protocol_user(
    base: str, user: int, args, report: dict, finished: asyncio.Event, done: asyncio.Event
) -> None:
    """One student's tab; sets `finished` after its chat, then stays open until `done`."""
    name = f"user {user}"
    activity: Activity = report["activity"]

    def check(run) -> None:
        report["page_s"][("protocol", run.page)].append(run.seconds)
        for problem in (*run.exceptions, *run.error_boxes, run.compile_error):
            if problem:
                report["errors"].append(f"{name} /{run.page}: {problem[:200]}")
        if run.title != PAGES.get(run.page, run.title):
            report["errors"].append(f"{name} /{run.page}: title {run.title!r}")

    activity.set(name, "thinking before /")
    await think(args.think)
    session = None
    try:
        activity.set(name, "connecting (/)")
        session, run = await StreamlitUser.connect(base, "", "lang=en", PAGE_TIMEOUT_S)
        activity.sessions[name] = session
        check(run)
        for round_ in range(args.rounds):
            for page in PAGES if round_ else list(PAGES)[1:]:
                activity.set(name, f"thinking before /{page}")
                await think(args.think)
                activity.set(name, f"opening /{page}")
                try:
                    check(await session.open_page(page, PAGE_TIMEOUT_S))
                except (TimeoutError, KeyError) as exc:
                    report["errors"].append(f"{name} /{page}: {type(exc).__name__}: {exc}")
            activity.set(name, "waiting for the chat answer")
            start = time.monotonic()
            try:
                answer = await session.chat(f"{QUESTION} (user {user})", CHAT_TIMEOUT_S)
                report["chat_s"]["protocol"].append(time.monotonic() - start)
                report["answers"].append(answer)
            except (TimeoutError, LookupError) as exc:
                report["errors"].append(f"{name} chat: {type(exc).__name__}: {exc}")
        activity.set(name, "done (tab open)")
        finished.set()
        await done.wait()  # the tab stays open (and its timers polling) until all are done
    except (TimeoutError, ConnectionError, OSError) as exc:
        report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        finished.set()
        if session is not None:
            report["auto_reruns"] += session.auto_reruns
            report["other_runs"] += session.other_runs
            activity.sessions.pop(name, None)
            with contextlib.suppress(Exception):
                await session.close()


async def settled(page, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Wait until the app's status widget ("Running...") has been gone for a moment."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await page.locator("[data-testid='stStatusWidget']").count() == 0:
            await asyncio.sleep(0.3)
            if await page.locator("[data-testid='stStatusWidget']").count() == 0:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"still running after {timeout_s:.0f} s")


async def shown(page, path: str, start: float, user: int, report: dict) -> None:
    """Wait for the page's title and the end of its run; record the time and any exception."""
    title = page.locator("[data-testid='stMainBlockContainer'] h1").filter(has_text=PAGES[path])
    await title.first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    await settled(page)
    report["page_s"][("browser", path)].append(time.monotonic() - start)
    boxes = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    if await boxes.count():
        text = await boxes.first.inner_text()
        report["errors"].append(f"browser {user} /{path}: {text[:200]}")


async def browser_user(browser, base: str, user: int, args, report: dict) -> None:
    name, activity = f"browser {user}", report["activity"]
    activity.set(name, "starting Chromium")
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    try:
        activity.set(name, "thinking before /")
        await think(args.think)
        activity.set(name, "opening /")
        start = time.monotonic()
        await page.goto(base + "/?lang=en", timeout=PAGE_TIMEOUT_S * 1000)
        await shown(page, "", start, user, report)
        for round_ in range(args.rounds):
            for path in PAGES if round_ else list(PAGES)[1:]:
                activity.set(name, f"thinking before /{path}")
                await think(args.think)
                activity.set(name, f"opening /{path}")
                link = page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first
                start = time.monotonic()
                try:
                    await link.click(timeout=PAGE_TIMEOUT_S * 1000)
                    await shown(page, path, start, user, report)
                except Exception as exc:  # a page that never rendered is what we count
                    report["errors"].append(f"browser {user} /{path}: {type(exc).__name__}: {exc}")
            activity.set(name, "waiting for the chat answer")
            start = time.monotonic()
            try:
                box = page.locator("[data-testid='stChatInput'] textarea")
                await box.fill(f"{QUESTION} (browser {user})", timeout=PAGE_TIMEOUT_S * 1000)
                await box.press("Enter")
                answers = page.locator("[data-testid='stChatMessage']")
                await answers.nth(1).wait_for(timeout=CHAT_TIMEOUT_S * 1000)
                await settled(page, CHAT_TIMEOUT_S)
                if not (await answers.last.inner_text()).strip():
                    raise LookupError("empty answer")
                report["chat_s"]["browser"].append(time.monotonic() - start)
            except Exception as exc:
                report["errors"].append(f"browser {user} chat: {type(exc).__name__}: {exc}")
    except Exception as exc:
        report["errors"].append(f"browser {user}: {type(exc).__name__}: {exc}")
    finally:
        activity.set(name, "done")
        await context.close()


async def api_user(url: str, user: int, args, report: dict) -> None:
    from openai import AsyncOpenAI

    name, activity = f"api user {user}", report["activity"]
    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=CHAT_TIMEOUT_S)
    for _ in range(args.rounds):
        activity.set(name, "thinking")
        await think(args.think)
        activity.set(name, "waiting for an API answer")
        start = time.monotonic()
        try:
            reply = await client.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": f"{QUESTION} ({user})"}],
                max_tokens=ANSWER_TOKENS,
            )
            assert reply.choices[0].message.content
            report["api_s"].append(time.monotonic() - start)
        except Exception as exc:
            report["errors"].append(f"api user {user}: {type(exc).__name__}: {exc}")
    activity.set(name, "done")


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", "--model", "default"]
        + ["--port", "0", "--json", "--slots", "8"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    return server, json.loads(server.stdout.readline())["url"]


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"n={len(values):3d}  median {statistics.median(values):6.1f} s, "
        f"p95 {p95:6.1f} s, max {ordered[-1]:6.1f} s"
    )


async def progress(report: dict, finished: dict[str, asyncio.Event], every_s: float = 30) -> None:
    """A line every `every_s` seconds while users run, so a run that hangs shows where."""
    started, activity = time.monotonic(), report["activity"]
    while True:
        await asyncio.sleep(every_s)
        busy = [name for name, event in finished.items() if not event.is_set()]
        others = [name for name in activity.now if not name.startswith("user ")]
        print(
            f"  {time.monotonic() - started:5.0f} s: {len(finished) - len(busy)} of "
            f"{len(finished)} protocol users done, {len(report['errors'])} errors so far"
            + (f"; protocol users: {activity.counts(busy)}" if busy else "")
            + (f"; others: {activity.counts(others)}" if others else ""),
            flush=True,
        )


async def run(args: argparse.Namespace, base: str, url: str, report: dict, deadline: float):
    """Every user at once, until all are done or `deadline` (time.monotonic()) passes."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = None
        if args.browsers:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        finished = {f"user {u}": asyncio.Event() for u in range(args.users)}
        done = asyncio.Event()
        tabs = {
            name: asyncio.create_task(protocol_user(base, u, args, report, event, done))
            for u, (name, event) in enumerate(finished.items())
        }
        ticker = asyncio.create_task(progress(report, finished))
        waits = {
            **{
                f"browser {u}": browser_user(browser, base, u, args, report)
                for u in range(args.browsers)
            },
            **{f"api user {u}": api_user(url, u, args, report) for u in range(args.api_users)},
            **{name: event.wait() for name, event in finished.items()},
        }
        try:
            late, failed = await until_deadline(waits, deadline, report["activity"])
            report["timed_out"] += late
            report["errors"] += failed
        finally:
            ticker.cancel()
            done.set()  # finished tabs close now; the ones the deadline stopped are cancelled
            for name, tab in tabs.items():
                if not finished[name].is_set():
                    tab.cancel()
            await asyncio.wait(tabs.values(), timeout=CLEANUP_S)
            report["errors"] += crashed(tabs)
            if browser is not None:
                await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="protocol users (app sessions)")
    parser.add_argument("--browsers", type=int, default=2, help="Chromium users")
    parser.add_argument("--api-users", type=int, default=20, help="API users")
    parser.add_argument("--rounds", type=int, default=1, help="visits of every page per user")
    parser.add_argument("--jobs", type=int, default=3, help="small jobs queued before the load")
    parser.add_argument(
        "--job-tokens", type=int, default=200, help="tokens each job generates (keeps it active)"
    )
    parser.add_argument("--think", type=float, default=2.0, help="seconds between clicks")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_S,
        help="seconds from the users' start after which the bench stops waiting, reports the "
        "users still busy as timed out (and jobs still active), and prints the summary",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="wb-load-")) / "workspace"
    ws = Workspace(home).ensure()
    source = ensure_default_model(Workspace(Path.home() / ".cache" / "workbench-bench").ensure())
    shutil.copytree(source, ws.kind_dir("model") / "default", copy_function=_link_or_copy)
    port = free_port()
    app = start_app(home, port, {"WORKBENCH_LIMIT_TOKENS": str(ANSWER_TOKENS)})
    server, url = start_server(home)
    queued = [
        jobs.submit(
            ws,
            GenerateRecipe(model="default", prompts=[f"Say {i}."], max_new_tokens=args.job_tokens),
        )
        for i in range(args.jobs)
    ]
    report = new_report()
    load_before = os.getloadavg()
    start = time.monotonic()
    deadline = start + args.deadline
    try:
        asyncio.run(run(args, f"http://127.0.0.1:{port}", url, report, deadline))
    except Exception as exc:  # a bench bug: say so, and still print what was measured
        report["errors"].append(f"bench: {type(exc).__name__}: {exc}")
    try:
        ended = [
            jobs.wait(ws, job.id, timeout=max(0.0, deadline - time.monotonic())) for job in queued
        ]
    finally:
        if report["timed_out"] and hasattr(signal, "SIGUSR1"):
            app.send_signal(signal.SIGUSR1)  # app.py: every thread's stack into the app's log
            time.sleep(2)
        app.terminate()
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.communicate(timeout=CLEANUP_S)  # its last words, before the summary
        with contextlib.suppress(subprocess.TimeoutExpired):
            app.wait(timeout=CLEANUP_S)
    load_after = os.getloadavg()
    active = [job.id for job in ended if job.active]  # the deadline came first
    lost = [job.id for job in ended if not job.active and job.status != "succeeded"]
    chats = len(report["chat_s"]["protocol"]) + len(report["chat_s"]["browser"])
    print(
        f"load: {args.users} protocol users + {args.browsers} browsers + {args.api_users} API "
        f"users, {args.rounds} round(s), {os.cpu_count()} CPUs"
    )
    print(f"  wall time           {time.monotonic() - start:.0f} s")
    print("  load average        before {:.2f} {:.2f} {:.2f}".format(*load_before))
    print("                      after  {:.2f} {:.2f} {:.2f}".format(*load_after))
    for kind in ("protocol", "browser"):
        pages = [s for (k, _), values in report["page_s"].items() if k == kind for s in values]
        if pages:
            print(f"  page renders ({kind:8s}) {summary(pages)}")
        for path in PAGES:
            if report["page_s"][(kind, path)]:
                print(f"    /{path:20s}  {summary(report['page_s'][(kind, path)])}")
    print(f"  fragment reruns     {report['auto_reruns']} (timers of the protocol users)")
    print(
        f"  other runs          {report['other_runs']} (full runs the app started itself, "
        "e.g. a job box's on a job's end, that ended while a protocol user waited)"
    )
    expected = (args.users + args.browsers) * args.rounds
    for kind in ("protocol", "browser"):
        print(f"  chat answers ({kind:8s}) {summary(report['chat_s'][kind])}")
    print(f"  chat answers        {chats} of {expected}")
    if report["answers"]:
        print(f"    e.g. {report['answers'][0][:100]!r}")
    print(f"  API answers         {summary(report['api_s'])}  (of {args.api_users * args.rounds})")
    succeeded = len(ended) - len(lost) - len(active)
    print(
        f"  jobs                {succeeded}/{len(ended)} succeeded"
        + (f", failed {lost}" if lost else "")
        + (f", still active at the deadline {active}" if active else "")
    )
    print(f"  errors              {len(report['errors'])}")
    for error in report["errors"][:20]:
        print(f"    {error}")
    if len(report["errors"]) > 20:
        print(f"    ... and {len(report['errors']) - 20} more")
    print(f"  timed out           {len(report['timed_out'])} (deadline {args.deadline:.0f} s)")
    if report["timed_out"]:
        print(f"    the app's thread stacks at the deadline: {home.parent}/streamlit-{port}.log")
    for line in report["timed_out"]:
        print(f"    {line}")
    failed = report["errors"] or report["timed_out"] or lost or active or chats < expected
    failed = failed or len(report["api_s"]) < args.api_users * args.rounds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
