"""Data · Import: bring a dataset in, see its format, its counts and every bad row; convert it.

The chosen source is kept in the session and in the URL (`?source=...`), so the other data pages
and a reload find it. An upload is saved under the workspace first, so nothing is lost.
"""

from __future__ import annotations

import streamlit as st

from workbench.data import browse, prepare
from workbench.data.files import EXPORT_TYPES
from workbench.data.formats import FORMATS
from workbench.data.self_cognition import generate_self_cognition
from workbench.errors import WorkbenchError
from workbench.i18n import LANGUAGES, error_text, t
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
DOWNLOAD = ":material/download:"
UPLOAD_TYPES = ["jsonl", "json", "csv", "tsv", "parquet", "txt", "md"]
NEXT_PAGES = [
    ("pages/data_explore.py", "data.go_explore", ":material/search:"),
    ("pages/data_prepare.py", "data.go_prepare", ":material/cleaning_services:"),
]


def remember(**values: str) -> None:
    """Keep the source, format and encoding in the session and in the URL (a reload finds them)."""
    for name, value in values.items():
        st.session_state[f"data_{name}"] = value
        if value and value != "utf-8":
            st.query_params[name] = value
        else:
            st.query_params.pop(name, None)


def current(name: str) -> str:
    return st.query_params.get(name) or st.session_state.get(f"data_{name}", "")


def from_upload() -> str:
    upload = st.file_uploader(t("data.upload", lang), type=UPLOAD_TYPES, key="import_upload")
    if upload is None or st.session_state.get("import_upload_id") == upload.file_id:
        return ""
    st.session_state["import_upload_id"] = upload.file_id  # saved once, kept on reload
    return str(prepare.save_upload(ws, upload.name, upload.getvalue()))


def from_path() -> str:
    path = st.text_input(t("data.path", lang), key="import_path", help=t("data.path_help", lang))
    return path.strip() if st.button(t("data.open", lang), key="import_open") else ""


def from_bundled() -> str:
    bundled = prepare.bundled_sources()
    title = st.selectbox(t("data.bundled", lang), list(bundled), key="import_bundled")
    return str(bundled[title]) if st.button(t("data.open", lang), key="import_open_b") else ""


def from_dataset() -> str:
    names = [row["name"] for row in prepare.list_datasets(ws)]
    if not names:
        st.caption(t("data.no_datasets", lang))
        return ""
    name = st.selectbox(t("data.dataset", lang), names, key="import_dataset")
    split = st.radio(t("data.split", lang), ("train", "eval"), horizontal=True, key="import_split")
    clicked = st.button(t("data.open", lang), key="import_open_d")
    return str(prepare.dataset_file(ws, name, split)) if clicked else ""


def from_self_cognition() -> str:
    st.caption(t("data.sc_intro", lang))
    left, middle, right = st.columns(3)
    who = left.text_input(t("data.sc_name", lang), key="sc_name")
    author = middle.text_input(t("data.sc_author", lang), key="sc_author")
    artifact = right.text_input(t("data.sc_artifact", lang), "self-cognition", key="sc_artifact")
    both = list(LANGUAGES)
    langs = st.multiselect(t("data.sc_languages", lang), both, both, LANGUAGES.get, key="sc_langs")
    if not st.button(t("data.sc_generate", lang), key="sc_generate", type="primary"):
        return ""
    samples = generate_self_cognition(who, author, languages=tuple(langs))
    recipe = {"kind": "self_cognition", "name": who, "author": author, "languages": langs}
    about = t("data.sc_description", lang, name=who.strip(), author=author.strip())
    prepare.save_samples(
        ws, artifact, samples, source="self-cognition generator", recipe=recipe, description=about
    )
    st.success(t("data.sc_saved", lang, name=artifact, count=len(samples)))
    return str(prepare.dataset_file(ws, artifact))


SOURCES = {"upload": from_upload, "path": from_path, "bundled": from_bundled}
SOURCES |= {"dataset": from_dataset, "self_cognition": from_self_cognition}


def show_checks(loaded) -> None:
    detection = loaded.detection
    found = FORMATS[detection.format].title if detection.format else t("data.none", lang)
    detected = t("data.detected", lang, format=found, confidence=detection.confidence)
    st.markdown(f"{detected}  \n{detection.reason}")
    cells = zip(st.columns(3), ("rows", "valid", "invalid"), strict=True)
    counts = {"rows": loaded.rows, "valid": len(loaded.samples), "invalid": len(loaded.errors)}
    for column, name in cells:
        column.metric(t(f"data.count_{name}", lang), f"{counts[name]:,}")
    for notice in loaded.source.notices + loaded.notices:
        st.info(notice, icon=":material/info:")
    if loaded.errors:
        st.subheader(t("data.errors_title", lang))
        st.dataframe(errors_table(loaded.errors, loaded), hide_index=True, key="import_errors")
        rejects, label = browse.rejects_bytes(loaded.errors), t("data.download_rejects", lang)
        st.download_button(label, rejects, "rejects.jsonl", on_click="ignore", icon=DOWNLOAD)


def show_export(loaded) -> None:
    """Convert on request; rows the target format cannot hold are counted and listed."""
    with st.expander(t("data.export_title", lang)):
        left, right = st.columns(2)
        title = {name: fmt.title for name, fmt in FORMATS.items()}.get
        target = left.selectbox(
            t("data.export_format", lang), list(FORMATS), format_func=title, key="export_format"
        )
        file_type = right.selectbox(t("data.export_type", lang), EXPORT_TYPES, key="export_type")
        if not st.button(t("data.export_convert", lang), key="export_run"):
            return
        rows, refused = browse.convert_samples(loaded.samples, target)
        st.caption(t("data.export_counts", lang, written=len(rows), refused=len(refused)))
        if refused:
            st.dataframe(errors_table(refused, loaded), hide_index=True)
        if rows:
            data, name = browse.rows_bytes(rows, file_type), f"data.{target}.{file_type}"
            label = t("data.export_download", lang)
            st.download_button(label, data, name, on_click="ignore", icon=DOWNLOAD)


def errors_table(errors, loaded):
    names = (f"unit_{loaded.source.unit}", "col_field", "col_message")
    return browse.errors_frame(errors, tuple(t(f"data.{name}", lang) for name in names))


st.title(t("data.import_title", lang))
st.caption(t("data.import_caption", lang))
kind = st.radio(
    t("data.source_kind", lang),
    list(SOURCES),
    format_func=lambda k: t(f"data.kind_{k}", lang),
    horizontal=True,
    key="import_kind",
)
try:
    chosen = SOURCES[kind]()
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
else:
    if chosen:
        remember(source=chosen, format="", encoding="")  # a new file starts from detection
source = current("source")
if not source:
    st.info(t("data.no_source", lang))
    st.stop()
remember(source=source, format=current("format"), encoding=current("encoding"))
st.markdown(f"**{t('data.source', lang)}** `{source}`")
left, right = st.columns(2)
if st.session_state.get("import_fmt_for") != source:  # a new source starts from detection
    st.session_state["import_format"] = current("format")
    st.session_state["import_encoding"] = current("encoding") or "utf-8"
    st.session_state["import_fmt_for"] = source
fmt = left.selectbox(
    t("data.format", lang),
    ["", *FORMATS],
    key="import_format",
    format_func=lambda f: FORMATS[f].title if f else t("data.auto", lang),
)
encoding = right.text_input(
    t("data.encoding", lang), key="import_encoding", help=t("data.encoding_help", lang)
)
remember(format=fmt, encoding=encoding.strip() or "utf-8")
try:
    with st.spinner(t("data.reading", lang)):
        ws.check_source(source, where="source")  # classroom: own files only
        loaded = browse.load_cached(source, fmt=fmt, encoding=encoding.strip() or "utf-8")
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()
show_checks(loaded)
show_export(loaded)
for column, (page, label, icon) in zip(st.columns(2), NEXT_PAGES, strict=True):
    column.page_link(page, label=t(label, lang), icon=icon, query_params=st.query_params.to_dict())
