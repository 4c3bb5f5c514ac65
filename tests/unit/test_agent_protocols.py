"""Each protocol's parser on good and malformed model output, and how it shows the model the
tools and the transcript."""

from __future__ import annotations

import json

import pytest

from workbench.agent.protocols import FunctionCalling, InternLM2, ReAct
from workbench.agent.tools import make_tools

TOOLS = make_tools(["calculator", "python"])


def test_react_reads_an_action():
    text = (
        'Thought: I need to multiply.\nAction: calculator\nAction Input: {"expression": "4821*379"}'
    )
    reply = ReAct().parse(text, TOOLS)
    assert reply.thought == "I need to multiply."
    assert [(c.name, c.arguments) for c in reply.calls] == [
        ("calculator", {"expression": "4821*379"})
    ]
    assert reply.answer is None and not reply.error


def test_react_reads_a_final_answer_and_cuts_what_follows():
    text = "Thought: I know it.\nFinal Answer: 1827159\nObservation: invented"
    reply = ReAct().parse(text, TOOLS)
    assert reply.answer == "1827159" and not reply.calls


@pytest.mark.parametrize(
    "text, error",
    [
        ("Thought: x\nAction: browser\nAction Input: {}", "there is no tool 'browser'"),
        ('Thought: x\nAction: calculator\nAction Input: {"expression": "1+', "invalid JSON"),
        ("Thought: x\nAction: calculator\nAction Input: 4821*379", "no JSON object"),
        ("Thought: x\nAction: calculator", "needs an 'Action Input:'"),
        ('Thought: x\nAction: calculator\nAction Input: ["a"]', "no JSON object"),
    ],
)
def test_react_explains_malformed_actions(text, error):
    reply = ReAct().parse(text, TOOLS)
    assert error in reply.error and not reply.calls and reply.answer is None


def test_react_takes_plain_text_as_the_answer():
    assert ReAct().parse("Paris is the capital.", TOOLS).answer == "Paris is the capital."


def test_react_prompt_lists_tools_and_replays_the_transcript():
    transcript = [
        {"role": "user", "content": "What is 2+2?"},
        {
            "role": "assistant",
            "content": "add them",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "4"},
    ]
    messages = ReAct().messages(TOOLS, transcript, "")
    assert "- calculator:" in messages[0]["content"] and "- python:" in messages[0]["content"]
    assert messages[2]["content"] == (
        'Thought: add them\nAction: calculator\nAction Input: {"expression": "2+2"}'
    )
    assert messages[3] == {"role": "user", "content": "Observation: 4"}


def test_function_calling_reads_tool_call_blocks():
    text = (
        "Let me compute.\n<tool_call>\n"
        '{"name": "calculator", "arguments": {"expression": "2^10"}}\n</tool_call>'
    )
    reply = FunctionCalling().parse(text, TOOLS)
    assert reply.thought == "Let me compute."
    assert reply.calls[0].name == "calculator" and reply.calls[0].arguments == {
        "expression": "2^10"
    }


@pytest.mark.parametrize(
    "block, error",
    [
        ('{"name": "search", "arguments": {}}', "no tool 'search'"),
        ('{"name": "calculator", "arguments": "2+2"}', "'arguments' is not a JSON object"),
        ('{"name": "calculator", "arguments": {"expression": ', "invalid JSON"),
    ],
)
def test_function_calling_explains_malformed_calls(block, error):
    reply = FunctionCalling().parse(f"<tool_call>\n{block}\n</tool_call>", TOOLS)
    assert error in reply.error and not reply.calls


def test_function_calling_reads_native_tool_calls():
    message = {
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "python", "arguments": '{"code": "print(1)"}'},
            }
        ],
    }
    reply = FunctionCalling().parse_native(message, TOOLS)
    assert reply.calls[0].id == "call_9" and reply.calls[0].arguments == {"code": "print(1)"}
    bad = dict(message, tool_calls=[{"function": {"name": "python", "arguments": "{oops"}}])
    assert "invalid JSON" in FunctionCalling().parse_native(bad, TOOLS).error
    assert FunctionCalling().parse_native({"content": "42"}, TOOLS).answer == "42"


def test_internlm2_reads_plugin_and_interpreter_actions():
    plugin = (
        "I will compute it.<|action_start|><|plugin|>\n"
        '{"name": "calculator", "parameters": {"expression": "3*3"}}<|action_end|>\n'
    )
    reply = InternLM2().parse(plugin, TOOLS)
    assert reply.thought == "I will compute it."
    assert reply.calls[0].name == "calculator" and reply.calls[0].arguments == {"expression": "3*3"}
    code = "<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>"
    reply = InternLM2().parse(code, TOOLS)
    assert reply.calls[0].name == "python" and reply.calls[0].arguments == {"code": "print(6 * 7)"}
    assert InternLM2().parse("The answer is 9.", TOOLS).answer == "The answer is 9."


@pytest.mark.parametrize(
    "text, error",
    [
        ('<|action_start|><|plugin|>\n{"name": "weather"}<|action_end|>', "no tool 'weather'"),
        ("<|action_start|><|plugin|>\n{broken<|action_end|>", "invalid JSON"),
        ("<|action_start|><|interpreter|>\n```python\n```<|action_end|>", "code is empty"),
    ],
)
def test_internlm2_explains_malformed_actions(text, error):
    reply = InternLM2().parse(text, TOOLS)
    assert error in reply.error and not reply.calls


def test_internlm2_messages_use_named_system_and_environment_turns():
    transcript = [
        {"role": "user", "content": "6*7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "a", "function": {"name": "python", "arguments": '{"code": "print(42)"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "a", "name": "python", "content": "42"},
    ]
    messages = InternLM2().messages(TOOLS, transcript, "")
    roles = [m["role"] for m in messages]
    assert roles == [
        "system",
        "system name=<|plugin|>",
        "system name=<|interpreter|>",
        "user",
        "assistant",
        "environment name=<|interpreter|>",
    ]
    assert json.loads(messages[1]["content"])[0]["name"] == "calculator"
    assert (
        "<|action_start|><|interpreter|>\n```python\nprint(42)\n```<|action_end|>"
        in (messages[4]["content"])
    )
