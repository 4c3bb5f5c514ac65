"""The Quantize page as a user meets it: choose a model and a method (int4 asks for a group, AWQ
for calibration data), see the equivalent command, start the job, and find the quantized model
in the results — in English and 中文. The queue is held (WORKBENCH_CPU_SLOTS=0) so nothing runs
behind the test's back; the quantized model in the results is made for real by run_quantize."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.i18n import t
from workbench.jobs import job_recipe, list_jobs
from workbench.quantize.runner import run_quantize
from workbench.recipes import QuantizeRecipe

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/quantize.py"


def open_page(lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60)
    at.query_params.update({"lang": lang})
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def codes(at: AppTest) -> str:
    return "\n".join(c.value for c in at.code)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_awq_asks_for_group_and_calibration_and_starts_the_job(workspace, tiny_artifact, lang):
    at = open_page(lang)
    assert at.title[0].value == t("quant.title", lang)
    assert t("quant.no_results", lang) in [i.value for i in at.info]
    at.selectbox(key="q_model").set_value("tiny").run()
    assert "workbench quantize --model tiny --method int8 --out tiny-int8" in codes(at)
    at.selectbox(key="q_method").set_value("int4-awq").run()
    assert at.selectbox(key="q_group").value == 128
    assert at.selectbox(key="q_calib").value == ""  # the bundled set by default
    at.selectbox(key="q_group").set_value(64).run()
    assert "--method int4-awq --group 64 --out tiny-int4-awq" in codes(at)
    at.button(key="q_start").click().run()
    assert not at.exception
    jobs = list_jobs(workspace)
    assert [j.kind for j in jobs] == ["quantize"]
    recipe = job_recipe(jobs[0])
    assert (recipe.model, recipe.method, recipe.group, recipe.out) == (
        "tiny",
        "int4-awq",
        64,
        "tiny-int4-awq",
    )
    assert t("quant.started", lang, id=jobs[0].id) in [s.value for s in at.success]


def test_results_list_the_quantized_model_and_a_taken_name_is_refused(workspace, tiny_artifact):
    run_quantize(
        QuantizeRecipe(model="tiny", method="int8", out="tiny-int8", report=False),
        workspace=workspace,
    )
    at = open_page("en")
    table = at.dataframe[0].value
    assert table.iloc[0][t("quant.c_name", "en")] == "tiny-int8"
    assert table.iloc[0][t("quant.c_method", "en")] == "int8"
    assert (
        table.iloc[0][t("quant.c_size_mb", "en")] < table.iloc[0][t("quant.c_source_size_mb", "en")]
    )
    # quantized models are not offered as sources, and the default name is taken now
    assert "tiny-int8" not in at.selectbox(key="q_model").options
    at.selectbox(key="q_model").set_value("tiny").run()
    assert any("tiny-int8" in e.value and "exists already" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "q_start"]
