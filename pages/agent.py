"""Agent: ask a question; the model plans, calls tools (calculator, sandboxed Python, document
search, dates, units) and answers. The trace streams step by step; Stop ends it; earlier turns
are remembered until a new conversation.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from workbench.agent.loop import run_agent
from workbench.agent.protocols import PROTOCOLS
from workbench.agent.tools import BUILTIN_TOOLS
from workbench.agent.view import (
    DEFAULT_TOOLS,
    AgentTurn,
    cli_command,
    document_index,
    memory,
    page_tools,
)
from workbench.chat_view import engine_choices
from workbench.engine import shared_engine
from workbench.errors import WorkbenchError
from workbench.generate import GenerationSettings
from workbench.i18n import error_text, t
from workbench.workspace import Workspace

if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
limits = st.session_state["limits"]  # demo mode caps the answer length
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
ICONS = {"thought": "💭", "action": "🔧", "observation": "👁", "error": "⚠️", "stopped": "⏹"}


def draw_event(event) -> None:
    """One step of the trace."""
    if event.kind == "thought":
        st.markdown(f"{ICONS['thought']} **{t('agent.thought', lang)}** · {event.text}")
    elif event.kind == "action":
        st.markdown(f"{ICONS['action']} **{t('agent.action', lang)}** · `{event.tool}`")
        st.code(json.dumps(event.arguments, ensure_ascii=False, indent=1), language="json")
    elif event.kind == "observation":
        st.markdown(f"{ICONS['observation']} **{t('agent.observation', lang)}**")
        st.code(event.text, language=None)
        for image in event.images:
            st.image(image)
    elif event.kind == "error":
        st.warning(f"{t('agent.format_error', lang)}: {event.text}")
    elif event.kind == "stopped":
        st.info(f"{t('agent.stopped', lang)}: {event.text}")


def draw_turn(turn: AgentTurn) -> None:
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        for event in turn.events:
            draw_event(event)
        if turn.answer is not None:
            st.markdown(f"**{t('agent.answer', lang)}:** {turn.answer}")
        summary = {"steps": turn.steps, "calls": turn.calls, "seconds": turn.seconds}
        st.caption(t("agent.summary", lang, **summary))


def run_turn(turn: AgentTurn, engine, options: dict) -> None:
    """Stream a new turn: the model's text as it is written, then each parsed step."""
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        stop_slot = st.empty()  # the Stop button lives while the agent works
        stop_slot.button(t("agent.stop", lang), icon=":material/stop_circle:", key="agent_stop_now")
        box, text, step, started = st.empty(), "", 0, time.perf_counter()
        try:
            for event in run_agent(engine, turn.question, **options):
                if event.kind == "token":
                    text = text if event.step == step else ""
                    step, text = event.step, text + event.text
                    box.caption(t("agent.writing", lang, step=step) + "\n\n" + text)
                    continue
                box.empty()
                turn.events.append(event)
                draw_event(event)
                if event.kind == "answer":
                    turn.answer = event.text
                    st.markdown(f"**{t('agent.answer', lang)}:** {event.text}")
                box, text = st.empty(), ""
        finally:  # also when Stop (any rerun) interrupts: keep what came so far
            turn.seconds = time.perf_counter() - started
            st.session_state["agent_turns"].append(turn)
        stop_slot.empty()
        st.caption(
            t("agent.summary", lang, steps=turn.steps, calls=turn.calls, seconds=turn.seconds)
        )


st.title(t("agent.title", lang))
st.caption(t("agent.intro", lang))
models = engine_choices(ws)
if not models:
    st.info(t("agent.no_model", lang))
    st.stop()
left, middle, right = st.columns([2, 2, 1])
model = left.selectbox(t("agent.model", lang), models, key="agent_model")
protocol = middle.selectbox(
    t("agent.protocol", lang),
    list(PROTOCOLS),
    key="agent_protocol",
    format_func=lambda p: t(f"agent.protocol_{p}", lang),
)
max_steps = right.number_input(t("agent.max_steps", lang), 1, 20, 5, key="agent_steps")
tool_names = st.multiselect(
    t("agent.tools", lang),
    list(BUILTIN_TOOLS),
    default=DEFAULT_TOOLS,
    key="agent_tools",
    format_func=lambda n: t(f"agent.tool_{n}", lang),
)
with st.expander(t("agent.settings", lang)):
    max_new = st.number_input(
        t("agent.max_tokens", lang),
        16,
        limits.new_tokens_cap(2048),
        limits.new_tokens_cap(256),
        key="agent_max_new",
    )
    constrained = st.toggle(t("agent.constrained", lang), True, key="agent_constrained")
    uploads = st.file_uploader(
        t("agent.docs_upload", lang), type=["md", "txt"], accept_multiple_files=True
    )
try:
    index = document_index([(f.name, f.getvalue()) for f in uploads or []])
    tools = page_tools(tool_names, index)
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()
files = len({p.source for p in index.passages})
st.caption(t("agent.docs_count", lang, files=files, passages=len(index.passages)))

turns: list[AgentTurn] = st.session_state.setdefault("agent_turns", [])
if turns and st.button(t("agent.clear", lang), icon=":material/refresh:", key="agent_clear"):
    turns.clear()
for turn in turns:
    draw_turn(turn)
question = st.chat_input(t("agent.input", lang))
if question:
    with st.spinner(t("agent.loading", lang, model=model)):
        engine = shared_engine(model, ws)
    options = {
        "tools": tools,
        "protocol": protocol,
        "max_steps": int(max_steps),
        "settings": GenerationSettings(max_new_tokens=int(max_new)),
        "history": memory(turns),
        "constrained": None if constrained else False,
    }
    run_turn(AgentTurn(question), engine, options)
with st.expander(t("agent.cli", lang)):
    st.code(cli_command(model, tool_names, protocol, int(max_steps), question or ""), "bash")
