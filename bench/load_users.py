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
lost — and the load average before and after. Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
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


def new_report() -> dict:
    return {
        "page_s": defaultdict(list),  # (kind, page) -> seconds
        "chat_s": defaultdict(list),  # kind -> seconds
        "api_s": [],
        "answers": [],  # what the protocol users' chats answered
        "errors": [],
        "auto_reruns": 0,
    }


async def think(seconds: float) -> None:
    """A person's pause between clicks (0.5x to 1.5x `seconds`)."""
    await asyncio.sleep(seconds * random.uniform(0.5, 1.5))


async def protocol_user(
    base: str, user: int, args, report: dict, finished: asyncio.Event, done: asyncio.Event
) -> None:
    """One student's tab; sets `finished` after its chat, then stays open until `done`."""
    name = f"user {user}"

    def check(run) -> None:
        report["page_s"][("protocol", run.page)].append(run.seconds)
        for problem in (*run.exceptions, *run.error_boxes, run.compile_error):
            if problem:
                report["errors"].append(f"{name} /{run.page}: {problem[:200]}")
        if run.title != PAGES.get(run.page, run.title):
            report["errors"].append(f"{name} /{run.page}: title {run.title!r}")

    await think(args.think)
    session = None
    try:
        session, run = await StreamlitUser.connect(base, "", "lang=en", PAGE_TIMEOUT_S)
        check(run)
        for round_ in range(args.rounds):
            for page in PAGES if round_ else list(PAGES)[1:]:
                await think(args.think)
                try:
                    check(await session.open_page(page, PAGE_TIMEOUT_S))
                except (TimeoutError, KeyError) as exc:
                    report["errors"].append(f"{name} /{page}: {type(exc).__name__}: {exc}")
            start = time.monotonic()
            try:
                answer = await session.chat(f"{QUESTION} (user {user})", CHAT_TIMEOUT_S)
                report["chat_s"]["protocol"].append(time.monotonic() - start)
                report["answers"].append(answer)
            except (TimeoutError, LookupError) as exc:
                report["errors"].append(f"{name} chat: {type(exc).__name__}: {exc}")
        finished.set()
        await done.wait()  # the tab stays open (and its timers polling) until all are done
    except (TimeoutError, ConnectionError, OSError) as exc:
        report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        finished.set()
        if session is not None:
            report["auto_reruns"] += session.auto_reruns
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
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    try:
        await think(args.think)
        start = time.monotonic()
        await page.goto(base + "/?lang=en", timeout=PAGE_TIMEOUT_S * 1000)
        await shown(page, "", start, user, report)
        for round_ in range(args.rounds):
            for path in PAGES if round_ else list(PAGES)[1:]:
                await think(args.think)
                link = page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first
                start = time.monotonic()
                try:
                    await link.click(timeout=PAGE_TIMEOUT_S * 1000)
                    await shown(page, path, start, user, report)
                except Exception as exc:  # a page that never rendered is what we count
                    report["errors"].append(f"browser {user} /{path}: {type(exc).__name__}: {exc}")
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
        await context.close()


async def api_user(url: str, user: int, args, report: dict) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=CHAT_TIMEOUT_S)
    for _ in range(args.rounds):
        await think(args.think)
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


async def progress(report: dict, finished: list[asyncio.Event], every_s: float = 30) -> None:
    """A line every `every_s` seconds while users run, so a run that hangs shows where."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        done = sum(event.is_set() for event in finished)
        print(
            f"  {time.monotonic() - started:5.0f} s: {done} of {len(finished)} protocol users "
            f"done, {len(report['errors'])} errors so far",
            flush=True,
        )


async def run(args: argparse.Namespace, base: str, url: str, report: dict) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = None
        if args.browsers:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        finished = [asyncio.Event() for _ in range(args.users)]
        done = asyncio.Event()
        tabs = [
            asyncio.create_task(protocol_user(base, u, args, report, finished[u], done))
            for u in range(args.users)
        ]
        ticker = asyncio.create_task(progress(report, finished))
        await asyncio.gather(
            *(browser_user(browser, base, u, args, report) for u in range(args.browsers)),
            *(api_user(url, u, args, report) for u in range(args.api_users)),
            *(event.wait() for event in finished),
        )
        ticker.cancel()
        done.set()
        await asyncio.gather(*tabs)
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
    try:
        asyncio.run(run(args, f"http://127.0.0.1:{port}", url, report))
        ended = [jobs.wait(ws, job.id, timeout=600) for job in queued]
    finally:
        app.terminate()
        server.terminate()
    load_after = os.getloadavg()
    lost = [job.id for job in ended if job.status != "succeeded"]
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
    expected = (args.users + args.browsers) * args.rounds
    for kind in ("protocol", "browser"):
        print(f"  chat answers ({kind:8s}) {summary(report['chat_s'][kind])}")
    print(f"  chat answers        {chats} of {expected}")
    if report["answers"]:
        print(f"    e.g. {report['answers'][0][:100]!r}")
    print(f"  API answers         {summary(report['api_s'])}  (of {args.api_users * args.rounds})")
    print(f"  jobs                {len(ended) - len(lost)}/{len(ended)} succeeded {lost or ''}")
    print(f"  errors              {len(report['errors'])}")
    for error in report["errors"][:20]:
        print(f"    {error}")
    failed = report["errors"] or lost or chats < expected
    failed = failed or len(report["api_s"]) < args.api_users * args.rounds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
