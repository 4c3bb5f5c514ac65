"""Data · Prepare: clean and split the chosen data into a dataset artifact that training uses.

The settings build an ImportDataRecipe; the page shows the same thing as a CLI command and as
recipe YAML, runs it inline (it takes seconds) and lists the workspace's datasets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from workbench.charts import format_time
from workbench.data.browse import import_command
from workbench.data.prepare import list_datasets, run_import_data
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.models import DEFAULT_MODEL
from workbench.recipes import DEDUPE_MODES, OVERLONG_MODES, ImportDataRecipe, dump_recipe
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
DATASET_COLUMNS = ("name", "kind", "train_rows", "eval_rows", "rejected", "format", "created")


def current(name: str) -> str:
    """What the Import page chose (source, format, encoding): from the URL, else the session."""
    value = st.query_params.get(name) or st.session_state.get(f"data_{name}", "")
    st.session_state[f"data_{name}"] = value
    if value and value != "utf-8":
        st.query_params[name] = value  # a reload of this page finds the same dataset
    return value


def free_name(source: str) -> str:
    """A dataset name from the file name that no artifact in the workspace has yet."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).stem).strip("-._")[:70] or "dataset"
    name, n = stem, 1
    while ws.exists(name):
        n += 1
        name = f"{stem}-{n}"
    return name


def settings(source: str, fmt: str, encoding: str) -> ImportDataRecipe:
    """The recipe the widgets describe (raises InvalidInput for a bad name or value)."""
    left, right = st.columns(2)
    dedupe = left.radio(
        t("data.dedupe", lang),
        DEDUPE_MODES,
        index=DEDUPE_MODES.index("exact"),
        format_func=lambda m: t(f"data.dedupe_{m}", lang),
        key="prep_dedupe",
    )
    overlong = right.radio(
        t("data.overlong", lang),
        OVERLONG_MODES,
        format_func=lambda m: t(f"data.overlong_{m}", lang),
        key="prep_overlong",
    )
    left, right = st.columns(2)
    cut_help = t("data.cutoff_help", lang)
    cutoff = left.number_input(
        t("data.cutoff", lang), 0, 10**6, 0, 128, key="prep_cutoff", help=cut_help
    )
    model = right.text_input(
        t("data.model", lang), DEFAULT_MODEL, key="prep_model", help=t("data.model_help", lang)
    )
    uses_model = cutoff > 0 and overlong != "keep"
    if uses_model and model.strip() == DEFAULT_MODEL and not ws.exists(DEFAULT_MODEL):
        right.caption(t("data.default_first", lang))
    left, right = st.columns(2)
    fraction = left.slider(t("data.eval_fraction", lang), 0.0, 0.5, 0.05, 0.01, key="prep_eval")
    seed = right.number_input(t("data.seed", lang), 0, None, 0, key="prep_seed")
    if "prep_name" not in st.session_state or st.session_state.get("prep_for") != source:
        st.session_state["prep_name"] = free_name(source)
        st.session_state["prep_for"] = source
    name = st.text_input(t("data.name", lang), key="prep_name")
    description = st.text_area(t("data.description", lang), key="prep_description")
    return ImportDataRecipe(
        source=source,
        name=name.strip(),
        format=fmt,
        encoding=encoding or "utf-8",
        dedupe=dedupe,
        model=model.strip() or DEFAULT_MODEL,
        cutoff=int(cutoff),
        overlong=overlong,
        eval_fraction=round(float(fraction), 4),
        seed=int(seed),
        description=description.strip(),
    )


def show_result(result: dict) -> None:
    st.success(
        t(
            "data.prepared",
            lang,
            name=result["artifact"],
            train=result["train_rows"],
            eval=result["eval_rows"],
            rejected=result["rejected"],
        )
    )
    steps = [
        {
            t("data.col_step", lang): step["step"],
            t("data.col_details", lang): ", ".join(
                f"{k} {v}" for k, v in step.items() if k != "step"
            ),
        }
        for step in result["steps"]
    ]
    st.dataframe(pd.DataFrame(steps), hide_index=True, key="prep_steps")


def show_datasets() -> None:
    st.subheader(t("data.datasets_title", lang))
    rows = list_datasets(ws)
    if not rows:
        st.caption(t("data.no_datasets", lang))
        return
    frame = pd.DataFrame(rows, columns=DATASET_COLUMNS)
    frame["created"] = frame["created"].map(format_time)
    frame.columns = [t(f"data.ds_{c}", lang) for c in DATASET_COLUMNS]
    st.dataframe(frame, hide_index=True, key="prep_datasets")


st.title(t("data.prepare_title", lang))
st.caption(t("data.prepare_caption", lang))
source, fmt, encoding = current("source"), current("format"), current("encoding")
if not source:
    st.info(t("data.no_source", lang))
    st.page_link("pages/data_import.py", label=t("data.go_import", lang), icon=":material/upload:")
else:
    st.markdown(f"**{t('data.source', lang)}** `{source}`")
    try:
        recipe = settings(source, fmt, encoding)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        recipe = None
    if recipe is not None:
        with st.expander(t("data.reproduce", lang)):
            st.caption(t("data.reproduce_hint", lang))
            st.code(import_command(recipe), language="bash")
            st.code(dump_recipe(recipe), language="yaml")
        if st.button(t("data.prepare_run", lang), type="primary", icon=":material/play_arrow:"):
            try:
                with st.spinner(t("data.preparing", lang)):
                    st.session_state["prepared"] = run_import_data(recipe, workspace=ws)
            except WorkbenchError as exc:
                st.error(error_text(exc, lang))
            else:
                st.session_state.pop("prep_for", None)  # the name is taken now: offer a new one
                st.rerun()
    if st.session_state.get("prepared"):
        show_result(st.session_state["prepared"])
show_datasets()
