"""Arena: the same prompt to 2–3 models side by side, answers streaming together, labelled A, B,
C until the vote; the vote (A, B, C better, tie or skip) is stored in the workspace, where the
evaluation page and the preference-data step read it (`workbench.chat_store.read_votes`).
"""

from __future__ import annotations

import streamlit as st

from workbench.chat_store import arena_table, read_votes, record_vote
from workbench.chat_view import engine_choices, settings_from
from workbench.engine import shared_engine
from workbench.engine.stream import stream_together
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
limits = st.session_state["limits"]  # demo mode caps the answer length
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)


def engine_for(name: str):
    return shared_engine(name, ws)


def settings_widgets():
    with st.expander(t("chat.settings", lang)):
        left, right = st.columns(2)
        max_new = left.number_input(
            t("chat.max_tokens", lang),
            1,
            limits.new_tokens_cap(4096),
            limits.new_tokens_cap(256),
            key="arena_max",
        )
        temperature = right.slider(
            t("chat.temperature", lang), 0.0, 1.5, 0.7, 0.05, key="arena_temp"
        )
        top_p = left.slider(t("chat.top_p", lang), 0.05, 1.0, 0.9, 0.05, key="arena_top_p")
        seed = right.number_input(t("chat.seed", lang), 0, 2**31 - 1, 0, key="arena_seed")
        stop = st.text_area(t("chat.stop", lang), "", key="arena_stop", height=68)
    return settings_from(max_new, temperature, top_p, seed, stop)


def arena(settings) -> None:
    st.caption(t("chat.arena_caption", lang))
    choices = engine_choices(ws)
    models = st.multiselect(
        t("chat.arena_models", lang),
        choices,
        default=choices[:2],
        max_selections=3,
        key="arena_models",
    )
    prompt = st.text_area(t("chat.arena_prompt", lang), "", key="arena_prompt", height=90)
    ready = len(models) >= 2 and prompt.strip()
    if st.button(
        t("chat.arena_ask", lang),
        icon=":material/sports_kabaddi:",
        key="arena_ask",
        disabled=not ready,
    ):
        columns = st.columns(len(models))
        boxes = [column.empty() for column in columns]
        with st.spinner(t("chat.loading", lang, model=", ".join(models))):
            engines = [engine_for(m) for m in models]
        streams = [e.chat([{"role": "user", "content": prompt}], settings) for e in engines]
        for texts in stream_together(streams):
            for box, text in zip(boxes, texts, strict=True):
                box.markdown(text)
        st.session_state["arena_result"] = {"prompt": prompt, "models": models, "answers": texts}
        st.session_state.pop("arena_revealed", None)
        st.rerun()
    result = st.session_state.get("arena_result")
    if result:
        letters = "ABC"
        for i, (column, text) in enumerate(
            zip(st.columns(len(result["models"])), result["answers"], strict=True)
        ):
            column.markdown(f"**{t('chat.arena_answer', lang, letter=letters[i])}**")
            column.markdown(text)
        buttons = st.columns(len(result["models"]) + 2)
        votes = [(letters[i], "win", m) for i, m in enumerate(result["models"])]
        votes += [("tie", "tie", None), ("skip", "skip", None)]
        for column, (label, outcome, winner) in zip(buttons, votes, strict=True):
            text = (
                t("chat.arena_better", lang, letter=label)
                if outcome == "win"
                else t(f"chat.arena_{label}", lang)
            )
            if column.button(text, key=f"arena_vote_{label}"):
                record_vote(
                    ws,
                    prompt=result["prompt"],
                    models=result["models"],
                    answers=result["answers"],
                    outcome=outcome,
                    winner=winner,
                )
                st.session_state.pop("arena_result")
                st.session_state["arena_revealed"] = result["models"]
                st.rerun()
    if revealed := st.session_state.get("arena_revealed"):
        st.success(
            t(
                "chat.arena_thanks",
                lang,
                models=" · ".join(f"{'ABC'[i]} = {m}" for i, m in enumerate(revealed)),
            )
        )
    table = arena_table(read_votes(ws))
    if table:
        st.subheader(t("chat.arena_board", lang))
        st.dataframe(table, hide_index=True, key="arena_board")


st.title(t("chat.arena_title", lang))
try:
    generation = settings_widgets()
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()
arena(generation)
