"""The Agent page as a user meets it: pick tools, ask, and watch the trace (thought, action with
its arguments, observation) and the answer appear; the turn stays on the page and is
remembered; the equivalent command is shown — in English and 中文."""

from __future__ import annotations

import json

import pytest

from workbench.agent.search import DocumentIndex
from workbench.i18n import t

from .apptest import open_app, rerun, texts

AGENT = "pages/agent.py"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_page_offers_model_protocol_tools_and_the_command(default_workspace, lang):
    at = open_app(lang, AGENT)
    assert at.title[0].value == t("agent.title", lang)
    assert at.selectbox(key="agent_model").value == "default"
    assert at.selectbox(key="agent_protocol").options == [
        t("agent.protocol_react", lang),
        t("agent.protocol_function_calling", lang),
        t("agent.protocol_internlm2", lang),
    ]
    assert at.multiselect(key="agent_tools").value == ["calculator", "python", "search_docs"]
    passages = len(DocumentIndex.from_folder().passages)
    assert t("agent.docs_count", lang, files=3, passages=passages) in texts(at)
    (command,) = [c.value for c in at.code if c.value.startswith("workbench agent")]
    assert command == (
        "workbench agent --model default --tools calculator,python,search_docs "
        "--protocol react --max-steps 5 QUESTION --json"
    )


def test_a_question_streams_a_trace_and_an_answer(default_workspace):
    at = open_app("en", AGENT)
    at.multiselect(key="agent_tools").set_value(["calculator"])
    at.number_input(key="agent_steps").set_value(2)
    at.number_input(key="agent_max_new").set_value(64)
    rerun(at)
    at.chat_input[0].set_value("What is 4821 * 379?")
    rerun(at)
    (turn,) = at.session_state["agent_turns"]
    kinds = [e.kind for e in turn.events]
    assert kinds and kinds[-1] in ("answer", "stopped")
    assert "error" not in kinds  # constrained decoding: every reply of the model was usable
    shown = texts(at)
    for event in turn.events:
        if event.kind == "action":
            assert event.tool == "calculator"
            assert json.dumps(event.arguments, ensure_ascii=False, indent=1) in shown
        if event.kind == "observation":
            assert event.text in shown
    if turn.answer is not None:
        assert f"**{t('agent.answer')}:** {turn.answer}" in shown
    assert t("agent.summary", steps=turn.steps, calls=turn.calls, seconds=turn.seconds) in shown
    rerun(at)  # the turn stays on the page
    assert len(at.session_state["agent_turns"]) == 1
    assert "What is 4821 * 379?" in texts(at) or any(
        "What is 4821 * 379?" in str(m.value) for m in at.markdown
    )
