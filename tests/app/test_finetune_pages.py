"""The fine-tuning pages as a user meets them: choose the settings (a preset fills them), see
whether the run fits and its CLI command, start it, follow it on the run page with its curves and
probe answers, stop and resume it, merge the adapter, compare runs — in English and 中文.

Same setup as test_pages.py: a fresh workspace per test, the job queue held
(WORKBENCH_CPU_SLOTS=0) so nothing trains behind the test's back, and app.py run on every rerun.
The finished run is real: the job worker runs a 3-step LoRA run of the tiny model in this process.
"""

from __future__ import annotations

import base64
import json
import signal

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from workbench.data.prepare import save_samples
from workbench.i18n import t
from workbench.jobs import get_job, job_recipe, list_jobs, mark_finished, mark_running, submit
from workbench.recipes import TrainRecipe
from workbench.worker import run_job

from .apptest import button, open_app, rerun, texts

FINETUNE, RUNS = "pages/finetune.py", "pages/runs.py"
QA = [
    ("Who are you?", "I am Puyu, made by the lab."),
    ("你是谁？", "我是书生，由实验室开发。"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is fine-tuning?", "Fine-tuning adapts a pretrained language model to new data."),
]


@pytest.fixture
def qa_data(workspace, tiny_artifact) -> str:
    samples = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QA
    ]
    save_samples(workspace, "qa", samples * 5, source="test", eval_fraction=0.2)
    return "qa"


def tiny_recipe(**changes) -> TrainRecipe:
    fields = {
        "model": "tiny",
        "data": "qa",
        "out": "tiny-lora",
        "max_steps": 3,
        "batch_size": 4,
        "cutoff": 64,
        "learning_rate": 3e-2,
        "probe_prompts": ["Who are you?", "你是谁？"],
        "probe_every": 2,
        "probe_max_new_tokens": 8,
        "device": "cpu",
        "dtype": "float32",
    }
    return TrainRecipe(**{**fields, **changes})


@pytest.fixture
def finished_run(workspace, qa_data):
    """A real 3-step LoRA run of the tiny model, run by the job worker in this process."""
    job = submit(workspace, tiny_recipe(), title="train lora: tiny-lora")
    handler = signal.getsignal(signal.SIGTERM)  # the worker installs its own
    try:
        assert run_job(workspace, job.id) == 0, (job.run_dir / "log.txt").read_text()
    finally:
        signal.signal(signal.SIGTERM, handler)
    return get_job(workspace, job.id)


def tiny_page(lang: str = "en") -> AppTest:
    """The Fine-tune page with the tiny model chosen as the base."""
    at = open_app(lang, FINETUNE)
    at.selectbox(key="ft_model").set_value("tiny")
    return rerun(at)


def charts(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures as JSON, by the key the page gave each chart."""
    return {c.proto.id.split("-")[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def values(array) -> list:
    """A plotly JSON array: a list, or numpy data as {"dtype", "bdata" (base64)}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_page_shows_the_fit_verdict_and_the_command(workspace, qa_data, lang):
    at = open_app(lang, FINETUNE)
    assert at.title[0].value == t("ft.title", lang)
    assert t("ft.data_rows", lang, train=16, eval=4) in texts(at)
    assert at.selectbox(key="ft_model").value == "default"  # not prepared: no estimate yet
    assert t("ft.default_unprepared", lang) in texts(at)
    at.selectbox(key="ft_model").set_value("tiny")
    rerun(at)
    verdict = at.success[0].value
    assert verdict.startswith("Fits: needs about" if lang == "en" else "放得下：约需")
    assert t("ft.ram", lang) in verdict
    assert "ft_fit_chart" in str([c.proto.id for c in at.get("plotly_chart")])
    assert ("Time: about **" if lang == "en" else "时间：约 **") in texts(at)
    body = texts(at)
    command = (
        "workbench train --data qa --out qa-lora --preset classroom --model tiny "
        "--probe 'Who are you?' --probe '你是谁？'"
    )
    assert command in body
    assert "kind: train" in body and "lora_rank: 16" in body  # the recipe YAML
    assert not at.error


def test_a_preset_fills_the_widgets(workspace, qa_data):
    at = tiny_page()
    assert at.number_input(key="ft_lora_rank").value == 16  # classroom, the starting preset
    at.selectbox(key="ft_preset").set_value("quality")
    rerun(at)
    assert at.number_input(key="ft_lora_rank").value == 64
    assert at.number_input(key="ft_cutoff").value == 2048
    assert at.number_input(key="ft_grad_accum").value == 4
    assert at.checkbox(key="ft_gradient_checkpointing").value is True
    assert "--preset quality --model tiny --probe" in texts(at)
    at.selectbox(key="ft_preset").set_value("full-classroom")
    rerun(at)
    assert at.selectbox(key="ft_method").value == "full"
    assert at.checkbox(key="ft_gradient_checkpointing").value is False  # back to the default
    assert at.text_input(key="ft_out").value == "qa-full"
    at.number_input(key="ft_batch_size").set_value(2)  # a change of mine survives "no preset"
    at.selectbox(key="ft_preset").set_value("")
    rerun(at)
    assert at.number_input(key="ft_batch_size").value == 2
    assert "--preset" not in texts(at) and "--batch-size 2" in texts(at)


def test_the_settings_survive_another_page_and_a_language_switch(workspace, qa_data):
    at = tiny_page()
    at.selectbox(key="ft_preset").set_value("quality")
    rerun(at)
    at.number_input(key="ft_lora_rank").set_value(32)
    at.text_input(key="ft_out").set_value("mine")
    rerun(at)
    at.switch_page(RUNS)
    rerun(at)
    at.switch_page(FINETUNE)
    rerun(at)
    at.radio(key="lang").set_value("zh")
    rerun(at)
    assert at.title[0].value == t("ft.title", "zh")
    assert at.selectbox(key="ft_model").value == "tiny"
    assert at.selectbox(key="ft_preset").value == "quality"
    assert at.number_input(key="ft_lora_rank").value == 32
    assert at.number_input(key="ft_cutoff").value == 2048
    assert at.text_input(key="ft_out").value == "mine"


def test_start_queues_the_job_and_the_run_page_shows_it(workspace, qa_data):
    at = tiny_page()
    at.number_input(key="ft_max_steps").set_value(3)
    rerun(at)
    button(at, "ft_start").click()
    rerun(at)
    (job,) = list_jobs(workspace)
    assert (job.kind, job.status) == ("train", "queued")
    recipe = job_recipe(job)
    assert (recipe.model, recipe.data, recipe.out, recipe.max_steps) == ("tiny", "qa", "qa-lora", 3)
    assert recipe.preset == "classroom" and recipe.lora_rank == 16
    assert t("ft.started", "en", id=job.id) in texts(at)
    assert at.text_input(key="ft_out").value == "qa-lora-2"  # the queued job holds the name
    at.text_input(key="ft_out").set_value("qa-lora")
    rerun(at)
    assert f"Job {job.id} is already making an artifact named 'qa-lora'" in at.error[0].value
    at.text_input(key="ft_out").set_value("qa-lora-2")
    rerun(at)
    button(at, "ft_open_run").click()
    rerun(at)
    assert at.title[0].value == t("runs.title", "en")
    assert at.selectbox(key="runs_select").value == job.id
    assert t("runs.no_steps", "en") in texts(at)
    assert [b for b in at.button if b.key == f"cancel-{job.id}"]


def test_a_taken_name_and_a_missing_dataset_are_explained(workspace, tiny_artifact):
    at = open_app("zh", FINETUNE)
    assert t("ft.no_data", "zh") in texts(at)
    assert not [b for b in at.button if b.key == "ft_start"]
    save_samples(workspace, "qa", [{"text": "hello world"}] * 4, source="test")
    at = tiny_page()
    at.text_input(key="ft_out").set_value("tiny")  # the base model's name
    rerun(at)
    error = at.error[0].value
    assert "An artifact called 'tiny' exists already" in error and t("error.fix", "en") in error
    assert not [b for b in at.button if b.key == "ft_start"]
    at.text_input(key="ft_out").set_value("bad name!")
    rerun(at)
    assert "output name" in at.error[0].value


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_finished_run_shows_its_curves_probes_and_what_to_do_next(workspace, finished_run, lang):
    job = finished_run
    assert job.status == "succeeded" and job.result["artifact"] == "tiny-lora"
    at = open_app(lang, RUNS)
    assert at.title[0].value == t("runs.title", lang)
    assert at.selectbox(key="runs_select").value == job.id
    body = texts(at)
    assert f"**{t('runs.status', lang)}**  \n{t('status.succeeded', lang)}" in body
    assert f"**{t('runs.c_step', lang)}**  \n3 / 3" in body
    figures = charts(at)
    loss = {trace["name"]: trace for trace in figures["run_loss"]["data"]}
    assert set(loss) == {t("runs.m_loss", lang), t("runs.m_eval_loss", lang)}
    assert values(loss[t("runs.m_loss", lang)]["x"]) == [1, 2, 3]
    assert {"run_lr", "run_grad_norm", "run_tokens_per_s", "run_memory_mb"} <= set(figures)
    probes = at.table[0].value
    columns = [t("runs.prompt", lang), t("runs.base", lang)]
    columns += [t("runs.step_n", lang, step=s) for s in (2, 3)]
    assert list(probes.columns) == columns
    assert list(probes[t("runs.prompt", lang)]) == ["Who are you?", "你是谁？"]
    assert "workbench chat --model tiny-lora 'Who are you?'" in body
    assert "workbench merge --adapter tiny-lora --out tiny-lora-merged" in body
    assert not [b for b in at.button if b.key in (f"cancel-{job.id}", f"resume-{job.id}")]


def test_merge_queues_a_merge_job(workspace, finished_run):
    at = open_app("en", RUNS)
    button(at, f"merge-start-{finished_run.id}").click()
    rerun(at)
    merge = next(j for j in list_jobs(workspace) if j.kind == "merge")
    assert (job_recipe(merge).adapter, job_recipe(merge).out) == ("tiny-lora", "tiny-lora-merged")
    assert t("runs.merge_started", "en", id=merge.id) in texts(at)


def test_compare_overlays_the_curves_and_lists_what_differs(workspace, finished_run):
    other = submit(workspace, tiny_recipe(out="tiny-lora-b", learning_rate=1e-3))
    at = open_app("en", RUNS, job=finished_run.id)  # a link to the older run
    assert at.selectbox(key="runs_select").value == finished_run.id
    assert at.multiselect(key="runs_compare").value == [other.id, finished_run.id]
    figures = charts(at)
    assert len(figures["compare_loss"]["data"]) == 1  # the queued run has no step yet
    diff = next(d.value for d in at.dataframe if t("runs.field", "en") in d.value.columns)
    assert list(diff[t("runs.field", "en")]) == ["out", "learning_rate"]
    assert diff.iloc[1, 1:].tolist() == ["0.001", "0.03"]


def test_a_run_is_stopped_resumed_and_a_failure_explained(workspace, qa_data):
    job = submit(workspace, tiny_recipe(), title="train lora: tiny-lora")
    at = open_app("en", RUNS)
    button(at, f"cancel-{job.id}").click()
    rerun(at)
    assert get_job(workspace, job.id).status == "cancelled"
    assert f"workbench jobs resume {job.id}" in texts(at)
    button(at, f"resume-{job.id}").click()
    rerun(at)
    assert get_job(workspace, job.id).status == "queued"
    mark_running(workspace, job.id)  # this process plays the worker, and fails
    error = "Out of memory while training.\n  where: step 2\n  fix:   Halve batch_size."
    mark_finished(workspace, job.id, "failed", result={}, error=error)
    rerun(at)
    failure = at.error[0].value
    assert failure.startswith(t("runs.failed", "en")) and "Halve batch_size." in failure
    assert [b for b in at.button if b.key == f"resume-{job.id}"]


def test_the_runs_page_without_runs_points_to_fine_tune(workspace):
    at = open_app("zh", RUNS)
    assert t("runs.none", "zh") in texts(at)
