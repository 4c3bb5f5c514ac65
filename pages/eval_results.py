"""Evaluation results: the leaderboard with 95% intervals, bars per task, radar by capability,
quality against size or speed, whether a difference is real (paired bootstrap), the samples where
models disagree side by side, exports, and a comparison with an earlier run."""

from __future__ import annotations

import streamlit as st

from workbench.errors import WorkbenchError
from workbench.evaluate import charts, report
from workbench.evaluate.view import difference_verdict
from workbench.i18n import error_text, t
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
WORDS = {k: t(f"eval.w_{k}", lang) for k in charts.LABELS}


def show_overview(rep: report.EvalReport) -> None:
    st.subheader(t("eval.board_title", lang))
    board = report.leaderboard(rep).rename_axis(index=WORDS["model"], columns=WORDS["task"])
    st.dataframe(board.style.format("{:.3f}"), key="ev_board")
    st.caption(t("eval.board_help", lang))
    with st.expander(t("eval.all_metrics", lang)):
        st.dataframe(report.metrics_table(rep), hide_index=True, key="ev_metrics")
    st.plotly_chart(charts.task_bars(rep, WORDS), key="ev_bars")
    lower = charts.lower_bars(rep, WORDS)
    if lower is not None:
        st.plotly_chart(lower, key="ev_lower")
    left, right = st.columns(2)
    left.plotly_chart(charts.capability_radar(rep, WORDS), key="ev_radar")
    axis = right.radio(
        t("eval.scatter_axis", lang), ["size_mb", "speed"], format_func=WORDS.get,
        horizontal=True, key="ev_axis",
    )  # fmt: skip
    right.plotly_chart(charts.quality_scatter(rep, axis, WORDS), key="ev_scatter")
    for error in rep.document.get("errors", []):
        where = " / ".join(str(error[k]) for k in ("model", "task", "sample") if error.get(k))
        st.warning(f"{where}: {error['error']}")


def show_samples(rep: report.EvalReport) -> None:
    st.subheader(t("eval.samples_title", lang))
    tasks = [task["name"] for task in rep.document.get("tasks", [])]
    task = st.selectbox(t("eval.task", lang), tasks, key="ev_sample_task")
    info = rep.task(task)
    with st.expander(t("eval.prompt_of", lang, task=task)):
        st.code(info.get("prompt_example", ""), language=None)
    models = rep.models
    if len(models) >= 2:
        a, b = st.columns(2)
        first = a.selectbox(t("eval.model_a", lang), models, index=0, key="ev_a")
        second = b.selectbox(t("eval.model_b", lang), models, index=1, key="ev_b")
        estimate = report.paired(rep, task, first, second, seed=0)
        if estimate is not None and first != second:
            verdict = difference_verdict(estimate)
            st.markdown(
                t(f"eval.verdict_{verdict}", lang, a=first, b=second, diff=estimate.value,
                  low=estimate.low, high=estimate.high, n=estimate.n)
            )  # fmt: skip
        only = st.toggle(t("eval.only_disagree", lang), value=True, key="ev_only")
        frame = (
            report.disagreements(rep, task, [first, second])
            if only
            else report.sample_frame(rep, task)
        )
    else:
        frame = report.sample_frame(rep, task)
    st.caption(t("eval.samples_count", lang, n=len(frame)))
    st.dataframe(frame, hide_index=True, key="ev_samples")


def show_exports(rep: report.EvalReport) -> None:
    st.subheader(t("eval.export_title", lang))
    cols = st.columns(3)
    for col, (kind, text, mime) in zip(
        cols,
        (("csv", report.to_csv(rep), "text/csv"), ("md", report.to_markdown(rep), "text/markdown"),
         ("json", report.to_json(rep), "application/json")),
        strict=True,
    ):  # fmt: skip
        col.download_button(
            t(f"eval.export_{kind}", lang), text, file_name=f"{rep.name}.{kind}", mime=mime,
            key=f"ev_export_{kind}",
        )  # fmt: skip


def show_compare(rep: report.EvalReport, names: list[str]) -> None:
    others = [n for n in names if n != rep.name]
    st.subheader(t("eval.compare_title", lang))
    if not others:
        st.caption(t("eval.compare_none", lang))
        return
    other = st.selectbox(t("eval.compare_pick", lang), others, key="ev_compare")
    table = report.compare_runs(report.load_report(ws, other), rep)
    if table.empty:
        st.caption(t("eval.compare_empty", lang))
    else:
        st.dataframe(table, hide_index=True, key="ev_compare_table")


st.title(t("eval.results_title", lang))
names = [m.name for m in report.list_evals(ws)]
if not names:
    st.info(t("eval.no_results", lang))
    st.page_link("pages/evaluate.py", label=t("eval.go_evaluate", lang), icon=":material/rule:")
else:
    wanted = st.query_params.get("eval")
    if wanted in names and wanted != st.session_state.get("ev_shown"):
        st.session_state["ev_pick"] = wanted  # a link to this page picks its result
    if st.session_state.get("ev_pick") not in names:
        st.session_state["ev_pick"] = names[0]
    name = st.selectbox(t("eval.pick", lang), names, key="ev_pick")
    st.session_state["ev_shown"] = name
    st.query_params["eval"] = name
    try:
        rep = report.load_report(ws, name)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        st.stop()
    st.caption(
        t("eval.meta", lang, models=", ".join(rep.models), created=rep.document.get("created", ""))
    )
    show_overview(rep)
    st.divider()
    show_samples(rep)
    st.divider()
    show_exports(rep)
    show_compare(rep, names)
