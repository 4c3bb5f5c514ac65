"""Evaluate: pick models and tasks (bundled suites or your own file), see the exact prompt each
task builds, start the evaluation as a job and follow it; results open on the Results page.

Results are cached per model and sample, so running the same comparison again is instant.
"""

from __future__ import annotations

import streamlit as st

from workbench.charts import status_label
from workbench.errors import WorkbenchError
from workbench.evaluate.preference import preference_task_names
from workbench.evaluate.view import (
    eval_command,
    model_choices,
    prompt_previews,
    save_upload,
    task_choices,
)
from workbench.i18n import error_text, t
from workbench.jobs import cancel, get_job, latest_progress, list_jobs, submit
from workbench.recipes import EvalRecipe, dump_recipe, recipe_from_dict
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)


def chosen_recipe() -> EvalRecipe | None:
    """The recipe the widgets describe, or None (with the reason shown) when it is incomplete."""
    st.subheader(t("eval.models_title", lang))
    models = st.multiselect(
        t("eval.models", lang), model_choices(ws), default=["default"], key="ev_models"
    )
    remote = st.text_input(
        t("eval.remote", lang), key="ev_remote", placeholder="openai:http://host:8000/v1#model"
    )
    models += [m.strip() for m in remote.split(",") if m.strip()]
    st.subheader(t("eval.tasks_title", lang))
    choices = task_choices() + preference_task_names(ws)  # prefs:NAME, held-out pairs
    tasks = st.multiselect(t("eval.tasks", lang), choices, default=["quick"], key="ev_tasks")
    if any(task.startswith("prefs:") for task in tasks):
        st.caption(t("prefs.eval_hint", lang))
    upload = st.file_uploader(t("eval.upload", lang), type=["jsonl", "json", "csv", "yaml", "yml"])
    st.caption(t("eval.upload_help", lang))
    if upload is not None:
        tasks.append(str(save_upload(ws, upload.name, upload.getvalue())))
    left, middle, right = st.columns(3)
    limit = left.number_input(t("eval.limit", lang), 0, 100000, 20, key="ev_limit")
    judge = middle.selectbox(
        t("eval.judge", lang),
        ["", *model_choices(ws)],
        key="ev_judge",
        format_func=lambda m: m or "—",
    )
    identity = right.text_input(t("eval.identity", lang), key="ev_identity")
    try:
        return recipe_from_dict(
            {"kind": "eval", "models": models, "tasks": tasks, "limit": int(limit),
             "judge": judge, "identity_name": identity},
            where="Evaluate",
        )  # fmt: skip
    except WorkbenchError as exc:
        st.info(error_text(exc, lang))
        return None


def show_prompts(recipe: EvalRecipe) -> None:
    with st.expander(t("eval.prompts_title", lang), expanded=False):
        st.caption(t("eval.prompts_help", lang))
        for row in prompt_previews(recipe.tasks, ws):
            st.markdown(
                t("eval.prompt_line", lang, task=row["task"], kind=row["kind"],
                  metric=row["metric"], samples=row["samples"])
            )  # fmt: skip
            st.code(row["prompt"], language=None)


def show_job(job_id: str) -> None:
    """The running (or finished) evaluation job, re-read every three seconds while active."""
    try:
        job = get_job(ws, job_id)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    progress = latest_progress(job)
    st.markdown(f"**{job.title}** · `{job.id}` · {status_label(job.status, lang)}")
    if progress["fraction"] is not None:
        metrics = progress["metrics"]
        text = t("eval.progress", lang, message=progress["message"] or "…",
                 computed=metrics.get("computed", 0), cached=metrics.get("cached", 0))  # fmt: skip
        st.progress(progress["fraction"], text=text)
    if job.active and st.button(t("eval.cancel", lang), key=f"ev-cancel-{job.id}"):
        cancel(ws, job.id, wait=False)
    if job.status == "failed":
        st.error(t("eval.failed", lang) + "  \n" + job.error.replace("\n", "  \n"))
    for error in job.result.get("errors", []):
        where = " / ".join(str(error[k]) for k in ("model", "task", "sample") if error.get(k))
        st.warning(f"{where}: {error['error']}")
    if job.status == "succeeded" and job.result.get("artifact"):
        st.success(t("eval.done", lang, name=job.result["artifact"],
                     computed=job.result.get("computed", 0), cached=job.result.get("cached", 0)))  # fmt: skip
        st.page_link(
            "pages/eval_results.py",
            label=t("eval.open_results", lang),
            icon=":material/leaderboard:",
            query_params={"eval": job.result["artifact"], "lang": lang},
        )


st.title(t("eval.title", lang))
st.caption(t("eval.caption", lang))
recipe = chosen_recipe()
if recipe is not None:
    try:
        show_prompts(recipe)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        recipe = None
if recipe is not None:
    st.caption(t("eval.command", lang))
    st.code(eval_command(recipe), language="bash")
    with st.expander(t("eval.recipe", lang)):
        st.code(dump_recipe(recipe), language="yaml")
    if st.button(
        t("eval.start", lang), type="primary", icon=":material/play_arrow:", key="ev_start"
    ):
        title = f"eval: {', '.join(recipe.models)} on {', '.join(recipe.tasks)}"[:120]
        st.session_state["ev_job"] = submit(ws, recipe, title=title).id
recent = [job for job in list_jobs(ws, limit=50) if job.kind == EvalRecipe.kind]
job_id = st.session_state.get("ev_job") or (recent[0].id if recent else None)
if job_id:
    st.subheader(t("eval.job_title", lang))
    active = any(job.id == job_id and job.active for job in recent)
    st.fragment(show_job, run_every=3 if active else None)(job_id)
