"""Preference tuning as a user meets it: save the bundled pairs, browse them side by side, one
click to the fine-tuning page with DPO filled in, a finished DPO run's reward charts and held-out
accuracy on the runs page, and the prefs: task on the evaluation page — in English and 中文.

The finished run is real: the job worker runs a 3-step DPO run of the tiny model in this process.
"""

from __future__ import annotations

import json
import signal

import pytest

from workbench.chat_store import record_vote
from workbench.data.prefs import import_prefs
from workbench.i18n import t
from workbench.jobs import get_job, submit
from workbench.recipes import TrainRecipe
from workbench.worker import run_job

from .apptest import button, open_app, rerun, texts

PREFS, FINETUNE, RUNS, EVALUATE = (
    "pages/data_prefs.py", "pages/finetune.py", "pages/runs.py", "pages/evaluate.py",
)  # fmt: skip


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_save_the_bundled_pairs_and_browse_them_side_by_side(workspace, lang):
    at = open_app(lang, PREFS)
    assert at.title[0].value == t("prefs.title", lang)
    assert t("prefs.none", lang) in texts(at)
    button(at, "prefs_save").click()
    rerun(at)
    assert t("prefs.saved", lang, name="prefs", train_rows=198, eval_rows=22, rejected=0) in texts(
        at
    )
    assert workspace.get("prefs").metrics["data_kind"] == "preference"
    table = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    assert len(table) == 198 and {"prompt", "rejected"} <= set(table.columns)
    (chosen,) = at.success[-1:]
    assert t("prefs.chosen", lang) in chosen.value
    assert t("prefs.rejected", lang) in at.error[-1].value
    at.radio(key="prefs_split").set_value("eval")
    rerun(at)
    assert len(next(d.value for d in at.dataframe if "chosen" in d.value.columns)) == 22
    at.radio(key="prefs_split").set_value("rejects")
    rerun(at)
    assert t("prefs.no_rejects", lang) in texts(at)


def test_arena_votes_are_counted_and_an_empty_arena_is_explained(workspace):
    at = open_app("en", PREFS)
    at.radio(key="prefs_source").set_value("arena")
    rerun(at)
    assert "0 arena votes" in texts(at)
    button(at, "prefs_save").click()
    rerun(at)
    assert "There are no arena votes yet." in at.error[0].value
    vote = dict(prompt="Hi", models=["a", "b"], answers=["Hello!", "Go."])
    record_vote(workspace, outcome="win", winner="a", **vote)
    record_vote(workspace, outcome="tie", **vote)
    rerun(at)
    assert "2 arena votes: 1 with a winner give 1 pairs; left out: 1 ties" in texts(at)
    at.text_input(key="prefs_name").set_value("arena-prefs")
    button(at, "prefs_save").click()
    rerun(at)
    assert workspace.get("arena-prefs").metrics["arena"]["pairs"] == 1


def test_one_click_opens_fine_tuning_with_dpo_filled_in(workspace, tiny_artifact):
    import_prefs(workspace, next(iter(_bundled())), name="prefs")
    at = open_app("en", PREFS)
    button(at, "prefs_train").click()
    rerun(at)
    assert at.title[0].value == t("ft.title", "en")
    assert at.selectbox(key="ft_data").value == "prefs"
    assert at.selectbox(key="ft_objective").value == "dpo"
    at.switch_page(FINETUNE)  # AppTest stays on its page between runs; the user is here now
    at.selectbox(key="ft_model").set_value("tiny")
    rerun(at)
    assert at.selectbox(key="ft_objective").value == "dpo"
    body = texts(at)
    assert "--objective dpo" in body and "objective: dpo" in body and "beta: 0.1" in body
    assert not at.error, [e.value for e in at.error]


def _bundled():
    from workbench.data.prefs import bundled_prefs

    return bundled_prefs().values()


@pytest.fixture
def finished_dpo(workspace, tiny_artifact):
    import_prefs(workspace, next(iter(_bundled())), name="prefs", eval_fraction=0.05)
    recipe = TrainRecipe(
        model="tiny", data="prefs", out="tiny-dpo", objective="dpo", max_steps=3, batch_size=2,
        cutoff=64, learning_rate=3e-2, device="cpu", dtype="float32",
    )  # fmt: skip
    job = submit(workspace, recipe, title="train dpo (lora): tiny-dpo")
    handler = signal.getsignal(signal.SIGTERM)  # the worker installs its own
    try:
        assert run_job(workspace, job.id) == 0, (job.run_dir / "log.txt").read_text()
    finally:
        signal.signal(signal.SIGTERM, handler)
    return get_job(workspace, job.id)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_dpo_run_shows_rewards_and_held_out_accuracy(finished_dpo, lang):
    at = open_app(lang, RUNS, job=finished_dpo.id)
    keys = str([c.proto.id for c in at.get("plotly_chart")])
    for chart in ("run_loss", "run_pref_rewards", "run_pref_margin", "run_pref_accuracy"):
        assert chart in keys
    accuracy = next(
        json.loads(c.proto.spec) for c in at.get("plotly_chart") if "accuracy" in c.proto.id
    )
    names = [trace["name"] for trace in accuracy["data"]]
    assert names == [t("prefs.m_reward_acc", lang), t("prefs.m_pref_acc", lang)]
    assert not at.error

    at = open_app(lang, EVALUATE)
    assert "prefs:prefs" in at.multiselect(key="ev_tasks").options
    at.multiselect(key="ev_tasks").set_value(["prefs:prefs"])
    rerun(at)
    assert t("prefs.eval_hint", lang) in texts(at)
