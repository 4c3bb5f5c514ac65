"""Home: the path through the chain, this machine, the models, their lineage and recent jobs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.charts import format_time, jobs_frame
from workbench.hardware import detect_hardware
from workbench.i18n import t
from workbench.jobs import list_jobs, submit
from workbench.lineage_view import lineage_dot
from workbench.models import DEFAULT_MODEL, list_models
from workbench.recipes import PrepareModelRecipe
from workbench.workspace import Workspace

KEY_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "triton", "lmdeploy")

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)


def show_start_here() -> None:
    st.subheader(t("home.start_title", lang))
    st.markdown(t("home.start_intro", lang))
    steps = ("data", "finetune", "quantize", "evaluate", "chat", "agent")
    st.markdown(
        "\n".join(f"{i}. {t(f'home.step_{step}', lang)}" for i, step in enumerate(steps, 1))
    )
    st.page_link(
        "pages/data_import.py",
        label=t("home.open_data", lang),
        icon=":material/upload_file:",
        query_params={"lang": lang},
    )
    st.page_link(
        "pages/finetune.py",
        label=t("home.open_finetune", lang),
        icon=":material/tune:",
        query_params={"lang": lang},
    )
    st.page_link(
        "pages/evaluate.py",
        label=t("eval.home_open", lang),
        icon=":material/rule:",
        query_params={"lang": lang},
    )


def show_hardware() -> None:
    hw = st.session_state.get("hardware") or detect_hardware()
    st.subheader(t("home.hardware_title", lang))
    if hw.gpus:
        gpu = hw.gpus[0]
        accelerator = ", ".join(g.name for g in hw.gpus)
        memory = t("home.gpu_memory", lang, total=gpu.memory_total_gb, free=gpu.memory_free_gb)
        bf16 = gpu.bf16
    else:
        accelerator = t("home.cpu_only", lang, cores=hw.cpu_cores)
        memory = t("home.ram", lang, total=hw.ram_total_gb, free=hw.ram_available_gb)
        bf16 = hw.cpu_bf16
    # Plain text, not st.metric: metric values are large and cut long GPU names short.
    left, middle, right = st.columns([2, 2, 1])
    left.markdown(f"**{t('home.accelerator', lang)}**  \n{accelerator}")
    middle.markdown(f"**{t('home.memory', lang)}**  \n{memory}")
    right.markdown(f"**bf16**  \n{t('home.yes', lang) if bf16 else t('home.no', lang)}")
    st.caption(f"{hw.cpu_model} · Python {hw.python}")
    missing = t("home.not_installed", lang)
    libs = " · ".join(f"{name} `{hw.libraries.get(name) or missing}`" for name in KEY_LIBRARIES)
    st.caption(libs)


def show_models() -> None:
    st.subheader(t("home.models_title", lang))
    rows = list_models(ws)
    frame = pd.DataFrame(
        [
            {
                t("home.col_name", lang): row["name"],
                t("home.col_variant", lang): row.get("variant", ""),
                t("home.col_parents", lang): ", ".join(row.get("parents") or []),
                t("home.col_size", lang): row.get("size_mb"),
                t("home.col_created", lang): format_time(row.get("created")),
                t("home.col_source", lang): row.get("source", ""),
                t("home.col_prepared", lang): bool(row.get("prepared")),
            }
            for row in rows
        ]
    )
    if frame.empty:
        st.info(t("home.no_models", lang))
    else:
        st.dataframe(frame, hide_index=True)
    default = next((row for row in rows if row["name"] == DEFAULT_MODEL), None)
    if default is None or default.get("prepared"):
        return
    jobs = list_jobs(ws, limit=50)
    preparing = [j for j in jobs if j.kind == PrepareModelRecipe.kind and j.active]
    if preparing:
        st.info(t("home.preparing", lang, id=preparing[0].id), icon=":material/hourglass_top:")
        st.page_link(
            "pages/jobs.py",
            label=t("home.open_jobs", lang),
            icon=":material/list_alt:",
            query_params={"lang": lang, "job": preparing[0].id},
        )
        return
    last = next((j for j in jobs if j.kind == PrepareModelRecipe.kind), None)
    if last is not None and last.status == "failed":
        st.warning(t("home.prepare_failed", lang, id=last.id, error=last.error))
    st.caption(t("home.prepare_hint", lang))
    if st.button(t("home.prepare", lang), type="primary", icon=":material/download:"):
        job = submit(ws, PrepareModelRecipe(model=DEFAULT_MODEL), title=t("home.prepare", lang))
        st.session_state["selected_job"] = job.id
        st.rerun()


def show_lineage() -> None:
    st.subheader(t("home.lineage_title", lang))
    manifests, edges = ws.graph()
    if not manifests:
        st.caption(t("home.no_lineage", lang))
        return
    st.graphviz_chart(lineage_dot(manifests, edges, missing_label=t("home.missing", lang)))


def show_recent_jobs() -> None:
    st.subheader(t("home.jobs_title", lang))
    jobs = list_jobs(ws, limit=10)
    if not jobs:
        st.caption(t("home.no_jobs", lang))
        return
    st.dataframe(jobs_frame(jobs, lang), hide_index=True)
    st.page_link(
        "pages/jobs.py",
        label=t("home.open_jobs", lang),
        icon=":material/list_alt:",
        query_params={"lang": lang},
    )


st.title(t("home.title", lang))
st.caption(t("home.caption", lang))
left, right = st.columns([3, 2], gap="large")
with left, st.container(border=True):
    show_hardware()
with right:
    show_start_here()
show_models()
show_lineage()
show_recent_jobs()
