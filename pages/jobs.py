"""Jobs: every job in the workspace, and one in detail — live progress, metrics, log, cancel.

The live part re-reads the job's run folder every three seconds while the job is active, so any
number of browser sessions can watch the same job, and a reload re-attaches to it.
"""

from __future__ import annotations

import streamlit as st

from workbench.charts import (
    JOB_STATUSES,
    format_duration,
    format_time,
    jobs_frame,
    metrics_figure,
    status_label,
)
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.jobs import cancel, get_job, latest_progress, list_jobs, read_events, tail_log
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
ALL = "all"


def new_events(job) -> list[dict]:
    """All events of `job`, reading only what was appended since this session's last look."""
    cache = st.session_state.get("job_events")
    if not cache or cache["id"] != job.id:
        cache = {"id": job.id, "offset": 0, "events": []}
    events, cache["offset"] = read_events(job, cache["offset"])
    cache["events"].extend(events)
    st.session_state["job_events"] = cache
    return cache["events"]


def show_status(job) -> None:
    # Plain text, not st.metric: metric values are large and cut timestamps short.
    took = format_duration(job.started, job.finished)
    cells = [
        (t("jobs.status", lang), status_label(job.status, lang)),
        (t("jobs.created", lang), format_time(job.created) or "—"),
        (t("jobs.started", lang), format_time(job.started) or "—"),
        (
            t("jobs.finished", lang),
            (format_time(job.finished) or "—") + (f" ({took})" if took else ""),
        ),
    ]
    for column, (label, value) in zip(st.columns(4), cells, strict=True):
        column.markdown(f"**{label}**  \n{value}")
    if job.active:
        progress = latest_progress(job)
        fraction = progress["fraction"]
        message = progress.get("message") or status_label(job.status, lang)
        if fraction is None:
            st.caption(message)
        else:
            st.progress(fraction, text=f"{message} · {fraction:.0%}")
        if job.cancel_requested:
            st.caption(t("jobs.cancel_requested", lang))
        elif st.button(t("jobs.cancel", lang), icon=":material/cancel:", key=f"cancel-{job.id}"):
            cancel(ws, job.id, wait=False)
            st.toast(t("jobs.cancel_requested", lang))
            st.rerun()
    if job.status == "failed":
        st.error(str(job.error or t("jobs.no_error_text", lang)).replace("\n", "  \n"))


def show_live(job_id: str, was_active: bool) -> None:
    """Status, progress, metrics and log of one job; reruns the app once the job ends."""
    try:
        job = get_job(ws, job_id)
        if was_active and not job.active:
            st.rerun()  # the job ended: redraw the table and stop polling
        show_status(job)
        fig = metrics_figure(new_events(job), x_title=t("jobs.step", lang))
        if fig.data:
            st.plotly_chart(fig)
        if job.result:
            with st.expander(t("jobs.result", lang)):
                st.json(job.result)
        with st.expander(t("jobs.log", lang), expanded=job.status == "failed"):
            st.code(tail_log(job, lines=40) or t("jobs.log_empty", lang), language=None)
    except WorkbenchError as exc:  # fragment reruns skip app.py's error box
        st.error(error_text(exc, lang))


def show_recipe(job) -> None:
    recipe = job.run_dir / "recipe.yaml"
    with st.expander(t("jobs.reproduce", lang)):
        st.caption(t("jobs.reproduce_hint", lang))
        st.code(f"workbench run {recipe}", language="bash")
        if recipe.is_file():
            st.code(recipe.read_text("utf-8"), language="yaml")
        else:
            st.caption(t("jobs.no_recipe", lang))


st.title(t("jobs.title", lang))
st.caption(t("jobs.caption", lang))
status = st.selectbox(
    t("jobs.filter", lang),
    [ALL, *JOB_STATUSES],
    key="jobs_filter",
    format_func=lambda s: t("jobs.all", lang) if s == ALL else status_label(s, lang),
)
jobs = list_jobs(ws, status=None if status == ALL else status, limit=200)
if not jobs:
    st.info(t("jobs.none", lang))
else:
    st.dataframe(jobs_frame(jobs, lang), hide_index=True)
    by_id = {job.id: job for job in jobs}
    if st.session_state.get("job_select") not in by_id:
        wanted = st.query_params.get("job") or st.session_state.get("selected_job")
        st.session_state["job_select"] = wanted if wanted in by_id else jobs[0].id
    chosen = st.selectbox(
        t("jobs.select", lang),
        list(by_id),
        key="job_select",
        format_func=lambda i: (
            f"{by_id[i].title or by_id[i].kind} · {i} · {status_label(by_id[i].status, lang)}"
        ),
    )
    st.session_state["selected_job"] = chosen
    st.query_params["job"] = chosen  # a link to this page shows the same job
    job = by_id[chosen]
    st.subheader(job.title or job.kind)
    st.caption(
        t(
            "jobs.meta",
            lang,
            kind=job.kind,
            resource=job.resource,
            owner=job.owner or "—",
            pid=job.pid or "—",
            run_dir=job.run_dir,
        )
    )
    show_recipe(job)
    live = st.fragment(show_live, run_every=3 if job.active else None)
    live(job.id, job.active)
