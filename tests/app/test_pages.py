"""The app as a user meets it: every page renders in English and 中文, on an empty workspace and on
one with models, lineage and jobs; the buttons do what they say.

Jobs are held in the queue (WORKBENCH_CPU_SLOTS=0) so no worker starts behind the test's back;
a "running" job is this test process registered as its worker, with events written by hand.
"""

from __future__ import annotations

import json

import pytest
import streamlit.testing.v1.app_test as app_test
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from tests.app.apptest import REPO_ROOT, TIMEOUT, open_app, texts
from workbench.i18n import t
from workbench.jobs import (
    EVENTS_FILE,
    LOG_FILE,
    get_job,
    list_jobs,
    mark_finished,
    mark_running,
    submit,
)
from workbench.progress import EventLog
from workbench.recipes import GenerateRecipe


def queued_job(ws, title: str = "say hi"):
    return submit(ws, GenerateRecipe(model="tiny", prompts=["hi"]), title=title)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_home_renders_on_an_empty_workspace(workspace, lang):
    at = open_app(lang)
    assert at.title[0].value == t("home.title", lang)
    body = texts(at)
    assert str(workspace.root) in body
    assert t("home.no_lineage", lang) in body
    assert t("home.no_jobs", lang) in body
    assert at.button[0].label == t("home.prepare", lang)
    assert not at.error


def test_language_switch_changes_the_text_and_the_url(workspace):
    at = open_app("en")
    at.radio(key="lang").set_value("zh").run()
    assert at.title[0].value == "Workbench：从数据到智能体"
    assert at.query_params["lang"] == "zh"
    at.switch_page("pages/jobs.py").run()
    assert at.title[0].value == "任务"


def test_prepare_button_submits_the_prepare_job(workspace):
    at = open_app("en")
    at.button[0].click().run()
    assert not at.exception
    jobs = list_jobs(workspace)
    assert [j.kind for j in jobs] == ["prepare_model"]
    assert jobs[0].status == "queued"
    # the page now says the model is being prepared instead of offering the button again
    assert t("home.preparing", "en", id=jobs[0].id) in texts(at)
    assert not [b for b in at.button if b.label == t("home.prepare", "en")]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_home_shows_models_lineage_and_jobs(workspace, tiny_artifact, lang):
    with workspace.create(
        "adapter", "tiny-lora", parents=["tiny"], metrics={"eval_loss": 1.234}
    ) as staging:
        (staging / "adapter_config.json").write_text("{}")
    job = queued_job(workspace)
    at = open_app(lang)
    models = at.dataframe[0].value
    assert "tiny" in set(models[t("home.col_name", lang)])
    dot = at.get("graphviz_chart")[0].proto.spec
    assert '"tiny" -> "tiny-lora"' in dot and "eval_loss: 1.234" in dot
    recent = at.dataframe[1].value
    assert job.id in set(recent[t("jobs.col_id", lang)])
    assert t("status.queued", lang) in set(recent[t("jobs.col_status", lang)])


def test_a_corrupt_manifest_does_not_break_the_home_page(workspace, tiny_artifact):
    broken = workspace.kind_dir("model") / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json", "utf-8")
    at = open_app("en")
    assert "tiny" in set(at.dataframe[0].value[t("home.col_name", "en")])


def test_a_workbench_error_shows_what_where_and_fix(workspace, monkeypatch):
    queued_job(workspace)
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "lots")  # the queue refuses to dispatch
    at = open_app("zh")
    errors = [e.value for e in at.error]
    assert errors, "expected an error box"
    assert any("WORKBENCH_CPU_SLOTS" in e and "位置：" in e and "解决办法：" in e for e in errors)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_jobs_page_shows_a_submitted_job(workspace, lang):
    job = queued_job(workspace)
    at = open_app(lang, page="pages/jobs.py")
    assert at.title[0].value == t("jobs.title", lang)
    assert at.selectbox(key="job_select").value == job.id
    body = texts(at)
    assert f"**{t('jobs.status', lang)}**  \n{t('status.queued', lang)}" in body
    assert f"workbench run {job.run_dir / 'recipe.yaml'}" in body
    assert "kind: generate" in body  # the recipe YAML


def test_cancel_button_cancels_a_queued_job(workspace):
    job = queued_job(workspace)
    at = open_app("en", page="pages/jobs.py")
    at.button(key=f"cancel-{job.id}").click().run()
    assert not at.exception
    assert get_job(workspace, job.id).status == "cancelled"
    assert f"**{t('jobs.status', 'en')}**  \n{t('status.cancelled', 'en')}" in texts(at)


def test_jobs_page_follows_a_running_job_then_shows_its_failure(workspace):
    job = queued_job(workspace, title="training run")
    queued_job(workspace, title="a later job")
    mark_running(workspace, job.id)  # this process plays the worker
    events = EventLog(job.run_dir / EVENTS_FILE)
    for step in range(1, 6):
        events(step=step, total=10, message="training", loss=3.0 / step, lr=2e-4)
    (job.run_dir / LOG_FILE).write_text("step 5: loss 0.6\n", "utf-8")

    at = open_app("en", page="pages/jobs.py", job=job.id)  # a link straight to this job
    assert at.selectbox(key="job_select").value == job.id
    assert at.get("progress")[-1].proto.value == 50
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {trace["name"] for trace in figure["data"]} == {"loss", "lr"}
    assert [b for b in at.button if b.label == t("jobs.cancel", "en")]
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)  # running and queued jobs
    assert f"**training run**  \n`{job.id}` · running · 50%" in sidebar
    assert "**a later job**" in sidebar

    error = "Out of memory while training.\n  where: step 6\n  fix:   Lower the batch size."
    mark_finished(workspace, job.id, "failed", result={}, error=error)
    at.run()
    assert not at.exception
    assert any("Out of memory" in e.value and "Lower the batch size" in e.value for e in at.error)
    assert "step 5: loss 0.6" in texts(at)  # the log tail
    assert not [b for b in at.button if b.label == t("jobs.cancel", "en")]


def test_a_page_run_without_app_py_goes_through_it(workspace, monkeypatch):
    # What a fresh server does with a first request for /jobs: the legacy pages/ mode runs the
    # page alone. The page must send the run through app.py (sidebar, language) instead.
    monkeypatch.setattr(app_test, "PagesManager", PagesManager)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["lang"] = "zh"
    at.switch_page("pages/jobs.py").run()
    assert not at.exception
    assert at.sidebar.radio(key="lang").value == "zh"
    assert at.title[0].value == t("home.title", "zh")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_home_lists_every_step_of_the_chain_in_order(workspace, lang):
    at = open_app(lang)
    steps = ("data", "finetune", "quantize", "evaluate", "chat", "agent")
    start = next(m.value for m in at.markdown if t("home.step_data", lang) in m.value)
    assert start.splitlines() == [
        f"{i}. {t(f'home.step_{s}', lang)}" for i, s in enumerate(steps, 1)
    ]
