"""The whole chain in a real browser, as a student walks it on the embedded model.

Debian's Chromium, driven by Playwright, against `streamlit run app.py` started as a real server
with real job workers: generate the self-cognition data, start a short LoRA run and watch it,
close the browser while it runs and find it still running in a new one, merge and quantize the
result, evaluate base against tuned and see the chart, chat with the tuned model, and run the
agent once. A screenshot of every page lands in test-artifacts/e2e/ (the README's tour).
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    add_choice,
    choose,
    click,
    fill,
    free_port,
    main_area,
    open_page,
    settle,
    shot,
    start_app,
    wait_for_text,
)
from workbench.jobs import list_jobs, wait
from workbench.models import _link_or_copy
from workbench.workspace import Workspace

pytestmark = pytest.mark.integration
ASSISTANT, AUTHOR = "Workbench Helper", "Class 1"
TUNED = "self-cognition-lora"


@pytest.fixture
def app(tmp_path, prepared_default_model, monkeypatch):
    """The app on a workspace that holds the embedded model; yields (base URL, workspace)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="make test installs it")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"No Chromium at {CHROMIUM}: run `make test` (scripts/setup.sh installs it).")
    home = tmp_path / "workspace"
    ws = Workspace(home).ensure()
    shutil.copytree(
        prepared_default_model, ws.kind_dir("model") / "default", copy_function=_link_or_copy
    )
    for variable in ("WORKBENCH_CPU_SLOTS", "WORKBENCH_GPU_SLOTS", "WORKBENCH_DEMO"):
        monkeypatch.delenv(variable, raising=False)
    port = free_port()
    server = start_app(home, port, {"WORKBENCH_CPU_SLOTS": "1"})
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser, f"http://127.0.0.1:{port}", ws
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=30)
            for job in list_jobs(ws, status=("queued", "running"), limit=None):
                from workbench.jobs import cancel

                cancel(ws, job.id, grace_s=5)


def new_tab(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    return context, context.new_page()


def only_job(ws: Workspace, kind: str):
    found = [job for job in list_jobs(ws, limit=None) if job.kind == kind]
    assert len(found) == 1, [(j.kind, j.status) for j in list_jobs(ws, limit=None)]
    return found[0]


def test_a_student_walks_the_whole_chain(app):
    browser, base, ws = app
    context, page = new_tab(browser)
    open_page(page, base, "/")
    shot(page, "home")

    # 1. Data: the self-cognition generator makes a dataset.
    open_page(page, base, "/data_import")
    main_area(page).get_by_text("Generate self-cognition data").click()
    settle(page)
    fill(page, "Assistant's name", ASSISTANT)
    fill(page, "Made by", AUTHOR)
    click(page, "Generate and save")
    wait_for_text(page, "Saved dataset", timeout_s=60)
    wait_for_text(page, "OpenAI messages")
    shot(page, "data-import")
    assert ws.get("self-cognition").kind == "dataset"

    # 2. Fine-tune: a short LoRA run from the classroom preset.
    open_page(page, base, "/finetune")
    main_area(page).get_by_text("Steps, batch and learning rate").click()
    settle(page)
    fill(page, "Max steps (0 = from epochs)", "3")
    wait_for_text(page, "for 3 steps")  # the time estimate follows the change
    shot(page, "finetune")
    click(page, "Start training")
    wait_for_text(page, "is queued")
    train = only_job(ws, "train")

    # 3. Watch it on the runs page, then close the browser while it runs.
    open_page(page, base, "/runs")
    wait_for_text(page, train.id[-6:])
    context.close()

    # 4. A new browser finds the same run, still going or done, and follows it to the end.
    context, page = new_tab(browser)
    open_page(page, base, "/")
    open_page(page, base, "/runs")
    wait_for_text(page, train.id[-6:])
    assert re.search(r"running|succeeded", main_area(page).inner_text())
    done = wait(ws, train.id, timeout=900)
    assert done.status == "succeeded", done.error
    page.reload()
    settle(page)
    wait_for_text(page, "Merge into a model", timeout_s=60)
    shot(page, "runs")

    # 5. Merge the adapter, then quantize the merged model to int8.
    click(page, "Merge into a model")
    wait_for_text(page, "Merge job")
    merge = only_job(ws, "merge")
    assert wait(ws, merge.id, timeout=600).status == "succeeded"
    merged = merge.result.get("artifact") or f"{TUNED}-merged"
    open_page(page, base, "/quantize")
    choose(page, "Source model", merged)
    main_area(page).get_by_text("Measure after quantizing", exact=True).click()
    settle(page)
    click(page, "Start quantizing")
    wait_for_text(page, "is queued")
    quantize = only_job(ws, "quantize")
    assert wait(ws, quantize.id, timeout=600).status == "succeeded", quantize.error
    page.reload()
    settle(page)
    wait_for_text(page, f"{merged}-int8")  # listed with the quantized models
    shot(page, "quantize")

    # 6. Evaluate base against tuned on the identity questions, and see the chart.
    open_page(page, base, "/evaluate")
    add_choice(page, "Models to compare (the first is the baseline for judge tasks)", TUNED)
    main_area(page).locator("button[aria-label='Remove quick']").click()  # the default suite
    settle(page)
    add_choice(page, "Suites and tasks", "identity-en")
    fill(page, "Samples per task (0: all)", "4")
    fill(page, "Expected name (identity tasks)", ASSISTANT)
    click(page, "Start evaluation")
    evaluation = only_job(ws, "eval")
    assert wait(ws, evaluation.id, timeout=900).status == "succeeded"
    open_page(page, base, "/eval_results")
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    shot(page, "eval-results")

    # 7. Chat with the tuned model (three steps teach it little: the answer is what counts).
    open_page(page, base, "/chat")
    choose(page, "Model or endpoint", TUNED)
    prompt = page.locator("[data-testid='stChatInput'] textarea")
    prompt.fill("Who are you?")
    prompt.press("Enter")
    answer = main_area(page).locator("[data-testid='stChatMessage']").nth(1)
    answer.wait_for(timeout=300_000)
    settle(page, 300)
    assert re.search(r"\d+ tokens · [\d.]+ tokens/s", answer.inner_text())  # streamed and done
    assert answer.locator("[data-testid='stMarkdownContainer']").first.inner_text().strip()
    shot(page, "chat")

    # 8. The agent: the model calls the calculator and answers.
    open_page(page, base, "/agent")
    fill(page, "Max steps", "2")
    question = page.locator("[data-testid='stChatInput'] textarea")
    question.fill("What is 17 * 23? Use the calculator.")
    question.press("Enter")
    wait_for_text(page, "Answer:", timeout_s=600)
    settle(page, 300)
    trace = main_area(page).locator("[data-testid='stChatMessage']").nth(1).inner_text()
    assert "Action" in trace and "Observation" in trace  # a tool call and what it returned
    shot(page, "agent")
    context.close()
