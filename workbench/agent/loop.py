"""The agent loop: ask the model, run the tools it calls, show it what they returned, repeat
until it answers or runs out of steps.

    for event in run_agent(engine, "What is 17 * 23?", tools=make_tools(["calculator"])):
        print(event.kind, event.text)          # token, thought, action, observation, answer
    result = solve(engine, "What is 17 * 23?", tools=...)   # the same, collected

Every step is an `AgentEvent`, so a page can draw the trace as it grows and the CLI can print it
as JSON. On a local engine the model's turns are constrained by the protocol's grammar (see
constrain.py): an action always names a real tool with JSON arguments of the right shape. The
last allowed step asks for the final answer only (where the grammar allows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from workbench.agent.constrain import Constraint
from workbench.agent.protocols import PROTOCOLS, Reply, transcript_call
from workbench.agent.tools import Tool
from workbench.errors import InvalidInput, WorkbenchError
from workbench.generate import GenerationSettings

MAX_STEPS_LIMIT = 20


@dataclass
class AgentEvent:
    """One thing that happened. kind: token (a piece of the model's text as it streams),
    thought, action (tool + arguments), observation (text, images, error), answer, error (the
    model's output could not be used), stopped (the user stopped it or steps ran out)."""

    kind: str
    step: int
    text: str = ""
    tool: str = ""
    arguments: dict = field(default_factory=dict)
    images: list[bytes] = field(default_factory=list)
    error: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "step": self.step, "text": self.text}
        if self.kind == "action":
            data.update(tool=self.tool, arguments=self.arguments)
        if self.kind == "observation":
            data.update(tool=self.tool, error=self.error, images=len(self.images))
        if self.seconds:
            data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class AgentResult:
    """What `solve` returns: the answer (None without one), the trace, and the transcript
    (OpenAI-form messages, for the next turn's memory)."""

    answer: str | None
    events: list[AgentEvent]
    transcript: list[dict]
    steps: int
    seconds: float

    @property
    def tool_calls(self) -> int:
        return sum(e.kind == "action" for e in self.events)

    def to_dict(self) -> dict:
        trace = [e.to_dict() for e in self.events if e.kind != "token"]
        return {
            "answer": self.answer,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "seconds": round(self.seconds, 3),
            "trace": trace,
        }


def check_agent_options(protocol: str, max_steps: int) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidInput(
            f"Unknown agent protocol {protocol!r}.",
            where="protocol",
            fix=f"Choose one of {', '.join(PROTOCOLS)}.",
        )
    if not 1 <= max_steps <= MAX_STEPS_LIMIT:
        raise InvalidInput(
            f"max_steps is {max_steps}; it must be 1 to {MAX_STEPS_LIMIT}.",
            where="max_steps",
            fix="Use 5.",
        )


def run_agent(
    engine: Any,
    question: str,
    *,
    tools: list[Tool],
    protocol: str = "react",
    max_steps: int = 5,
    settings: GenerationSettings | None = None,
    history: list[dict] | None = None,
    system: str = "",
    constrained: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
    transcript_out: list[dict] | None = None,
) -> Iterator[AgentEvent]:
    """Run the agent on `question`, yielding each event as it happens.

    Args:
        engine: any Engine (local engines get constrained decoding).
        tools: the tools the model may call (none: it answers directly).
        protocol: react, function_calling or internlm2.
        history: earlier turns (user / assistant messages) for multi-turn memory.
        constrained: force constrained decoding on or off (None: on for local engines).
        should_stop: polled between tokens; True ends the run with a "stopped" event.
        transcript_out: a list that receives the transcript of this run (for the next turn).

    Raises:
        InvalidInput: empty question, unknown protocol, max_steps out of range.
        WorkbenchError: what the engine raises (the model cannot run, the server is gone).
    """
    if not question.strip():
        raise InvalidInput("The question is empty.", where="question", fix="Ask something.")
    check_agent_options(protocol, max_steps)
    proto = PROTOCOLS[protocol]()
    settings = settings or GenerationSettings(max_new_tokens=256)
    local = getattr(engine, "backend", "") == "local"
    constrained = local if constrained is None else constrained
    native = protocol == "function_calling" and getattr(engine, "backend", "") == "remote"
    by_name = {t.name: t for t in tools}
    transcript = [*(history or []), {"role": "user", "content": question}]
    for step in range(1, max_steps + 1):
        last = step == max_steps
        offered = [] if last and constrained else tools
        started = time.perf_counter()
        if native:
            reply = _ask_native(engine, proto, transcript, offered, system, settings)
        else:
            text = ""
            messages = proto.messages(tools, transcript, system)
            grammar = proto.grammar(offered) if constrained else None
            run_settings = GenerationSettings(
                max_new_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                seed=settings.seed,
                stop=[*settings.stop, *proto.stop],
                constraint=Constraint(grammar) if grammar else None,
            )
            stream = engine.chat(messages, run_settings)
            try:
                for piece in stream:
                    text += piece
                    yield AgentEvent("token", step, piece)
                    if should_stop is not None and should_stop():
                        yield AgentEvent("stopped", step, "stopped by the user")
                        _keep(transcript_out, transcript)
                        return
            finally:
                stream.close()
            reply = proto.parse(text, tools)
        seconds = time.perf_counter() - started
        if reply.thought and (reply.calls or reply.error):
            yield AgentEvent("thought", step, reply.thought, seconds=seconds)
        if reply.error:
            yield AgentEvent("error", step, reply.error, error=True, seconds=seconds)
            transcript.append({"role": "assistant", "content": reply.text})
            fix = f"{reply.error} Reply in the format described, or give the final answer."
            transcript.append({"role": "user", "content": fix})
            continue
        if reply.calls:
            yield from _call_tools(reply, step, by_name, transcript)
            continue
        answer = (reply.answer or "").strip()
        yield AgentEvent("answer", step, answer, seconds=seconds)
        transcript.append({"role": "assistant", "content": answer})
        _keep(transcript_out, transcript)
        return
    yield AgentEvent("stopped", max_steps, f"no final answer after {max_steps} steps")
    _keep(transcript_out, transcript)


def _keep(out: list[dict] | None, transcript: list[dict]) -> None:
    if out is not None:
        out[:] = transcript


def _call_tools(
    reply: Reply, step: int, by_name: dict[str, Tool], transcript: list[dict]
) -> Iterator[AgentEvent]:
    for i, call in enumerate(reply.calls):
        call.id = call.id or f"call_{step}_{i}"
    calls = [transcript_call(c) for c in reply.calls]
    transcript.append({"role": "assistant", "content": reply.thought, "tool_calls": calls})
    for call in reply.calls:
        yield AgentEvent("action", step, tool=call.name, arguments=call.arguments)
        started = time.perf_counter()
        observation = by_name[call.name].run(call.arguments)
        yield AgentEvent(
            "observation",
            step,
            observation.text,
            tool=call.name,
            images=observation.images,
            error=observation.error,
            seconds=time.perf_counter() - started,
        )
        transcript.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "name": call.name,
                "content": observation.text,
            }
        )


def _ask_native(
    engine: Any,
    proto: Any,
    transcript: list[dict],
    tools: list[Tool],
    system: str,
    settings: GenerationSettings,
) -> Reply:
    """One non-streaming chat completion with OpenAI `tools` (a remote endpoint)."""
    import httpx

    body: dict[str, Any] = {
        "model": engine.model,
        "messages": proto.native_messages(transcript, system),
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
    }
    if tools:
        body["tools"] = [t.schema() for t in tools]
    try:
        response = engine.client.post("/chat/completions", json=body)
        data = response.json()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        raise WorkbenchError(
            f"The endpoint {engine.url} did not answer the tool call request: {exc}",
            where=f"{engine.url}/chat/completions",
            fix="Check that the server runs and supports OpenAI function calling, or use the "
            "react protocol.",
        ) from exc
    if response.status_code >= 400 or not data.get("choices"):
        message = (data.get("error") or {}).get("message", response.text[:200])
        raise WorkbenchError(
            f"The endpoint {engine.url} refused the tool call request: {message}",
            where=f"{engine.url}/chat/completions",
            fix="Use the react protocol for endpoints without function calling.",
        )
    return proto.parse_native(data["choices"][0].get("message") or {}, tools)


def solve(engine: Any, question: str, **options: Any) -> AgentResult:
    """Run the agent to the end and collect what happened (see run_agent for options)."""
    started = time.perf_counter()
    transcript: list[dict] = []
    events = list(run_agent(engine, question, transcript_out=transcript, **options))
    answer = next((e.text for e in events if e.kind == "answer"), None)
    steps = max((e.step for e in events), default=0)
    return AgentResult(answer, events, transcript, steps, time.perf_counter() - started)
