"""Quantize: pick a model and a method, see the command, start the job; then the results —
size, perplexity and decode speed against the source, charts, and answers side by side."""

from __future__ import annotations

import streamlit as st

from workbench.data.prepare import list_datasets
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.jobs import get_job, submit
from workbench.models import list_models
from workbench.quantize.view import (
    INT4_METHODS,
    answers_frame,
    quantize_command,
    quantized_frame,
    speed_figure,
    tradeoff_figure,
)
from workbench.recipes import QUANT_GROUPS, QUANT_METHODS, QuantizeRecipe, dump_recipe
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
WORDS = {k: t(f"quant.w_{k}", lang) for k in ("source", "quantized", "size", "ppl", "speed")}
WORDS["prompt"] = t("quant.w_prompt", lang)


def settings() -> QuantizeRecipe:
    """The recipe the widgets describe (raises WorkbenchError for a bad or taken value)."""
    sources = [r["name"] for r in list_models(ws) if r["variant"] != "quantized"]
    left, middle, right = st.columns(3)
    model = left.selectbox(t("quant.source", lang), sources, key="q_model")
    method = middle.selectbox(
        t("quant.method", lang),
        QUANT_METHODS,
        key="q_method",
        format_func=lambda m: t(f"quant.m_{m.replace('-', '_')}", lang),
    )
    group, calib = 128, ""
    if method in (*INT4_METHODS, "lmdeploy-awq"):
        group = right.selectbox(
            t("quant.group", lang),
            QUANT_GROUPS,
            index=2,
            key="q_group",
            help=t("quant.h_group", lang),
        )
    if method == "int4-awq":
        datasets = ["", *(d["name"] for d in list_datasets(ws))]
        calib = right.selectbox(
            t("quant.calib", lang),
            datasets,
            key="q_calib",
            format_func=lambda d: d or t("quant.calib_bundled", lang),
        )
    out = st.text_input(
        t("quant.out", lang), value=f"{model}-{method}", key=f"q_out_{model}_{method}"
    )
    report = st.checkbox(
        t("quant.report", lang), value=True, key="q_report", help=t("quant.h_report", lang)
    )
    recipe = QuantizeRecipe(
        model=model, method=method, out=out.strip(), group=group, calib=calib, report=report
    )
    ws.refuse_taken(recipe.out)
    return recipe


def show_results() -> None:
    st.subheader(t("quant.results", lang))
    frame = quantized_frame(ws)
    if frame.empty:
        st.info(t("quant.no_results", lang))
        return
    shown = frame.rename(columns={c: t(f"quant.c_{c}", lang) for c in frame.columns})
    st.dataframe(shown, hide_index=True, width="stretch")
    st.caption(t("quant.results_caption", lang))
    left, right = st.columns(2)
    left.plotly_chart(tradeoff_figure(frame, WORDS), key="q_tradeoff")
    right.plotly_chart(speed_figure(frame, WORDS), key="q_speed")
    name = st.selectbox(t("quant.pick", lang), frame["name"].tolist(), key="q_pick")
    job_id = ws.get(name).job
    result = get_job(ws, job_id).result if job_id else {}
    if result.get("answers"):
        st.markdown(t("quant.answers", lang))
        st.dataframe(answers_frame(result, WORDS), hide_index=True, width="stretch")
    st.code(f'workbench chat --model {name} "What is the capital of France?"', language="bash")


st.title(t("quant.title", lang))
st.caption(t("quant.caption", lang))
try:
    recipe = settings()
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    recipe = None
if recipe is not None:
    with st.expander(t("quant.reproduce", lang)):
        st.code(quantize_command(recipe), language="bash")
        st.code(dump_recipe(recipe), language="yaml")
    if st.button(t("quant.start", lang), type="primary", icon=":material/compress:", key="q_start"):
        try:
            job = submit(ws, recipe, title=f"quantize {recipe.method}: {recipe.out}")
        except WorkbenchError as exc:
            st.error(error_text(exc, lang))
        else:
            st.session_state["q_started"] = job.id
if st.session_state.get("q_started"):
    st.success(t("quant.started", lang, id=st.session_state["q_started"]))
    st.page_link("pages/jobs.py", label=t("quant.open_jobs", lang), icon=":material/list_alt:")
show_results()
