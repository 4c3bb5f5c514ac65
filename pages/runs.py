"""Training runs: one fine-tuning job live (progress, loss curves — DPO/ORPO: rewards and
preference accuracy —, probe answers, cancel and resume), what to do with its result (merge,
chat), and several runs compared.

The live part re-reads the job's run folder every three seconds while the job is active, so a
reload or a second browser re-attaches to it; a resumed job continues the same curve.
"""

from __future__ import annotations

import shlex

import streamlit as st

from workbench.charts import status_label
from workbench.errors import WorkbenchError
from workbench.finetune.trainer import read_probes
from workbench.finetune.view import (
    LIVE_METRICS,
    PREFERENCE_CHARTS,
    curves_figure,
    format_seconds,
    free_output_name,
    outputs_in_queue,
    probe_table,
    recipes_frame,
    refuse_output,
    run_summary,
    summary_cells,
    train_events_frame,
)
from workbench.i18n import error_text, t
from workbench.jobs import cancel, get_job, job_recipe, list_jobs, read_events, resume, submit
from workbench.recipes import MergeRecipe, TrainRecipe, recipe_to_dict
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
WORDS = {k: t(f"runs.m_{k}", lang) for k in ("step", "loss", "eval_loss", *LIVE_METRICS)}
WORDS.update({k: t(f"prefs.m_{k}", lang) for k in sum(PREFERENCE_CHARTS.values(), ())})
WORDS.update(prompt=t("runs.prompt", lang), base=t("runs.base", lang), field=t("runs.field", lang))
WORDS["step_n"] = t("runs.step_n", lang, step="{step}")


def events_of(job) -> list[dict]:
    """All events of `job`, reading only what was appended since this session's last look."""
    cache = st.session_state.setdefault("run_events", {})
    entry = cache.get(job.id) or {"offset": 0, "events": []}
    events, entry["offset"] = read_events(job, entry["offset"])
    entry["events"].extend(events)
    cache[job.id] = entry
    return entry["events"]


def label(job) -> str:
    return f"{job.title or job.kind} · {job.id[-6:]}"


def show_status(job, summary: dict) -> None:
    cells = [(t("runs.status", lang), status_label(job.status, lang))]
    cells += [(t(f"runs.c_{k}", lang), v) for k, v in summary_cells(summary).items()]
    for column, (name, value) in zip(st.columns(len(cells)), cells, strict=True):
        column.markdown(f"**{name}**  \n{value}")
    if summary["fraction"] is not None and job.status != "succeeded":
        eta = format_seconds(summary["eta_s"])
        text = t("runs.eta", lang, eta=eta) if eta else summary["message"] or "…"
        st.progress(summary["fraction"], text=f"{summary['fraction']:.0%} · {text}")
    if job.active and job.cancel_requested:
        st.caption(t("runs.cancel_requested", lang))
    elif job.active and st.button(
        t("runs.cancel", lang), icon=":material/cancel:", key=f"cancel-{job.id}"
    ):
        cancel(ws, job.id, wait=False)
        st.rerun()
    if job.status in ("cancelled", "failed"):
        st.caption(t("runs.resume_hint", lang, id=job.id))
        if st.button(t("runs.resume", lang), icon=":material/replay:", key=f"resume-{job.id}"):
            resume(ws, job.id)
            st.rerun()
    if job.status == "failed":
        st.error(t("runs.failed", lang) + "  \n" + (job.error or "").replace("\n", "  \n"))


def show_charts(frame) -> None:
    if frame.empty:
        st.info(t("runs.no_steps", lang))
        return
    st.plotly_chart(curves_figure({"run": frame}, ("loss", "eval_loss"), WORDS), key="run_loss")
    columns = st.columns(2)
    for i, metric in enumerate(LIVE_METRICS):
        fig = curves_figure({"run": frame}, metric, WORDS).update_layout(height=240)
        fig.update_yaxes(rangemode="tozero")  # a flat line is not noise around a big number
        columns[i % 2].plotly_chart(fig, key=f"run_{metric}")
    for i, (chart, names) in enumerate(PREFERENCE_CHARTS.items()):  # DPO and ORPO runs only
        if frame[list(names)].notna().any().any():
            fig = curves_figure({"run": frame}, names, WORDS).update_layout(height=240)
            columns[i % 2].plotly_chart(fig, key=f"run_{chart}")


def show_live(job_id: str, was_active: bool) -> None:
    """Status, progress, curves and probe answers of one run; reruns the app once it ends."""
    try:
        job = get_job(ws, job_id)
        if was_active and not job.active:
            st.rerun()  # the run ended: show what to do with its result
        events = events_of(job)
        show_status(job, run_summary(job, events))
        show_charts(train_events_frame(events))
        st.subheader(t("runs.probes_title", lang))
        probes = probe_table(read_probes(job.run_dir), WORDS)
        if probes.empty:
            st.caption(t("runs.no_probes", lang))
        else:
            st.table(probes)
    except WorkbenchError as exc:  # fragment reruns skip app.py's error box
        st.error(error_text(exc, lang))


def show_result(job, recipe) -> None:
    """For a finished run: chat with what it made, and merge an adapter into a model."""
    artifact = job.result.get("artifact")
    if job.status != "succeeded" or not artifact or not ws.exists(artifact):
        return
    st.subheader(t("runs.use_title", lang))
    prompt = (recipe.probe_prompts or ["Who are you?"])[0]
    st.markdown(t("runs.chat_hint", lang, name=artifact))
    st.code(shlex.join(["workbench", "chat", "--model", artifact, prompt]), language="bash")
    if ws.get(artifact).kind != "adapter":
        return
    st.markdown(t("runs.merge_hint", lang))
    queued = outputs_in_queue(ws)
    name = free_output_name(ws, f"{artifact}-merged", queued)
    name = st.text_input(t("runs.merge_name", lang), name, key=f"merge-{job.id}").strip()
    st.code(shlex.join(["workbench", "merge", "--adapter", artifact, "--out", name]))
    if st.button(t("runs.merge", lang), icon=":material/merge:", key=f"merge-start-{job.id}"):
        try:
            refuse_output(ws, name, queued)
            merge = submit(ws, MergeRecipe(adapter=artifact, out=name), title=f"merge: {name}")
        except WorkbenchError as exc:
            st.error(error_text(exc, lang))
        else:
            st.session_state["runs_merge"] = merge.id
    if merge_id := st.session_state.get("runs_merge"):
        st.success(t("runs.merge_started", lang, id=merge_id))
        link = {"job": merge_id, "lang": lang}
        st.page_link("pages/jobs.py", label=t("runs.open_jobs", lang), query_params=link)


def show_compare(by_id: dict) -> None:
    st.subheader(t("runs.compare_title", lang))
    chosen = st.multiselect(
        t("runs.compare_pick", lang), list(by_id), default=list(by_id)[:2],
        format_func=lambda i: label(by_id[i]), key="runs_compare",
    )  # fmt: skip
    if not chosen:
        st.caption(t("runs.compare_hint", lang))
        return
    frames = {label(by_id[i]): train_events_frame(events_of(by_id[i])) for i in chosen}
    left, right = st.columns(2)
    left.plotly_chart(curves_figure(frames, "loss", WORDS), key="compare_loss")
    right.plotly_chart(curves_figure(frames, "eval_loss", WORDS), key="compare_eval")
    if len(chosen) > 1:
        recipes = {label(by_id[i]): recipe_to_dict(job_recipe(by_id[i])) for i in chosen}
        st.caption(t("runs.diff_caption", lang))
        st.dataframe(recipes_frame(recipes, WORDS), hide_index=True, key="compare_diff")


st.title(t("runs.title", lang))
st.caption(t("runs.caption", lang))
runs = [job for job in list_jobs(ws, limit=200) if job.kind == TrainRecipe.kind]
if not runs:
    st.info(t("runs.none", lang))
    st.page_link("pages/finetune.py", label=t("runs.go_finetune", lang), icon=":material/tune:")
else:
    by_id = {job.id: job for job in runs}
    wanted = st.query_params.get("job")
    if wanted in by_id and wanted != st.session_state.get("runs_shown"):
        st.session_state["runs_select"] = wanted  # a link to this page picks its run
    if st.session_state.get("runs_select") not in by_id:
        st.session_state["runs_select"] = runs[0].id
    chosen = st.selectbox(
        t("runs.select", lang), list(by_id), key="runs_select",
        format_func=lambda i: f"{label(by_id[i])} · {status_label(by_id[i].status, lang)}",
    )  # fmt: skip
    st.session_state["runs_shown"] = chosen
    st.query_params["job"] = chosen
    job = by_id[chosen]
    try:
        recipe = job_recipe(job)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        recipe = TrainRecipe(data="?", out="unknown")
    st.caption(t("runs.meta", lang, run_dir=job.run_dir, **recipe_to_dict(recipe)))
    st.fragment(show_live, run_every=3 if job.active else None)(job.id, job.active)
    show_result(job, recipe)
    st.divider()
    show_compare(by_id)
