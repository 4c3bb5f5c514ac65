"""Chat: talk to any model or endpoint with a system prompt and settings, streaming with a stop
button; regenerate; chats saved in the workspace and exported as JSON or Markdown.
"""

from __future__ import annotations

import streamlit as st

from workbench.chat_store import (
    export_chat,
    list_chats,
    new_chat,
    save_chat,
)
from workbench.chat_view import answer_stats, engine_choices, settings_from
from workbench.engine import shared_engine
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
limits = st.session_state["limits"]  # demo mode caps the answer length
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
OTHER = "…"  # the choice that opens a field for any OpenAI-compatible endpoint


def engine_for(name: str, api_key: str):
    """One engine per model for the whole app (a classroom shares the model)."""
    return shared_engine(name, ws, api_key=api_key)


def pick_model(key: str, label: str) -> tuple[str, str]:
    """A model or endpoint box; returns (engine name, api key)."""
    choice = st.selectbox(label, [*engine_choices(ws), OTHER], key=key)
    if choice != OTHER:
        return choice, ""
    endpoint = st.text_input(
        t("chat.endpoint", lang), key=f"{key}_url", placeholder=t("chat.endpoint_hint", lang)
    )
    return endpoint.strip(), st.text_input(
        t("chat.api_key", lang), key=f"{key}_key", type="password"
    )


def settings_widgets():
    with st.expander(t("chat.settings", lang)):
        left, right = st.columns(2)
        max_new = left.number_input(
            t("chat.max_tokens", lang),
            1,
            limits.new_tokens_cap(4096),
            limits.new_tokens_cap(256),
            key="chat_max",
        )
        temperature = right.slider(
            t("chat.temperature", lang), 0.0, 1.5, 0.7, 0.05, key="chat_temp"
        )
        top_p = left.slider(t("chat.top_p", lang), 0.05, 1.0, 0.9, 0.05, key="chat_top_p")
        seed = right.number_input(t("chat.seed", lang), 0, 2**31 - 1, 0, key="chat_seed")
        stop = st.text_area(t("chat.stop", lang), "", key="chat_stop", height=68)
    return settings_from(max_new, temperature, top_p, seed, stop)


def stats_line(stats: dict) -> str:
    finish = t(f"chat.finish_{stats['finish'] or 'cancelled'}", lang)
    return t("chat.stats", lang, **{**stats, "finish": finish})


def answer(chat, engine, settings) -> None:
    """Stream the next answer of `chat`; a click on Stop (any rerun) keeps what came so far."""
    with st.chat_message("assistant"):
        stop_slot = st.empty()  # the Stop button lives while the answer streams
        stop_slot.button(
            t("chat.stop_button", lang), icon=":material/stop_circle:", key="chat_stop_now"
        )
        box, text = st.empty(), ""
        stream = engine.chat(chat.prompt_messages(), settings)
        try:
            for piece in stream:
                text += piece
                box.markdown(text + "▌")
        finally:
            stream.close()
            stats = answer_stats(stream)
            if text or stream.finish_reason in ("stop", "length"):  # not after an error
                chat.messages.append({"role": "assistant", "content": text, "stats": stats})
            save_chat(ws, chat)
        stop_slot.empty()
        box.markdown(text)
        st.caption(stats_line(stats))


def chat_tab(settings) -> None:
    name, key = pick_model("chat_model", t("chat.model", lang))
    system = st.text_area(t("chat.system", lang), "", key="chat_system", height=68)
    chats = {c.id: c for c in list_chats(ws)}
    options = ["", *chats]
    current = st.session_state.get("chat_id", "")
    if current not in options:
        st.session_state["chat_id"] = ""
    st.selectbox(
        t("chat.history", lang),
        options,
        key="chat_id",
        format_func=lambda i: chats[i].title or i if i else t("chat.new", lang),
    )
    chat = chats.get(st.session_state["chat_id"])
    if not name:
        st.info(t("chat.no_model", lang))
        return
    for message in chat.messages if chat else []:
        with st.chat_message(message["role"]):
            st.markdown(message["content"])
            if message.get("stats"):
                st.caption(stats_line(message["stats"]))
    prompt = st.chat_input(t("chat.input", lang))
    regenerate = bool(
        chat and chat.messages and chat.messages[-1]["role"] == "assistant"
    ) and st.button(t("chat.regenerate", lang), icon=":material/refresh:", key="chat_regenerate")
    if prompt or regenerate:
        with st.spinner(t("chat.loading", lang, model=name)):
            engine = engine_for(name, key)
        if chat is None:
            chat = new_chat(ws, name, system=system, settings=vars(settings))
            st.session_state["chat_next_id"] = chat.id
        chat.model, chat.system, chat.settings = name, system, vars(settings)
        if regenerate:
            chat.messages.pop()
        else:
            chat.messages.append({"role": "user", "content": prompt})
            with st.chat_message("user"):
                st.markdown(prompt)
        answer(chat, engine, settings)
    if chat and chat.messages:
        left, right, _ = st.columns([1, 1, 2])
        left.download_button(
            t("chat.export_json", lang),
            export_chat(chat, "json"),
            f"{chat.id}.json",
            mime="application/json",
            key="chat_export_json",
        )
        right.download_button(
            t("chat.export_md", lang),
            export_chat(chat, "markdown"),
            f"{chat.id}.md",
            mime="text/markdown",
            key="chat_export_md",
        )


st.title(t("chat.title", lang))
if next_id := st.session_state.pop("chat_next_id", None):
    st.session_state["chat_id"] = next_id
try:
    generation = settings_widgets()
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()
chat_tab(generation)
