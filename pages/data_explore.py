"""Data · Explore: browse every row, see which tokens train (the doctor), and the statistics.

Works on the source chosen on the Import page (session or `?source=` in the URL). The model's
tokenizer gives token counts, the doctor's mask and the length statistics; without one (the
default model not prepared yet) browsing still works.
"""

from __future__ import annotations

import streamlit as st

from workbench.data import browse, charts
from workbench.data.stats import compute
from workbench.data.template import TRAIN_ON, render_sample
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.models import DEFAULT_MODEL
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
DUPLICATES = {"any": None, "only": True, "none": False}
AVATARS = {"system": ":material/settings:", "tool": ":material/build:", "text": ":material/notes:"}


def current(name: str) -> str:
    """What the Import page chose (source, format, encoding): from the URL, else the session."""
    value = st.query_params.get(name) or st.session_state.get(f"data_{name}", "")
    st.session_state[f"data_{name}"] = value
    if value and value != "utf-8":
        st.query_params[name] = value  # a reload of this page finds the same dataset
    return value


@st.cache_resource(show_spinner=False, max_entries=3)
def tokenizer_for(model: str, root: str, _ws: Workspace):
    """Cached per model and workspace folder (`root`); `_ws` (not hashed) resolves the name."""
    return browse.load_tokenizer(model, _ws, prepare=False)


@st.cache_resource(show_spinner=False, max_entries=4)
def stats_for(key: tuple, _loaded, _tokenizer):
    """(stats, row_metrics, browse table) of one dataset and model, computed once."""
    stats, metrics = compute(_loaded.samples, _tokenizer)
    return stats, metrics, browse.browse_table(_loaded, metrics)


def choose(widget, name: str, options, key: str, **extra):
    """A selectbox or radio whose options read as their `data.{name}_{option}` text."""
    shown = {option: t(f"data.{name}_{option}", lang) for option in options}
    return widget(t(f"data.{name}", lang), options, format_func=shown.get, key=key, **extra)


def show_browse(loaded, table) -> None:
    top = st.columns([3, 1, 1, 1])
    query = top[0].text_input(t("data.search", lang), key="browse_query")
    validity = choose(top[1].selectbox, "validity", browse.VALIDITY, "browse_validity")
    dupes = DUPLICATES[choose(top[2].selectbox, "duplicates", list(DUPLICATES), "browse_dupes")]
    turns = top[3].number_input(t("data.turns", lang), 0, None, None, key="browse_turns")
    low, high = st.columns(2)
    least = low.number_input(t("data.min_tokens", lang), 0, None, None, 64, key="browse_min")
    most = high.number_input(t("data.max_tokens", lang), 0, None, None, 64, key="browse_max")
    shown = browse.filter_rows(table, query=query, validity=validity, turns=turns)
    shown = browse.filter_rows(shown, min_tokens=least, max_tokens=most, duplicate=dupes)
    size_col, page_col, count_col = st.columns([1, 1, 2])
    size = size_col.selectbox(t("data.page_size", lang), (25, 50, 100), key="browse_size")
    pages = browse.page_count(shown, size)
    if st.session_state.get("browse_page", 1) > pages:  # a narrower filter has fewer pages
        st.session_state["browse_page"] = pages
    page = page_col.number_input(t("data.page", lang), 1, pages, key="browse_page")
    count_col.caption(t("data.showing", lang, shown=len(shown), total=len(table), pages=pages))
    rows = browse.page_of(shown, page, size)
    labels = {c: t(f"data.col_{c}", lang) for c in rows.columns if c != "search"}
    narrow = {labels[c]: st.column_config.TextColumn(width="medium") for c in ("preview", "answer")}
    frame = rows.drop(columns="search").rename(columns=labels)
    st.dataframe(frame, column_config=narrow, hide_index=True)
    if rows.empty:
        return
    previews = dict(zip(rows["row"], rows["preview"], strict=True))
    pick = t("data.pick_row", lang)
    row = st.selectbox(pick, list(previews), format_func=lambda r: f"{r} · {previews[r]}")
    st.session_state["explore_row"] = int(row)
    show_row(loaded, row)


def show_row(loaded, row: int) -> None:
    found = browse.find_row(loaded, row)
    if found is None:
        st.info(t("data.no_row", lang, row=row))
    elif isinstance(found, dict):
        for bubble in browse.transcript(found):
            with st.chat_message(bubble["role"], avatar=AVATARS.get(bubble["role"])):
                st.markdown(bubble["content"])
    else:
        st.error(t("data.bad_row", lang, row=row, field=found.field or "—", message=found.message))
        st.code(found.raw or "", language="json")


def show_doctor(loaded, tokenizer, cutoff: int) -> None:
    train_on = choose(st.radio, "train_on", list(TRAIN_ON), "doctor_train_on", horizontal=True)
    first = loaded.samples[0]["row"] if loaded.samples else 1
    wanted = st.session_state.get("explore_row", first)
    if st.session_state.get("doctor_follows") != wanted:  # a row picked in Browse shows here
        st.session_state["doctor_row"] = st.session_state["doctor_follows"] = wanted
    row = int(st.number_input(t("data.row", lang), min_value=1, key="doctor_row"))
    sample = browse.find_row(loaded, row)
    if not isinstance(sample, dict):
        show_row(loaded, row)
        return
    try:
        tokenized = render_sample(tokenizer, sample, train_on=train_on, cutoff=cutoff)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    counts = tokenized.summary()
    cells = ("tokens", "kept", "trained", "cut")
    for column, name in zip(st.columns(len(cells)), cells, strict=True):
        column.metric(t(f"data.tok_{name}", lang), f"{counts[name]:,}")
    if counts["cut"]:
        st.warning(t("data.cut_message", lang, cut=counts["cut"], lost=counts["cut_trained"]))
    if not counts["trained"]:
        st.error(t("data.nothing_trained", lang))
    if not counts["exact_spans"]:
        st.warning(t("data.inexact_spans", lang))
    st.caption(t("data.mask_legend", lang))
    st.html(browse.mask_html(tokenized))


def show_statistics(stats: dict) -> None:
    numbers = browse.headline_numbers(stats)
    for column, (name, value) in zip(st.columns(len(numbers)), numbers.items(), strict=True):
        column.metric(t(f"data.stat_{name}", lang), value)
    tokens = stats.get("tokens")
    if tokens:
        how = "exact" if tokens["exact"] else "estimated"
        error = tokens.get("relative_error", 0.0)
        st.caption(t(f"data.tokens_{how}", lang, sampled=tokens["sampled"], error=error))
    else:
        st.caption(t("data.tokens_none", lang))
    mix = stats["language"].items()
    languages = " · ".join(f"{t(f'data.chart_{name}', lang)} {count:,}" for name, count in mix)
    st.caption(t("data.language_mix", lang, languages=languages))
    figures = [charts.token_histogram, charts.turns_bar, charts.roles_bar, charts.language_pie]
    columns, figures = st.columns(2), [*figures, charts.duplicates_bar]
    words = {key: t(f"data.chart_{key}", lang) for key in charts.LABELS}
    for i, draw in enumerate(figures):
        columns[i % 2].plotly_chart(draw(stats, words), key=f"stats_chart_{i}")


st.title(t("data.explore_title", lang))
source = current("source")
if not source:
    st.info(t("data.no_source", lang))
    st.page_link("pages/data_import.py", label=t("data.go_import", lang), icon=":material/upload:")
    st.stop()
fmt, encoding = current("format"), current("encoding") or "utf-8"
st.caption(t("data.explore_caption", lang, source=source))
try:
    with st.spinner(t("data.reading", lang)):
        ws.check_source(source, where="source")  # classroom: own files only
        loaded = browse.load_cached(source, fmt=fmt, encoding=encoding)
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()
left, right = st.columns([3, 1])
model = left.text_input(
    t("data.model", lang), DEFAULT_MODEL, key="explore_model", help=t("data.model_help", lang)
)
cutoff = right.number_input(t("data.cutoff", lang), 0, 10**6, 2048, 128, key="explore_cutoff")
tokenizer, problem = None, None
try:
    with st.spinner(t("data.loading_tokenizer", lang)):
        tokenizer = tokenizer_for(model.strip(), str(ws.root), ws)
except WorkbenchError as exc:
    problem = exc
key = (source, loaded.format, loaded.source.sha256, loaded.rows, model.strip(), tokenizer is None)
with st.spinner(t("data.computing", lang)):
    stats, metrics, table = stats_for(key, loaded, tokenizer)
stats = browse.with_cutoff(stats, metrics, cutoff)
labels = [t("data.tab_browse", lang), t("data.tab_doctor", lang), t("data.tab_statistics", lang)]
# Bound to the URL (?tab=...), so a reload or a link opens the same tab; hidden tabs do no work.
browse_tab, doctor_tab, stats_tab = st.tabs(labels, key="tab", bind="query-params")
if browse_tab.open:
    with browse_tab:
        show_browse(loaded, table)
if doctor_tab.open:
    with doctor_tab:
        if tokenizer is None:
            st.error(error_text(problem, lang))
        else:
            show_doctor(loaded, tokenizer, cutoff)
if stats_tab.open:
    with stats_tab:
        if problem is not None:
            st.info(t("data.no_tokenizer", lang))
        show_statistics(stats)
