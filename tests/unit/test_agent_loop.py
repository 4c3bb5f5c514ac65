"""The agent loop with a scripted model: tools run, their results go back to the model, a bad
reply is explained to it, steps run out, Stop stops, earlier turns are remembered; function
calling against an OpenAI-style endpoint sends `tools` and reads `tool_calls`."""

from __future__ import annotations

import json

import httpx
import pytest

from workbench.agent.loop import run_agent, solve
from workbench.agent.tools import make_tools
from workbench.engine.remote import RemoteEngine
from workbench.engine.stream import TextStream
from workbench.errors import InvalidInput

TOOLS = make_tools(["calculator", "python"])
CALL = 'Thought: multiply\nAction: calculator\nAction Input: {"expression": "4821 * 379"}'


class ScriptedEngine:
    """Answers each chat call with the next scripted text, in small pieces."""

    def __init__(self, replies: list[str], backend: str = "scripted") -> None:
        self.replies, self.backend = list(replies), backend
        self.prompts: list[list[dict]] = []
        self.settings: list = []

    def chat(self, messages, settings):
        self.prompts.append(messages)
        self.settings.append(settings)
        text = self.replies.pop(0)

        def pieces(stream):
            for i in range(0, len(text), 7):
                yield text[i : i + 7]
            stream.set_finish("stop")

        return TextStream(pieces, stop=settings.stop)


def test_a_tool_call_runs_and_its_result_reaches_the_model():
    engine = ScriptedEngine([CALL, "Thought: done\nFinal Answer: 1827159"])
    result = solve(engine, "What is 4821 * 379?", tools=TOOLS)
    kinds = [e.kind for e in result.events if e.kind != "token"]
    assert kinds == ["thought", "action", "observation", "answer"]
    action = next(e for e in result.events if e.kind == "action")
    assert (action.tool, action.arguments) == ("calculator", {"expression": "4821 * 379"})
    assert next(e for e in result.events if e.kind == "observation").text == "1827159"
    assert engine.prompts[1][-1] == {"role": "user", "content": "Observation: 1827159"}
    assert result.answer == "1827159" and result.tool_calls == 1 and result.steps == 2
    assert "".join(e.text for e in result.events if e.kind == "token" and e.step == 1) == CALL
    assert engine.settings[0].constraint is None  # not a local engine
    assert "\nObservation:" in engine.settings[0].stop


def test_python_tool_results_and_failures_are_observations():
    code = json.dumps({"code": "print(open('/etc/passwd').read())"})
    engine = ScriptedEngine(
        [f"Thought: read\nAction: python\nAction Input: {code}", "Final Answer: I cannot."]
    )
    result = solve(engine, "Show /etc/passwd", tools=TOOLS)
    observation = next(e for e in result.events if e.kind == "observation")
    assert observation.error and "refused: reading /etc/passwd" in observation.text
    assert result.answer == "I cannot."


def test_a_malformed_reply_is_explained_to_the_model_which_tries_again():
    engine = ScriptedEngine(
        ["Thought: x\nAction: browser\nAction Input: {}", CALL, "Final Answer: 1827159"]
    )
    result = solve(engine, "What is 4821 * 379?", tools=TOOLS)
    error = next(e for e in result.events if e.kind == "error")
    assert "there is no tool 'browser'" in error.text
    assert "there is no tool 'browser'" in engine.prompts[1][-1]["content"]
    assert result.answer == "1827159"


def test_running_out_of_steps_says_so():
    engine = ScriptedEngine([CALL, CALL])
    result = solve(engine, "loop", tools=TOOLS, max_steps=2)
    assert result.answer is None
    assert result.events[-1].kind == "stopped" and "after 2 steps" in result.events[-1].text


def test_stop_ends_the_run_while_the_model_writes():
    engine = ScriptedEngine([CALL])
    events = list(run_agent(engine, "q", tools=TOOLS, should_stop=lambda: True))
    assert [e.kind for e in events] == ["token", "stopped"]


def test_earlier_turns_are_remembered():
    engine = ScriptedEngine(["Final Answer: It is 42."])
    history = [
        {"role": "user", "content": "Remember the number 42."},
        {"role": "assistant", "content": "OK."},
    ]
    solve(engine, "Which number?", tools=TOOLS, history=history)
    assert engine.prompts[0][1:4] == [*history, {"role": "user", "content": "Which number?"}]


def test_a_local_engine_gets_a_grammar_and_the_last_step_may_only_answer():
    engine = ScriptedEngine([CALL, "Thought: ok\nFinal Answer: 1827159"], backend="local")
    solve(engine, "What is 4821 * 379?", tools=TOOLS, max_steps=2)
    from workbench.agent.constrain import advance, initial

    first, last = (s.constraint.grammar for s in engine.settings)
    assert advance(initial(first), CALL) is not None
    assert advance(initial(last), CALL) is None  # no tools on the last step
    assert advance(initial(last), "Thought: ok\nFinal Answer: 1") is not None


def test_bad_options_are_bad_input():
    engine = ScriptedEngine([])
    with pytest.raises(InvalidInput, match="protocol"):
        solve(engine, "q", tools=TOOLS, protocol="mcp")
    with pytest.raises(InvalidInput, match="max_steps"):
        solve(engine, "q", tools=TOOLS, max_steps=0)
    with pytest.raises(InvalidInput, match="empty"):
        solve(engine, "  ", tools=TOOLS)


def test_function_calling_on_an_endpoint_sends_tools_and_reads_tool_calls():
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        if len(requests) == 1:
            call = {"name": "calculator", "arguments": '{"expression": "2^10"}'}
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
            }
        else:
            message = {"role": "assistant", "content": "2^10 is 1024."}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message}]})

    engine = RemoteEngine("http://endpoint.test/v1", "m")
    engine.client = httpx.Client(base_url=engine.url, transport=httpx.MockTransport(handler))
    result = solve(engine, "What is 2^10?", tools=TOOLS, protocol="function_calling")
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["calculator", "python"]
    tool_message = requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert tool_message["content"] == "1024"
    assert result.answer == "2^10 is 1024."
