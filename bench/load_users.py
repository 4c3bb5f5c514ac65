"""Many users at once: simulated students browse the app and chat, while others call the API.

    python bench/load_users.py                    # 20 browser users + 20 API users, embedded model
    python bench/load_users.py --users 20 --rounds 2 --api-users 20

Starts, on 127.0.0.1 only, `streamlit run app.py` (WORKBENCH_LIMIT_TOKENS caps answers, as a
demo space would) and `workbench serve` on the same workspace, queues a few small jobs, then
runs every user at once: a browser user is a Chromium context (Debian's Chromium through
Playwright) that opens Home, Jobs, Data › Import, Evaluate and Chat and asks the chat a
question; an API user sends chat completions to the server with the official client. Prints
how long pages took to render (median, p95, max), every error seen (a Streamlit exception box,
a failed page load, a failed request), the chat answers received, and whether every queued job
ended `succeeded` — nothing lost. Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, free_port, start_app  # noqa: E402
from workbench import jobs  # noqa: E402
from workbench.models import _link_or_copy, ensure_default_model  # noqa: E402
from workbench.recipes import GenerateRecipe  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402

PAGES = ["/", "/jobs", "/data_import", "/evaluate", "/chat"]
ANSWER_TOKENS = 24
QUESTION = "In one sentence, what is a CPU?"


async def settled(page, timeout_s: float = 300) -> None:
    await asyncio.sleep(0.8)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await page.locator("[data-testid='stStatusWidget']").count() == 0:
            await asyncio.sleep(0.4)
            if await page.locator("[data-testid='stStatusWidget']").count() == 0:
                return
        await asyncio.sleep(0.3)
    raise TimeoutError("still running after 300 s")


async def browser_user(browser, base: str, user: int, rounds: int, report: dict) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    try:
        for _ in range(rounds):
            for path in PAGES:
                start = time.monotonic()
                try:
                    await page.goto(base + path, timeout=300_000)
                    await page.wait_for_selector(
                        "[data-testid='stMainBlockContainer'] h1", timeout=300_000
                    )
                    await settled(page)
                except Exception as exc:  # a page that never rendered is what we count
                    report["errors"].append(f"user {user} {path}: {type(exc).__name__}: {exc}")
                    continue
                report["page_s"].append(time.monotonic() - start)
                if await page.locator("[data-testid='stException']").count():
                    text = await page.locator("[data-testid='stException']").first.inner_text()
                    report["errors"].append(f"user {user} {path}: exception shown: {text[:200]}")
            start = time.monotonic()
            try:
                box = page.locator("[data-testid='stChatInput'] textarea")
                await box.fill(f"{QUESTION} (user {user})", timeout=300_000)
                await box.press("Enter")
                await page.locator("[data-testid='stChatMessage']").nth(1).wait_for(timeout=600_000)
                await settled(page, 600)
                report["chat_s"].append(time.monotonic() - start)
            except Exception as exc:
                report["errors"].append(f"user {user} chat: {type(exc).__name__}: {exc}")
    finally:
        await context.close()


async def api_user(url: str, user: int, rounds: int, report: dict) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    for _ in range(rounds):
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
    return f"n={len(values)} median {statistics.median(values):.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s"


async def run(args: argparse.Namespace, base: str, url: str, report: dict) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        await asyncio.gather(
            *(browser_user(browser, base, u, args.rounds, report) for u in range(args.users)),
            *(api_user(url, u, args.rounds, report) for u in range(args.api_users)),
        )
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="browser users")
    parser.add_argument("--api-users", type=int, default=20, help="API users")
    parser.add_argument("--rounds", type=int, default=1, help="visits of every page per user")
    parser.add_argument("--jobs", type=int, default=3, help="small jobs queued before the load")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="wb-load-")) / "workspace"
    ws = Workspace(home).ensure()
    source = ensure_default_model(Workspace(Path.home() / ".cache" / "workbench-bench").ensure())
    shutil.copytree(source, ws.kind_dir("model") / "default", copy_function=_link_or_copy)
    port = free_port()
    app = start_app(home, port, {"WORKBENCH_LIMIT_TOKENS": str(ANSWER_TOKENS)})
    server, url = start_server(home)
    queued = [
        jobs.submit(ws, GenerateRecipe(model="default", prompts=[f"Say {i}."], max_new_tokens=8))
        for i in range(args.jobs)
    ]
    report: dict = {"page_s": [], "chat_s": [], "api_s": [], "errors": []}
    start = time.monotonic()
    try:
        asyncio.run(run(args, f"http://127.0.0.1:{port}", url, report))
        ended = [jobs.wait(ws, job.id, timeout=600) for job in queued]
    finally:
        app.terminate()
        server.terminate()
    lost = [job.id for job in ended if job.status != "succeeded"]
    print(f"load: {args.users} browser users + {args.api_users} API users, {args.rounds} round(s)")
    print(f"  wall time           {time.monotonic() - start:.0f} s")
    print(f"  page renders        {summary(report['page_s'])}")
    print(f"  chat answers (app)  {summary(report['chat_s'])}  (of {args.users * args.rounds})")
    print(f"  API answers         {summary(report['api_s'])}  (of {args.api_users * args.rounds})")
    print(f"  jobs                {len(ended) - len(lost)}/{len(ended)} succeeded {lost or ''}")
    print(f"  errors              {len(report['errors'])}")
    for error in report["errors"][:20]:
        print(f"    {error}")
    failed = report["errors"] or lost
    failed = failed or len(report["chat_s"]) < args.users * args.rounds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
