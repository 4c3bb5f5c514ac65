"""Deploy: start and stop OpenAI-compatible servers as background jobs; each server's endpoint,
status, live request count and tokens/s; copy-paste snippets (curl, openai Python) and the name
that the Chat page takes for it.
"""

from __future__ import annotations

import streamlit as st

from workbench.charts import status_label
from workbench.chat_view import local_models, refuse_port, serve_command, serve_jobs, snippets
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.jobs import cancel, job_recipe, submit
from workbench.recipes import WEIGHT_FORMATS, ServeRecipe
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)


def start_form() -> None:
    st.subheader(t("deploy.start_title", lang))
    left, middle, right = st.columns(3)
    model = left.selectbox(t("deploy.model", lang), local_models(ws), key="deploy_model")
    host = middle.selectbox(
        t("deploy.host", lang),
        ["127.0.0.1", "0.0.0.0"],
        key="deploy_host",
        format_func=lambda h: t("deploy.host_" + ("local" if h == "127.0.0.1" else "all"), lang),
    )
    port = right.number_input(t("deploy.port", lang), 0, 65535, 8000, key="deploy_port")
    api_key = left.text_input(t("deploy.api_key", lang), "", key="deploy_key", type="password")
    weights = middle.selectbox(t("deploy.weights", lang), WEIGHT_FORMATS, key="deploy_weights")
    slots = right.number_input(t("deploy.slots", lang), 1, 64, 8, key="deploy_slots")
    gradio = st.checkbox(t("deploy.gradio", lang), key="deploy_gradio")
    try:
        recipe = ServeRecipe(
            model=model or "default",
            host=host,
            port=int(port),
            api_key=api_key,
            gradio=gradio,
            weights=weights,
            slots=int(slots),
        )
        refuse_port(ws, recipe.port)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    if host != "127.0.0.1" and not api_key:
        st.warning(t("deploy.open_warning", lang))
    st.caption(t("deploy.command", lang))
    st.code(serve_command(recipe), language="bash")
    if st.button(t("deploy.start", lang), icon=":material/rocket_launch:", key="deploy_start"):
        job = submit(ws, recipe, title=f"serve: {recipe.model}")
        st.success(t("deploy.started", lang, id=job.id))


def show_server(row: dict) -> None:
    job, endpoint = row["job"], row["endpoint"]
    recipe = job_recipe(job)
    with st.container(border=True):
        head, stop = st.columns([5, 1])
        state = status_label(job.status, lang)
        head.markdown(f"**{recipe.model}** · `{job.id}` · {state}")
        if job.active and stop.button(t("deploy.stop", lang), key=f"deploy_stop_{job.id}"):
            cancel(ws, job.id, wait=False)
            st.rerun()
        if job.status == "failed":
            st.error(job.error)
        if not endpoint:
            if job.active:
                st.caption(t("deploy.starting", lang))
            return
        cells = [
            (t("deploy.endpoint", lang), f"`{endpoint['url']}`"),
            (t("deploy.requests", lang), row["requests"]),
            (t("deploy.streams", lang), row["active"]),
            (t("deploy.speed", lang), f"{row['tokens_per_s']:.1f}"),
        ]
        for column, (name, value) in zip(st.columns(len(cells)), cells, strict=True):
            column.markdown(f"**{name}**  \n{value}")
        if endpoint.get("gradio"):
            demo = endpoint["url"].removesuffix("/v1") + "/demo"
            st.markdown(t("deploy.demo", lang, url=demo))
        code = snippets(endpoint["url"], endpoint["served_model"], recipe.api_key)
        with st.expander(t("deploy.snippets", lang)):
            st.caption("curl")
            st.code(code["curl"], language="bash")
            st.caption("Python (openai)")
            st.code(code["python"], language="python")
            st.caption(t("deploy.chat_name", lang))
            st.code(code["engine"], language=None)


def servers() -> None:
    try:
        rows = serve_jobs(ws)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    if not rows:
        st.info(t("deploy.none", lang))
    for row in rows:
        show_server(row)


st.title(t("deploy.title", lang))
st.caption(t("deploy.caption", lang))
start_form()
st.subheader(t("deploy.servers_title", lang))
live = any(row["job"].active for row in serve_jobs(ws))
st.fragment(servers, run_every=3 if live else None)()
