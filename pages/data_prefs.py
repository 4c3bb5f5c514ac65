"""Data · Preference pairs: make a DPO/ORPO dataset (the bundled set, a file of pairs, or the chat
arena's votes), see every rejected row, and browse the pairs with both answers side by side.

One click from here opens the fine-tuning page with the dataset and objective dpo filled in.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.chat_store import read_votes
from workbench.data import prepare
from workbench.data.prefs import (
    bundled_prefs,
    import_prefs,
    pairs_from_votes,
    pairs_table,
    prefs_from_arena,
    read_pairs,
)
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
SOURCES = ("bundled", "upload", "arena")
SPLITS = ("train", "eval", "rejects")


def source_path(source: str) -> str:
    """The file to import for `source` ("" while an upload is missing); arena needs none."""
    if source == "bundled":
        bundled = bundled_prefs()
        title = st.selectbox(t("prefs.bundled", lang), list(bundled), key="prefs_bundled")
        return str(bundled[title]) if title else ""
    if source == "upload":
        types = ["jsonl", "json", "csv", "tsv", "parquet"]
        upload = st.file_uploader(t("prefs.upload", lang), type=types, key="prefs_upload")
        return str(prepare.save_upload(ws, upload.name, upload.getvalue())) if upload else ""
    pairs, counts = pairs_from_votes(read_votes(ws))
    st.info(t("prefs.arena_counts", lang, **counts))
    return ""


def make_dataset() -> None:
    st.subheader(t("prefs.make_title", lang))
    source = st.radio(
        t("prefs.source", lang),
        SOURCES,
        horizontal=True,
        key="prefs_source",
        format_func=lambda s: t(f"prefs.source_{s}", lang),
    )
    path = source_path(source)
    left, right = st.columns([2, 1])
    name = left.text_input(t("prefs.name", lang), "prefs", key="prefs_name").strip()
    held = right.number_input(t("prefs.eval_fraction", lang), 0.0, 0.5, 0.1, 0.05, key="prefs_ev")
    if not st.button(t("prefs.save", lang), type="primary", key="prefs_save"):
        return
    try:
        if source == "arena":
            result = prefs_from_arena(ws, name=name, eval_fraction=float(held))
        elif not path:
            st.warning(t("prefs.no_file", lang))
            return
        else:
            result = import_prefs(ws, path, name=name, eval_fraction=float(held))
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    st.session_state["prefs_browse"] = name
    st.success(t("prefs.saved", lang, name=name, **result))


def show_pair(sample: dict) -> None:
    """The prompt, then the chosen and the rejected answer side by side."""
    for message in sample["prompt"]:
        st.markdown(f"**{message['role']}** · {message['content']}")
    chosen, rejected = st.columns(2)
    chosen.success(f"**{t('prefs.chosen', lang)}**  \n{sample['chosen']}")
    rejected.error(f"**{t('prefs.rejected', lang)}**  \n{sample['rejected']}")


def browse(names: list[str]) -> None:
    st.subheader(t("prefs.browse_title", lang))
    if st.session_state.get("prefs_browse") not in names:
        st.session_state["prefs_browse"] = names[0]
    left, right = st.columns([2, 1])
    name = left.selectbox(t("prefs.dataset", lang), names, key="prefs_browse")
    split = right.radio(
        t("prefs.split", lang), SPLITS, horizontal=True, key="prefs_split",
        format_func=lambda s: t(f"prefs.split_{s}", lang),
    )  # fmt: skip
    metrics = ws.get(name).metrics
    st.caption(
        t(
            "prefs.counts",
            lang,
            **{k: metrics.get(k, 0) for k in ("train_rows", "eval_rows", "rejected")},
        )
    )
    if st.button(t("prefs.train", lang), icon=":material/tune:", key="prefs_train"):
        saved = st.session_state.setdefault("ft_saved", {})
        saved.update(data=name, objective="dpo")
        for key in ("ft_data", "ft_objective"):  # the fine-tuning page takes the saved values
            st.session_state.pop(key, None)
        st.switch_page("pages/finetune.py")
    if split == "rejects":
        path = ws.path_of(name) / prepare.SPLIT_FILES["rejects"]
        rows = pd.read_json(path, lines=True) if path.is_file() else pd.DataFrame()
        if len(rows):
            st.dataframe(rows, hide_index=True)
        else:
            st.caption(t("prefs.no_rejects", lang))
        return
    pairs = read_pairs(ws, name, split)
    if not pairs:
        st.caption(t("prefs.empty_split", lang))
        return
    st.dataframe(pd.DataFrame(pairs_table(pairs)), hide_index=True, key="prefs_table", height=240)
    index = st.number_input(t("prefs.row", lang), 1, len(pairs), 1, key="prefs_row") - 1
    st.caption(t("prefs.row_of", lang, row=pairs[index].get("row")))
    show_pair(pairs[index])


st.title(t("prefs.title", lang))
st.caption(t("prefs.caption", lang))
make_dataset()
st.divider()
preference_sets = [m.name for m in ws.list("dataset") if m.metrics.get("data_kind") == "preference"]
if preference_sets:
    browse(preference_sets)
else:
    st.info(t("prefs.none", lang))
