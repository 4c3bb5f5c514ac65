"""Constrained decoding: a character grammar that a local engine's tokens must follow.

A small model asked to call a tool often writes a tool name that does not exist or JSON that
does not parse. With a grammar, the local decode loop only lets through tokens that keep the
text a valid prefix of the grammar, so a finished action always parses: a known tool name and
JSON arguments with the tool's keys and value types.

A grammar is a tuple of segments matched one after another, one character at a time:

    Lit(text)                  exactly this text
    Free(markers, may_end)     any text until one marker appears; the marker's segments follow
    Branch(options)            exactly one of several literal texts, each with its own segments
    Either(alternatives)       the first alternative whose first segment takes the character
    JsonString(), JsonNumber(integer), Json object/array helpers built from a JSON schema

`Constraint(grammar)` is what `GenerationSettings.constraint` takes; the engine calls its
`processor(tokenizer, end_ids)` once per request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOP_CANDIDATES = 64  # best-scoring tokens tried each step before falling back to single chars
MAX_STRING = 4000  # characters in one JSON string (code for the interpreter fits)


# --- segments ----------------------------------------------------------------------------------
# Each segment has `start()` (its first sub-state), `step(sub, ch)` -> None (rejects ch),
# ("stay", sub) or ("next", segments to put first), and `can_end(sub)`: the segment may be left
# here without consuming anything (a number that could go on, a name that is a prefix of another).

Grammar = tuple


@dataclass(frozen=True)
class Lit:
    text: str

    def start(self) -> Any:
        return 0

    def step(self, i: int, ch: str):
        if self.text[i] != ch:
            return None
        return ("next", ()) if i + 1 == len(self.text) else ("stay", i + 1)

    def can_end(self, i: int) -> bool:
        return False


@dataclass(frozen=True)
class Free:
    """Any text (no newline when `one_line`) until one of `markers` has just been written; then
    the segments of that marker follow. `may_end`: the answer may stop inside this text.
    After `max_chars`, only a marker may go on."""

    markers: tuple[tuple[str, Grammar], ...] = ()
    may_end: bool = False
    one_line: bool = False
    max_chars: int = 100_000

    def start(self) -> Any:
        return ("", 0)

    def step(self, sub: tuple[str, int], ch: str):
        tail, count = sub
        tail = (tail + ch)[-self._longest() :]
        for marker, rest in self.markers:
            if tail.endswith(marker):
                return ("next", rest)
        writing_marker = any(_suffix_prefix(tail, m) for m, _ in self.markers)
        if (self.one_line and ch == "\n" or count >= self.max_chars) and not writing_marker:
            return None
        return ("stay", (tail, count + 1))

    def can_end(self, sub: Any) -> bool:
        return False

    def _longest(self) -> int:
        return max((len(m) for m, _ in self.markers), default=1)


def _suffix_prefix(tail: str, marker: str) -> bool:
    """Whether some non-empty end of `tail` begins `marker` (a marker is being written)."""
    return any(marker.startswith(tail[-n:]) for n in range(1, min(len(tail), len(marker)) + 1))


@dataclass(frozen=True)
class Branch:
    """One of several literal texts; `options` pairs each text with the segments that follow it
    (or with a function returning them, for grammars built as they go)."""

    options: tuple[tuple[str, Any], ...]

    def start(self) -> Any:
        return ""

    def step(self, typed: str, ch: str):
        typed += ch
        if not any(text.startswith(typed) for text, _ in self.options):
            return None
        longer = any(text.startswith(typed) and text != typed for text, _ in self.options)
        if longer:
            return ("stay", typed)
        return ("next", self._follow(typed))

    def can_end(self, typed: str) -> bool:
        return False

    def _follow(self, typed: str) -> Grammar:
        rest = dict(self.options)[typed]
        return rest() if callable(rest) else rest


@dataclass(frozen=True)
class Either:
    """Alternatives told apart by their first character (a JSON array's `]` or first item)."""

    alternatives: tuple[Grammar, ...]

    def start(self) -> Any:
        return None

    def step(self, sub: Any, ch: str):
        for alternative in self.alternatives:
            state = advance(initial(alternative), ch)
            if state is not None:
                return ("next", state)
        return None

    def can_end(self, sub: Any) -> bool:
        return False


@dataclass(frozen=True)
class JsonString:
    """A JSON string: quotes, escapes, no raw control characters."""

    def start(self) -> Any:
        return ("open", 0)

    def step(self, sub: tuple[str, int], ch: str):
        mode, n = sub
        if mode == "open":
            return ("stay", ("in", 0)) if ch == '"' else None
        if mode == "in":
            if ch == '"':
                return ("next", ())
            if ch == "\\":
                return ("stay", ("escape", n))
            if ord(ch) < 0x20 or n >= MAX_STRING:
                return None
            return ("stay", ("in", n + 1))
        if mode == "escape":
            if ch in '"\\/bfnrt':
                return ("stay", ("in", n + 1))
            return ("stay", ("hex0", n)) if ch == "u" else None
        digit = int(mode[3:])  # hex0 .. hex3
        if ch not in "0123456789abcdefABCDEF":
            return None
        return ("stay", ("in", n + 1) if digit == 3 else (f"hex{digit + 1}", n))

    def can_end(self, sub: Any) -> bool:
        return False


@dataclass(frozen=True)
class JsonNumber:
    """A JSON number (an integer when `integer`), at most 24 characters."""

    integer: bool = False

    def start(self) -> Any:
        return ("sign", "")

    def step(self, sub: tuple[str, str], ch: str):
        mode, text = sub
        text += ch
        if len(text) > 24:
            return None
        digit = ch.isdigit() and ch.isascii()
        moves = {
            "sign": {"-": "int0"} if not digit else {},
            "int0": {},
            "int": {},
            "frac0": {},
            "frac": {"e": "exp0", "E": "exp0"},
            "exp0": {"+": "exp1", "-": "exp1"},
            "exp1": {},
            "exp": {},
        }
        if not self.integer:
            moves["int"] = {".": "frac0", "e": "exp0", "E": "exp0"}
            moves["zero"] = {".": "frac0", "e": "exp0", "E": "exp0"}
        if digit:
            after = {"sign": "int", "int0": "int", "int": "int", "frac0": "frac", "frac": "frac"}
            after.update(exp0="exp", exp1="exp", exp="exp")
            if mode in ("sign", "int0") and ch == "0":
                return ("stay", ("zero", text))
            if mode in after:
                return ("stay", (after[mode], text))
            return None
        target = moves.get(mode, {}).get(ch)
        return ("stay", (target, text)) if target else None

    def can_end(self, sub: tuple[str, str]) -> bool:
        return sub[0] in ("int", "zero", "frac", "exp")


# --- JSON from a schema -------------------------------------------------------------------------


def json_value(schema: dict) -> Grammar:
    """Segments for one JSON value of `schema` (string, integer, number, boolean, enum, array
    of those, object with properties); anything else is written as a string."""
    if "enum" in schema:
        return (Branch(tuple((json.dumps(v, ensure_ascii=False), ()) for v in schema["enum"])),)
    kind = schema.get("type", "string")
    if kind == "integer":
        return (JsonNumber(integer=True),)
    if kind == "number":
        return (JsonNumber(),)
    if kind == "boolean":
        return (Branch((("true", ()), ("false", ()))),)
    if kind == "array":
        item = json_value(schema.get("items", {"type": "string"}))
        more = _array_more(item)
        return (Lit("["), Either(((Lit("]"),), (*item, more))))
    if kind == "object" and "properties" in schema:
        return json_object(schema)
    return (JsonString(),)


def _array_more(item: Grammar) -> Branch:
    return Branch(((", ", lambda: (*item, _array_more(item))), ("]", ())))


def json_object(schema: dict) -> Grammar:
    """An object with keys from schema["properties"] (each once, written `"key": value` with
    ", " between) that closes only once every key in schema["required"] is there."""
    properties = schema.get("properties", {})
    required = frozenset(schema.get("required", ()))
    return (Lit("{"), _object_keys(properties, required, frozenset()))


def _object_keys(properties: dict, required: frozenset, used: frozenset) -> Branch:
    options: list[tuple[str, Any]] = []
    for name, sub in properties.items():
        if name in used:
            continue
        key = ("" if not used else ", ") + json.dumps(name, ensure_ascii=False) + ": "
        later = used | {name}
        options.append(
            (key, functools.partial(_after_key, sub, properties, required, later)),
        )
    if required <= used:
        options.append(("}", ()))
    return Branch(tuple(options))


def _after_key(sub: dict, properties: dict, required: frozenset, used: frozenset) -> Grammar:
    return (*json_value(sub), _object_keys(properties, required, used))


# --- running a grammar -------------------------------------------------------------------------
# A state is a tuple of (segment, sub-state) pairs: the segment being matched first, then the
# segments still to come (their sub-states made when they are reached).

State = tuple


def initial(grammar: Grammar) -> State:
    return tuple((seg, seg.start() if i == 0 else None) for i, seg in enumerate(grammar))


def advance(state: State | None, text: str) -> State | None:
    """The state after `text`, or None when `text` leaves the grammar."""
    for ch in text:
        if state is None:
            return None
        state = _advance_char(state, ch)
    return state


def _advance_char(state: State, ch: str) -> State | None:
    while state:
        (segment, sub), rest = state[0], state[1:]
        if sub is None:
            sub = segment.start()
        moved = segment.step(sub, ch)
        if moved is not None:
            kind, value = moved
            if kind == "stay":
                return ((segment, value), *rest)
            if isinstance(value, tuple) and value and isinstance(value[0], tuple):
                return (*value, *rest)  # an Either already matched ch inside its alternative
            return (*((s, None) for s in value), *rest)
        if not segment.can_end(sub):
            return None
        state = rest
    return None


def finished(state: State) -> bool:
    """Nothing more may be written: only an end token fits."""
    return not state


def may_end(state: State) -> bool:
    """The answer may end here (the grammar is done, or the current text allows an end)."""
    for segment, sub in state:
        if isinstance(segment, Free) and segment.may_end:
            return True
        if not segment.can_end(sub if sub is not None else segment.start()):
            return False
    return True


# --- tokens ------------------------------------------------------------------------------------


_TABLES: dict[int, tuple[Any, tuple[list[str | None], list[int]]]] = {}


def _build_token_texts(tokenizer: Any) -> tuple[list[str | None], list[int]]:
    size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    if any(isinstance(p, str) and p.startswith("\u2581") for p in pieces[:5000]):
        # SentencePiece drops a word's leading space when it decodes one token alone:
        # decode it after an anchor token and keep what the token added.
        anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
        base = tokenizer.decode(anchor)
        texts = tokenizer.batch_decode([[*anchor, i] for i in range(size)])
        texts = [t[len(base) :] if t.startswith(base) else t for t in texts]
    else:
        texts = tokenizer.batch_decode([[i] for i in range(size)])
    table: list[str | None] = [None if i in special or not t else t for i, t in enumerate(texts)]
    singles = [i for i, t in enumerate(table) if t is not None and len(t) == 1]
    return table, singles


def token_texts(tokenizer: Any) -> tuple[list[str | None], list[int]]:
    """Each token id's text (None for special tokens) and the ids of one-character tokens;
    computed once per tokenizer (about half a second for a 49k vocabulary)."""
    cached = _TABLES.get(id(tokenizer))
    if cached is None or cached[0] is not tokenizer:
        cached = _TABLES[id(tokenizer)] = (tokenizer, _build_token_texts(tokenizer))
    return cached[1]


@dataclass
class Constraint:
    """`GenerationSettings(constraint=Constraint(grammar))`: the local engine keeps the answer
    inside `grammar`; `top` best-scoring tokens are tried at each step before single
    characters."""

    grammar: Grammar
    top: int = TOP_CANDIDATES

    def processor(self, tokenizer: Any, end_ids: list[int]) -> Callable:
        table, singles = token_texts(tokenizer)
        return GrammarProcessor(self.grammar, table, singles, list(end_ids), self.top)


class GrammarProcessor:
    """f(generated ids, logits) -> logits with every token outside the grammar at -inf."""

    def __init__(
        self,
        grammar: Grammar,
        table: list[str | None],
        singles: list[int],
        end_ids: list[int],
        top: int,
    ) -> None:
        self.state: State = initial(grammar)
        self.table, self.singles, self.end_ids, self.top = table, singles, end_ids, top
        self.seen = 0

    def allowed(self, token: int) -> bool:
        text = self.table[token] if 0 <= token < len(self.table) else None
        return text is not None and advance(self.state, text) is not None

    def __call__(self, ids: list[int], logits: Any) -> Any:
        import torch

        for token in ids[self.seen :]:
            moved = advance(self.state, self.table[token] or "")
            self.state = self.state if moved is None else moved
        self.seen = len(ids)
        ends = [i for i in self.end_ids if i < logits.shape[-1]]
        if finished(self.state):
            keep = ends
        else:
            candidates = logits.topk(min(self.top, logits.shape[-1])).indices.tolist()
            keep = [i for i in candidates if self.allowed(i)]
            if not keep:
                keep = [i for i in self.singles if self.allowed(i)]
            if not keep:  # rare: only some multi-character token fits
                keep = [i for i in range(min(len(self.table), logits.shape[-1])) if self.allowed(i)]
            if may_end(self.state) or not keep:
                keep += ends
        masked = torch.full_like(logits, float("-inf"))
        index = torch.tensor(keep, dtype=torch.long, device=logits.device)
        masked[index] = logits[index]
        return masked
