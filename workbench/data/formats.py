"""The shapes datasets come in, the canonical form training uses, and conversion between them.

Canonical sample (what a dataset artifact stores, one JSON object per line):

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}, ...]}
    {"text": "..."}                      # raw text, for continued pre-training

Assistant messages may carry OpenAI-style `tool_calls`, tool messages a `tool_call_id`.
Each format is a row in FORMATS: a shape test used by detection, a function into the canonical
form and one back out. Converting into a format that cannot hold a sample (tool calls into
Alpaca, a conversation into raw text) is refused for that row, never done with a silent loss.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CHAT_ROLES = ("system", "user", "assistant", "tool")
PLAIN_ROLES = frozenset(("system", "user", "assistant"))
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_call": "assistant",
}
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}
OPENAI_ROLE_ALIASES = {"developer": "system", "function": "tool", "human": "user"}
INSTRUCTION_KEYS = ("instruction", "prompt", "question", "query")
OUTPUT_KEYS = ("output", "response", "answer", "completion")
DEFAULT_MAX_ROW_CHARS = 200_000


class RowProblem(Exception):
    """What is wrong with one row: the field (in the user's terms) and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DataFormat:
    """One dataset shape.

    Attributes:
        name: short name used by the CLI and recipes.
        title: what the UI shows.
        kind: "chat" (conversations) or "text" (raw text).
        example: one row in this format, shown to users.
        matches: True when a row has this format's shape (used to detect the format).
        to_sample: row -> (canonical sample, the user's field name for each message).
        from_sample: canonical sample -> row in this format.
    """

    name: str
    title: str
    kind: str
    example: dict
    matches: Callable[[dict], bool]
    to_sample: Callable[[dict], tuple[dict, list[str]]]
    from_sample: Callable[[dict], dict]


# --- helpers ---------------------------------------------------------------------------------


def _text(row: dict, key: str, where: str = "", *, required: bool = True) -> str:
    value = row.get(key)
    name = where or key
    if value is None:
        if required:
            raise RowProblem(name, "is missing" if key not in row else "is null")
        return ""
    if not isinstance(value, str):
        raise RowProblem(name, f"must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise RowProblem(name, "is empty")
    return value


def _first_key(row: dict, keys: tuple[str, ...]) -> str:
    return next((k for k in keys if k in row), keys[0])


def _list(row: dict, key: str) -> list:
    value = row.get(key)
    if value is None:
        raise RowProblem(key, "is missing")
    if not isinstance(value, list):
        raise RowProblem(key, f"must be a list, got {type(value).__name__}")
    if not value:
        raise RowProblem(key, "is an empty list")
    return value


def _pairs(messages: list[dict], fmt: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a plain conversation into (system, [(user, assistant), ...]) or refuse."""
    system = ""
    rest = messages
    if rest and rest[0]["role"] == "system":
        system, rest = rest[0]["content"], rest[1:]
    pairs = []
    for i in range(0, len(rest), 2):
        turn = rest[i : i + 2]
        roles = [m["role"] for m in turn]
        if roles != ["user", "assistant"] or any(m.get("tool_calls") for m in turn):
            raise RowProblem(
                "messages",
                f"cannot be written as {fmt}: it holds only user/assistant pairs "
                "(this sample has tool calls or another role order)",
            )
        pairs.append((turn[0]["content"], turn[1]["content"]))
    return system, pairs


def _sample_messages(sample: dict) -> list[dict]:
    if "messages" not in sample:
        raise RowProblem("text", "is raw text; only conversations convert to chat formats")
    return sample["messages"]


# --- Alpaca ----------------------------------------------------------------------------------


def _alpaca_matches(row: dict) -> bool:
    return any(k in row for k in INSTRUCTION_KEYS) and any(k in row for k in OUTPUT_KEYS)


def _alpaca_to(row: dict) -> tuple[dict, list[str]]:
    instruction_key = _first_key(row, INSTRUCTION_KEYS)
    output_key = _first_key(row, OUTPUT_KEYS)
    instruction = _text(row, instruction_key)
    extra = _text(row, "input", required=False)
    output = _text(row, output_key)
    messages, fields = [], []
    system = _text(row, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
        fields.append("system")
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowProblem("history", f"must be a list of [user, assistant] pairs, got {history!r}")
    for i, pair in enumerate(history):
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        if not ok or not all(isinstance(p, str) and p.strip() for p in pair):
            raise RowProblem(f"history[{i}]", "must be a [user, assistant] pair of non-empty texts")
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
        fields += [f"history[{i}][0]", f"history[{i}][1]"]
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    fields += [instruction_key, output_key]
    return {"messages": messages}, fields


def _alpaca_from(sample: dict) -> dict:
    system, pairs = _pairs(_sample_messages(sample), "Alpaca")
    row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system:
        row["system"] = system
    if len(pairs) > 1:
        row["history"] = [list(p) for p in pairs[:-1]]
    return row


# --- ShareGPT --------------------------------------------------------------------------------


def _sharegpt_matches(row: dict) -> bool:
    turns = row.get("conversations")
    return isinstance(turns, list) and (not turns or isinstance(turns[0], dict))


def _sharegpt_to(row: dict) -> tuple[dict, list[str]]:
    messages, fields = [], []
    system = _text(row, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
        fields.append("system")
    for i, turn in enumerate(_list(row, "conversations")):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem(where, "must be an object with 'from' and 'value'")
        speaker = turn.get("from", turn.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise RowProblem(
                f"{where}.from",
                f"is {speaker!r}; use human, gpt, system, observation or function_call",
            )
        key = "value" if "value" in turn or "content" not in turn else "content"
        messages.append({"role": role, "content": _text(turn, key, f"{where}.{key}")})
        fields.append(where)
    return {"messages": messages}, fields


def _sharegpt_from(sample: dict) -> dict:
    turns = []
    for m in _sample_messages(sample):
        if m.get("tool_calls"):
            raise RowProblem("messages", "has tool calls, which ShareGPT rows do not hold")
        turns.append({"from": SHAREGPT_FROM[m["role"]], "value": m["content"]})
    return {"conversations": turns}


# --- OpenAI messages -------------------------------------------------------------------------


def _openai_matches(row: dict) -> bool:
    messages = row.get("messages")
    return isinstance(messages, list) and (not messages or isinstance(messages[0], dict))


def _openai_to(row: dict) -> tuple[dict, list[str]]:
    items = _list(row, "messages")
    fields = [f"messages[{i}]" for i in range(len(items))]
    messages = []
    for i, item in enumerate(items):
        # The common case, a plain {role, content} text message, takes the short path.
        if type(item) is dict and len(item) == 2 and type(item.get("content")) is str:
            role = item.get("role")
            if role in PLAIN_ROLES:
                messages.append({"role": role, "content": item["content"]})
                continue
        where = fields[i]
        if not isinstance(item, dict):
            raise RowProblem(where, "must be an object with 'role' and 'content'")
        raw_role = str(item.get("role", "")).lower()
        role = OPENAI_ROLE_ALIASES.get(raw_role, raw_role)
        if role not in CHAT_ROLES:
            raise RowProblem(
                f"{where}.role", f"is {item.get('role')!r}; use {', '.join(CHAT_ROLES)}"
            )
        message = {"role": role, "content": _content(item, where)}
        if role == "assistant" and item.get("tool_calls"):
            message["tool_calls"] = item["tool_calls"]
        if role == "tool" and item.get("tool_call_id"):
            message["tool_call_id"] = item["tool_call_id"]
        messages.append(message)
    return {"messages": messages}, fields


def _content(item: dict, where: str) -> str:
    content = item.get("content")
    if isinstance(content, list):  # OpenAI content parts
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RowProblem(f"{where}.content[{j}]", f"is a {kind!r} part; only text is used")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    if content is None:
        if item.get("tool_calls"):
            return ""
        raise RowProblem(f"{where}.content", "is missing")
    if not isinstance(content, str):
        raise RowProblem(f"{where}.content", f"must be text, got {type(content).__name__}")
    return content


def _openai_from(sample: dict) -> dict:
    return {"messages": [dict(m) for m in _sample_messages(sample)]}


# --- XTuner ----------------------------------------------------------------------------------


def _xtuner_matches(row: dict) -> bool:
    turns = row.get("conversation")
    return isinstance(turns, list) and (not turns or isinstance(turns[0], dict))


def _xtuner_to(row: dict) -> tuple[dict, list[str]]:
    messages, fields = [], []
    for i, turn in enumerate(_list(row, "conversation")):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem(where, "must be an object with 'input' and 'output'")
        system = _text(turn, "system", f"{where}.system", required=False)
        if system.strip():
            if i:
                raise RowProblem(f"{where}.system", "only the first turn may set a system prompt")
            messages.append({"role": "system", "content": system})
            fields.append(f"{where}.system")
        messages.append({"role": "user", "content": _text(turn, "input", f"{where}.input")})
        messages.append({"role": "assistant", "content": _text(turn, "output", f"{where}.output")})
        fields += [f"{where}.input", f"{where}.output"]
    return {"messages": messages}, fields


def _xtuner_from(sample: dict) -> dict:
    system, pairs = _pairs(_sample_messages(sample), "XTuner")
    turns = [{"input": q, "output": a} for q, a in pairs]
    if system:
        turns[0] = {"system": system, **turns[0]}
    return {"conversation": turns}


# --- raw text --------------------------------------------------------------------------------


def _text_matches(row: dict) -> bool:
    return isinstance(row.get("text"), str)


def _text_to(row: dict) -> tuple[dict, list[str]]:
    return {"text": _text(row, "text")}, ["text"]


def _text_from(sample: dict) -> dict:
    if "text" not in sample:
        raise RowProblem("messages", "is a conversation; raw text holds only plain documents")
    return {"text": sample["text"]}


FORMATS: dict[str, DataFormat] = {
    f.name: f
    for f in (
        DataFormat(
            "openai",
            "OpenAI messages",
            "chat",
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                ]
            },
            _openai_matches,
            _openai_to,
            _openai_from,
        ),
        DataFormat(
            "sharegpt",
            "ShareGPT",
            "chat",
            {
                "conversations": [
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello!"},
                ]
            },
            _sharegpt_matches,
            _sharegpt_to,
            _sharegpt_from,
        ),
        DataFormat(
            "xtuner",
            "XTuner conversation",
            "chat",
            {"conversation": [{"system": "You are helpful.", "input": "Hi", "output": "Hello!"}]},
            _xtuner_matches,
            _xtuner_to,
            _xtuner_from,
        ),
        DataFormat(
            "alpaca",
            "Alpaca",
            "chat",
            {"instruction": "Say hello.", "input": "", "output": "Hello!"},
            _alpaca_matches,
            _alpaca_to,
            _alpaca_from,
        ),
        DataFormat(
            "text",
            "Raw text (continued pre-training)",
            "text",
            {"text": "A paragraph of a book or article."},
            _text_matches,
            _text_to,
            _text_from,
        ),
    )
}


# --- checks on the canonical form ------------------------------------------------------------


def check_sample(sample: dict, fields: list[str], max_chars: int = DEFAULT_MAX_ROW_CHARS) -> None:
    """Raise RowProblem (naming the user's field) unless `sample` is a trainable sample.

    A conversation: an optional system message first, then user and assistant taking turns
    (tool results only after an assistant's tool call), ending with the assistant; every message
    has text. Raw text: non-empty. Either: at most `max_chars` characters.
    """
    size = sample_chars(sample)
    if size > max_chars:
        raise RowProblem(
            "",
            f"is {size:,} characters long, over the {max_chars:,} limit; split it into smaller "
            "samples, or raise the limit (max_row_chars)",
        )
    if "text" in sample:
        return
    messages = sample["messages"]
    expected = ("user",)
    for i, message in enumerate(messages):
        role, where = message["role"], fields[i] if i < len(fields) else f"messages[{i}]"
        if role == "system":
            if i:
                raise RowProblem(where, "is a system message after the conversation started")
            continue
        if not message["content"].strip() and not message.get("tool_calls"):
            raise RowProblem(where, f"has an empty {role} message")
        if role not in expected:
            if role == "tool":
                raise RowProblem(where, "is a tool result that follows no tool call")
            raise RowProblem(
                where,
                f"is a {role} message where a {' or '.join(expected)} message should come "
                "(after an optional system message, user and assistant take turns)",
            )
        if role == "user":
            expected = ("assistant",)
        elif role == "assistant":
            expected = ("tool",) if message.get("tool_calls") else ("user",)
        else:
            expected = ("tool", "assistant")
    if not any(m["role"] == "assistant" for m in messages):
        raise RowProblem(fields[-1] if fields else "messages", "has no assistant answer to learn")
    if messages[-1]["role"] != "assistant" or messages[-1].get("tool_calls"):
        raise RowProblem(
            fields[-1] if fields else "messages",
            "ends without an assistant answer: the last message must be the assistant's",
        )


def sample_chars(sample: dict) -> int:
    if "text" in sample:
        return len(sample["text"])
    size = 0
    for m in sample["messages"]:
        size += len(m["content"])
        if "tool_calls" in m:
            size += len(json.dumps(m["tool_calls"]))
    return size


def sample_from_row(row: dict, fmt: str, max_chars: int = DEFAULT_MAX_ROW_CHARS) -> dict:
    """Convert one row of format `fmt` into a checked canonical sample (raises RowProblem)."""
    sample, fields = FORMATS[fmt].to_sample(row)
    check_sample(sample, fields, max_chars)
    return sample


def row_from_sample(sample: dict, fmt: str) -> dict:
    """Write a canonical sample as a row of format `fmt` (raises RowProblem if it cannot)."""
    return FORMATS[fmt].from_sample(sample)


def describe_problem(problem: RowProblem) -> str:
    return f"{problem.field}: {problem.message}" if problem.field else problem.message


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
