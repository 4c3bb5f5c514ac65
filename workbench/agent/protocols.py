"""How a model is told about tools, how its tool calls are read back, and the grammar that keeps
a local model's calls well formed. Three protocols (`PROTOCOLS`, name -> class):

- `react`: plain text that any chat model can follow (Thought / Action / Action Input /
  Observation / Final Answer);
- `function_calling`: OpenAI `tools` / `tool_calls`. A remote OpenAI-compatible endpoint gets the
  tools natively; a local model gets them in the system prompt and answers with
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the Hermes / Qwen convention);
- `internlm2`: tools in a system message named `<|plugin|>` and the interpreter in one named
  `<|interpreter|>`; calls are `<|action_start|><|plugin|>{json}<|action_end|>` and
  `<|action_start|><|interpreter|>code<|action_end|>`; results come back as `environment` turns.

The transcript the loop keeps is in OpenAI form (user / assistant with tool_calls / tool);
each protocol turns it into the messages its model reads (`messages`) and turns the model's
text into a `Reply` (`parse`). Malformed output becomes a Reply with `error` set, which the loop
shows the model as an observation so it can try again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from workbench.agent.constrain import Branch, Free, Lit, json_object
from workbench.agent.tools import Tool

SYSTEM = "You are a helpful assistant that solves tasks step by step and uses tools when useful."


@dataclass
class ToolCall:
    name: str
    arguments: dict
    id: str = ""


@dataclass
class Reply:
    """One model turn, read: its reasoning, the calls it asks for, or its final answer."""

    text: str
    thought: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None
    error: str = ""


def _json_object(text: str) -> tuple[dict | None, str]:
    """The first JSON object in `text`, or (None, why not)."""
    start = text.find("{")
    if start < 0:
        return None, "no JSON object found"
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return None, "the arguments are not a JSON object"
    return value, ""


def _check_name(name: str, tools: list[Tool]) -> str:
    names = [t.name for t in tools]
    return "" if name in names else f"there is no tool {name!r}; the tools are {names}"


def _arguments_text(call: dict) -> str:
    return call["function"]["arguments"]


def transcript_call(call: ToolCall) -> dict:
    """A ToolCall in the transcript's OpenAI form."""
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


# --- ReAct -------------------------------------------------------------------------------------


EXAMPLES = {  # tool -> (question, arguments, observation, final answer)
    "calculator": ("What is 15 * 4 + 3?", {"expression": "15 * 4 + 3"}, "63", "63"),
    "python": (
        "Use Python to add up the squares of 1, 2 and 3.",
        {"code": "print(sum(x * x for x in [1, 2, 3]))"},
        "14",
        "14",
    ),
    "search_docs": (
        "When does the city museum open on Mondays?",
        {"query": "city museum open Mondays"},
        "[museum.md] The city museum opens at 9:00 on Mondays.",
        "9:00",
    ),
}
ANSWER_ENDS = ("\nThought:", "\nAction:", "\nObservation:", "\nQuestion:")


class ReAct:
    name = "react"
    stop = ["\nObservation:"]

    def system_prompt(self, tools: list[Tool], system: str) -> str:
        lines = [system or SYSTEM, "", "Tools:"]
        for tool in tools:
            args = {k: v.get("type", "string") for k, v in tool.parameters["properties"].items()}
            lines.append(f"- {tool.name}: {tool.description} Arguments: {json.dumps(args)}")
        names = ", ".join(t.name for t in tools)
        lines += [
            "",
            "Answer in this format:",
            "Thought: what to do next",
            f"Action: the tool to use, one of [{names}]",
            "Action Input: the tool's arguments as a JSON object, taken from the question",
            "Observation: the tool's result (written for you)",
            "... (Thought / Action / Action Input / Observation may repeat)",
            "Thought: I know the answer.",
            "Final Answer: the answer",
        ]
        for tool in tools:  # a worked example per tool: small models copy the pattern
            if tool.name in EXAMPLES:
                question, arguments, observation, answer = EXAMPLES[tool.name]
                lines += [
                    "",
                    "Example:",
                    f"Question: {question}",
                    f"Thought: I will use {tool.name}.",
                    f"Action: {tool.name}",
                    f"Action Input: {json.dumps(arguments)}",
                    f"Observation: {observation}",
                    "Thought: I know the answer.",
                    f"Final Answer: {answer}",
                ]
        return "\n".join(lines)

    def messages(self, tools: list[Tool], transcript: list[dict], system: str) -> list[dict]:
        out = [{"role": "system", "content": self.system_prompt(tools, system)}]
        for turn in transcript:
            if turn["role"] == "assistant" and turn.get("tool_calls"):
                call = turn["tool_calls"][0]
                text = turn.get("content") or ""
                text = text if text.startswith("Thought:") else f"Thought: {text}".rstrip()
                text += (
                    f"\nAction: {call['function']['name']}\nAction Input: {_arguments_text(call)}"
                )
                out.append({"role": "assistant", "content": text})
            elif turn["role"] == "tool":
                out.append({"role": "user", "content": f"Observation: {turn['content']}"})
            else:
                out.append({"role": turn["role"], "content": turn["content"]})
        return out

    def parse(self, text: str, tools: list[Tool]) -> Reply:
        thought_match = re.search(
            r"Thought:\s*(.*?)(?=\n\s*(Action|Final Answer)\s*:|$)", text, re.S
        )
        thought = thought_match.group(1).strip() if thought_match else ""
        action = re.search(r"Action\s*:\s*(.*?)\s*\n\s*Action Input\s*:\s*(.*)", text, re.S)
        final = re.search(r"Final Answer\s*:\s*(.*)", text, re.S)
        if final and (not action or final.start() < action.start()):
            answer = re.split("|".join(map(re.escape, ANSWER_ENDS)), final.group(1))[0]
            return Reply(text, thought=thought, answer=answer.strip())
        if action:
            name = action.group(1).strip().strip("`'\"[]")
            arguments, why = _json_object(action.group(2))
            why = _check_name(name, tools) or why
            if why:
                return Reply(text, thought=thought, error=f"Could not use the action: {why}.")
            return Reply(text, thought=thought, calls=[ToolCall(name, arguments or {})])
        if re.search(r"^\s*Action\s*:", text, re.M):
            return Reply(text, thought=thought, error="An Action needs an 'Action Input:' line.")
        return Reply(text, thought=thought, answer=(thought or text).strip())

    def grammar(self, tools: list[Tool]) -> tuple:
        options: list[tuple[str, Any]] = [
            (f"Action: {t.name}\nAction Input: ", json_object(t.parameters)) for t in tools
        ]
        ends = tuple((marker, ()) for marker in ANSWER_ENDS)
        options.append(("Final Answer: ", (Free(markers=ends, may_end=True),)))
        after_thought = (Branch(tuple(options)),)
        return (
            Lit("Thought: "),
            Free(markers=(("\n", after_thought),), one_line=True, max_chars=400),
        )


# --- OpenAI function calling -------------------------------------------------------------------


class FunctionCalling:
    name = "function_calling"
    stop: list[str] = []

    def system_prompt(self, tools: list[Tool], system: str) -> str:
        schemas = "\n".join(json.dumps(t.schema()["function"], ensure_ascii=False) for t in tools)
        return (
            f"{system or SYSTEM}\n\nYou may call one of these functions. Their signatures:\n"
            f"<tools>\n{schemas}\n</tools>\n"
            "To call a function, reply with:\n<tool_call>\n"
            '{"name": "function name", "arguments": {...}}\n</tool_call>\n'
            "You will get the result in <tool_response></tool_response>. When you know the "
            "answer, reply with the answer only."
        )

    def messages(self, tools: list[Tool], transcript: list[dict], system: str) -> list[dict]:
        out = [{"role": "system", "content": self.system_prompt(tools, system)}]
        for turn in transcript:
            if turn["role"] == "assistant" and turn.get("tool_calls"):
                text = turn.get("content") or ""
                for call in turn["tool_calls"]:
                    body = {
                        "name": call["function"]["name"],
                        "arguments": json.loads(_arguments_text(call)),
                    }
                    text += f"\n<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"
                out.append({"role": "assistant", "content": text.strip()})
            elif turn["role"] == "tool":
                content = f"<tool_response>\n{turn['content']}\n</tool_response>"
                out.append({"role": "user", "content": content})
            else:
                out.append({"role": turn["role"], "content": turn["content"]})
        return out

    def native_messages(self, transcript: list[dict], system: str) -> list[dict]:
        """The transcript as an OpenAI endpoint takes it with `tools`."""
        return [{"role": "system", "content": system or SYSTEM}, *transcript]

    def parse(self, text: str, tools: list[Tool]) -> Reply:
        blocks = re.findall(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.S)
        thought = text.split("<tool_call>")[0].strip()
        if not blocks:
            return Reply(text, answer=text.strip())
        calls = []
        for block in blocks:
            body, why = _json_object(block)
            if body is not None and not isinstance(body.get("arguments", {}), dict):
                body, why = None, "'arguments' is not a JSON object"
            if body is not None:
                why = _check_name(str(body.get("name", "")), tools)
            if why:
                return Reply(text, thought=thought, error=f"Could not read the tool call: {why}.")
            calls.append(ToolCall(body["name"], body.get("arguments") or {}))
        return Reply(text, thought=thought, calls=calls)

    def parse_native(self, message: dict, tools: list[Tool]) -> Reply:
        """A `choices[0].message` of an OpenAI chat completion with `tools`."""
        text = message.get("content") or ""
        if not message.get("tool_calls"):
            return self.parse(text, tools)
        calls = []
        for call in message["tool_calls"]:
            function = call.get("function") or {}
            raw = function.get("arguments") or "{}"
            arguments = raw if isinstance(raw, dict) else None
            why = ""
            if arguments is None:
                arguments, why = _json_object(raw)
            why = _check_name(function.get("name", ""), tools) or why
            if why:
                return Reply(text, thought=text, error=f"Could not read the tool call: {why}.")
            calls.append(ToolCall(function["name"], arguments or {}, id=call.get("id", "")))
        return Reply(text, thought=text.strip(), calls=calls)

    def grammar(self, tools: list[Tool]) -> tuple:
        if not tools:
            return (Free(may_end=True),)
        options = tuple(
            (
                f'{{"name": "{t.name}", "arguments": ',
                (*json_object(t.parameters), Lit("}\n</tool_call>")),
            )
            for t in tools
        )
        return (Free(markers=(("<tool_call>\n", (Branch(options),)),), may_end=True),)


# --- InternLM2 ---------------------------------------------------------------------------------

ACTION_START, ACTION_END = "<|action_start|>", "<|action_end|>"
PLUGIN, INTERPRETER = "<|plugin|>", "<|interpreter|>"


class InternLM2:
    name = "internlm2"
    stop = [ACTION_END]

    def messages(self, tools: list[Tool], transcript: list[dict], system: str) -> list[dict]:
        plugins = [t for t in tools if t.name != "python"]
        meta = system or SYSTEM
        out = [{"role": "system", "content": meta}]
        if plugins:
            schemas = [t.schema()["function"] for t in plugins]
            out[0]["content"] += (
                f"\nYou can use these plugins: call one with {ACTION_START}{PLUGIN}\n"
                f'{{"name": ..., "parameters": {{...}}}}{ACTION_END}'
            )
            out.append(
                {
                    "role": f"system name={PLUGIN}",
                    "content": json.dumps(schemas, ensure_ascii=False),
                }
            )
        if any(t.name == "python" for t in tools):
            out.append(
                {
                    "role": f"system name={INTERPRETER}",
                    "content": "You can run Python code: write it as "
                    f"{ACTION_START}{INTERPRETER}\n```python\ncode\n```{ACTION_END} and print the "
                    "results you need.",
                }
            )
        for turn in transcript:
            if turn["role"] == "assistant" and turn.get("tool_calls"):
                call = turn["tool_calls"][0]
                name, arguments = call["function"]["name"], json.loads(_arguments_text(call))
                if name == "python":
                    action = f"{INTERPRETER}\n```python\n{arguments.get('code', '')}\n```"
                else:
                    body = json.dumps({"name": name, "parameters": arguments}, ensure_ascii=False)
                    action = f"{PLUGIN}\n{body}"
                text = (turn.get("content") or "") + f"{ACTION_START}{action}{ACTION_END}\n"
                out.append({"role": "assistant", "content": text})
            elif turn["role"] == "tool":
                source = INTERPRETER if turn.get("name") == "python" else PLUGIN
                out.append({"role": f"environment name={source}", "content": turn["content"]})
            else:
                out.append({"role": turn["role"], "content": turn["content"]})
        return out

    def parse(self, text: str, tools: list[Tool]) -> Reply:
        thought = text.split(ACTION_START)[0].strip()
        plugin = re.search(
            re.escape(PLUGIN) + r"(.*?)(?:" + re.escape(ACTION_END) + "|$)", text, re.S
        )
        interpreter = re.search(
            re.escape(INTERPRETER) + r"(.*?)(?:" + re.escape(ACTION_END) + "|$)", text, re.S
        )
        if interpreter and (not plugin or interpreter.start() < plugin.start()):
            code = interpreter.group(1).strip()
            fenced = re.search(r"```(?:python|py)?\n(.*?)(?:```|$)", code, re.S)
            code = (fenced.group(1) if fenced else code).strip()
            why = _check_name("python", tools) or ("" if code else "the code is empty")
            if why:
                return Reply(text, thought=thought, error=f"Could not run the interpreter: {why}.")
            return Reply(text, thought=thought, calls=[ToolCall("python", {"code": code})])
        if plugin:
            body, why = _json_object(plugin.group(1))
            parameters = (body or {}).get("parameters", (body or {}).get("arguments", {}))
            if body is not None and not isinstance(parameters, dict):
                why = "'parameters' is not a JSON object"
            why = why or _check_name(str((body or {}).get("name", "")), tools)
            if why:
                return Reply(text, thought=thought, error=f"Could not use the plugin: {why}.")
            return Reply(text, thought=thought, calls=[ToolCall(body["name"], parameters)])
        return Reply(text, answer=text.strip())

    def grammar(self, tools: list[Tool]) -> tuple:
        plugins = tuple(
            (
                f'{PLUGIN}\n{{"name": "{t.name}", "parameters": ',
                (*json_object(t.parameters), Lit("}" + ACTION_END)),
            )
            for t in tools
            if t.name != "python"
        )
        code = (Free(markers=(("\n```" + ACTION_END, ()),), max_chars=4000),)
        interpreter = (
            ((f"{INTERPRETER}\n```python\n", code),)
            if any(t.name == "python" for t in tools)
            else ()
        )
        if not plugins + interpreter:
            return (Free(may_end=True),)
        return (Free(markers=((ACTION_START, (Branch(plugins + interpreter),)),), may_end=True),)


PROTOCOLS: dict[str, type] = {
    "react": ReAct,
    "function_calling": FunctionCalling,
    "internlm2": InternLM2,
}
