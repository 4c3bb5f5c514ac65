"""The Evaluate pages as a user meets them: choose models and tasks, see the exact prompts and the
CLI command, start the job, open the results (leaderboard, charts, the verdict on a difference,
samples where models disagree, exports, an earlier run) — in English and 中文.

Same setup as the other AppTests: a fresh workspace, the job queue held (WORKBENCH_CPU_SLOTS=0)
so that the job runs only when the test runs it (with the real worker code, in this process).
"""

from __future__ import annotations

import shutil
import signal

import pytest

from tests.conftest import build_tiny_model
from workbench.evaluate.runner import run_eval
from workbench.i18n import t
from workbench.jobs import get_job, job_recipe, list_jobs
from workbench.recipes import EvalRecipe
from workbench.worker import run_job

from .apptest import frame_with, open_app, rerun, texts

EVALUATE, RESULTS = "pages/evaluate.py", "pages/eval_results.py"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_models(workspace, tiny_artifact, tmp_path):
    other = build_tiny_model(tmp_path / "other", layers=1, hidden=32)
    with workspace.create("model", "tiny-small", variant="quantized", parents=["tiny"]) as staging:
        for item in other.iterdir():
            shutil.copy2(item, staging / item.name)
    return workspace


def test_choose_see_prompts_and_start(workspace, tiny_artifact):
    at = open_app("en", EVALUATE)
    shown = texts(at)
    assert t("eval.title") in shown
    assert "Question: What is the chemical symbol for gold?\nAnswer:⟦ Au⟧" in shown  # quick suite
    assert "workbench eval --models default --tasks quick --limit 20" in shown
    at.multiselect(key="ev_models").set_value(["tiny"])
    at.multiselect(key="ev_tasks").set_value(["knowledge-zh", "arithmetic-en"])
    at.number_input(key="ev_limit").set_value(3)
    rerun(at)
    shown = texts(at)
    assert "问题：中国的首都是哪座城市？\n答案：⟦北京⟧" in shown
    assert 'write the final number on the last line as "Answer: <number>"' in shown
    assert "workbench eval --models tiny --tasks knowledge-zh,arithmetic-en --limit 3" in shown
    next(b for b in at.button if b.key == "ev_start").click()
    rerun(at)
    (job,) = list_jobs(workspace)
    recipe = job_recipe(job)
    assert (recipe.models, recipe.tasks, recipe.limit) == (
        ["tiny"],
        ["knowledge-zh", "arithmetic-en"],
        3,
    )
    handler = signal.getsignal(signal.SIGTERM)  # the worker installs its own
    try:
        recipe_dtype = recipe.dtype  # the job runs as the page queued it
        assert recipe_dtype == "auto"
        assert run_job(workspace, job.id) == 0, (job.run_dir / "log.txt").read_text()
    finally:
        signal.signal(signal.SIGTERM, handler)
    artifact = get_job(workspace, job.id).result["artifact"]
    rerun(at)
    assert f"`{artifact}`" in texts(at)
    (link,) = [x for x in at.get("page_link") if x.proto.label == t("eval.open_results")]
    assert f"eval={artifact}" in link.proto.query_string


def test_incomplete_choices_say_what_is_missing(workspace):
    at = open_app("en", EVALUATE)
    at.multiselect(key="ev_models").set_value([])
    rerun(at)
    assert "Field 'models' of the 'eval' recipe is empty" in texts(at)
    assert not [b for b in at.button if b.key == "ev_start"]


def test_results_page_in_both_languages(two_models):
    ws = two_models
    for name in ("older", "newer"):
        run_eval(
            EvalRecipe(
                models=["tiny", "tiny-small"], tasks=["knowledge-en", "reasoning-en"], limit=8,
                dtype="float32", name=name,
            ),
            workspace=ws,
        )  # fmt: skip
    at = open_app("en", RESULTS, eval="older")
    shown = texts(at)
    assert t("eval.board_title") in shown and "Models: tiny, tiny-small" in shown
    keys = {c.proto.id.split("-")[-1] for c in at.get("plotly_chart")}
    assert {"ev_bars", "ev_radar", "ev_scatter"} <= keys
    board = at.dataframe[0].value  # the leaderboard comes first
    assert list(board.index) == ["tiny", "tiny-small"]
    assert any(
        v in shown for v in ("scores higher than", "scores lower than", "No clear difference")
    )
    samples = frame_with(at, "tiny · score")
    if not samples.empty:  # every row shown is one where the two models' scores differ
        assert (samples["tiny · score"] != samples["tiny-small · score"]).all()
    assert {b.key for b in at.get("download_button")} >= {
        "ev_export_csv",
        "ev_export_md",
        "ev_export_json",
    }
    compare = frame_with(at, "change")
    assert set(compare["change"]) == {0.0}  # the same models and samples: the same scores
    zh = open_app("zh", RESULTS, eval="newer")
    assert t("eval.board_title", "zh") in texts(zh)


def test_results_page_without_results(workspace):
    at = open_app("zh", RESULTS)
    assert t("eval.no_results", "zh") in texts(at)
