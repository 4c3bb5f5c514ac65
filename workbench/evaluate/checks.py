"""Reading answers out of generated text: answer extraction, exact and numeric match, and the
instruction-following checks (lowercase, word limits, JSON, bullet counts...).

Pure string functions, so every rule is tested on its own. The checks are a name -> function
table; a task file names them in each sample's `checks` list:

    {"question": "Describe Paris in under 20 words, all lowercase.",
     "checks": [{"type": "lowercase"}, {"type": "max_words", "value": 20}]}
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

# "Answer: 42", "the answer is 42", "答案：42", "答案是 42" — the last such marker wins.
ANSWER_MARKER = re.compile(
    r"(?:final answer|answer)\s*(?:is)?\s*[:：]?\s*|答案\s*(?:是|为)?\s*[:：]?\s*", re.IGNORECASE
)
NUMBER = re.compile(r"-?\d[\d,，]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


def after_marker(text: str) -> str | None:
    """The text after the last answer marker ("Answer:", "答案："), or None when there is none."""
    matches = list(ANSWER_MARKER.finditer(text))
    if not matches:
        return None
    return text[matches[-1].end() :].strip()


def parse_number(text: str) -> float | None:
    """A number written as digits ("1,250", "-3.5", "3/4"); None when it is not one."""
    text = text.replace(",", "").replace("，", "").strip()
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(output: str) -> float | None:
    """The model's numeric answer: the first number after the last answer marker, else the last
    number anywhere in the output."""
    tail = after_marker(output)
    if tail:
        found = NUMBER.search(tail)
        if found:
            return parse_number(found.group())
    numbers = NUMBER.findall(output)
    return parse_number(numbers[-1]) if numbers else None


def numeric_match(output: str, answers: list[str]) -> tuple[bool, str]:
    """(whether the extracted number equals a gold answer, the extracted text)."""
    value = extract_number(output)
    if value is None:
        return False, ""
    for answer in answers:
        gold = parse_number(str(answer))
        if gold is not None and abs(value - gold) <= 1e-6 * max(1.0, abs(gold)):
            return True, _format_number(value)
    return False, _format_number(value)


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def normalize(text: str) -> str:
    """Case-folded, punctuation and spaces removed, full-width forms folded (for exact match)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def extract_text_answer(output: str) -> str:
    """The answer part of a free-text output: after the last answer marker, else the first
    non-empty line."""
    tail = after_marker(output)
    if tail:
        return tail.splitlines()[0].strip() if tail.splitlines() else tail
    for line in output.splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(output: str, answers: list[str]) -> tuple[bool, str]:
    """(whether the extracted answer equals a gold answer after normalising, the extraction)."""
    extracted = extract_text_answer(output)
    got = normalize(extracted)
    return bool(got) and any(got == normalize(str(a)) for a in answers), extracted


def contains_match(output: str, answers: list[str]) -> tuple[bool, str]:
    """(whether a gold answer appears anywhere in the output after normalising, the output)."""
    got = normalize(output)
    return any(normalize(str(a)) and normalize(str(a)) in got for a in answers), output.strip()


MATCHERS: dict[str, Callable[[str, list[str]], tuple[bool, str]]] = {
    "numeric": numeric_match,
    "exact": exact_match,
    "contains": contains_match,
}


# --- instruction-following checks ------------------------------------------------------------


def words(text: str) -> list[str]:
    """Words of mixed text: Latin words and numbers, and each Chinese character as one word."""
    return re.findall(r"[A-Za-z0-9'’-]+|[\u3400-\u9fff]", text)


def _strip_fence(text: str) -> str:
    text = text.strip()
    fenced = re.fullmatch(r"```[a-zA-Z]*\s*\n?(.*?)\n?```", text, re.DOTALL)
    return fenced.group(1) if fenced else text


def _bullets(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r"\s*(?:[-*•]|\d+[.)])\s+", line))


def _is_json(text: str) -> bool:
    try:
        json.loads(_strip_fence(text))
    except ValueError:
        return False
    return True


def _language(text: str, value: str) -> bool:
    cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
    if cjk + latin == 0:
        return False
    share = cjk / (cjk + latin)
    return share >= 0.5 if value == "zh" else share <= 0.1


def _terms(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


CHECKS: dict[str, Callable[[str, Any], bool]] = {
    "lowercase": lambda out, _: bool(LATIN.search(out)) and out == out.lower(),
    "uppercase": lambda out, _: bool(LATIN.search(out)) and out == out.upper(),
    "max_words": lambda out, n: 0 < len(words(out)) <= int(n),
    "min_words": lambda out, n: len(words(out)) >= int(n),
    "max_chars": lambda out, n: 0 < len(out.strip()) <= int(n),
    "include": lambda out, v: all(t.casefold() in out.casefold() for t in _terms(v)),
    "exclude": lambda out, v: not any(t.casefold() in out.casefold() for t in _terms(v)),
    "starts_with": lambda out, v: out.strip().casefold().startswith(str(v).casefold()),
    "ends_with": lambda out, v: out.strip().casefold().endswith(str(v).casefold()),
    "bullets": lambda out, n: _bullets(out) == int(n),
    "lines": lambda out, n: sum(1 for line in out.splitlines() if line.strip()) == int(n),
    "json": lambda out, _: _is_json(out),
    "no_commas": lambda out, _: "," not in out and "，" not in out,
    "language": _language,
}
CHECKS_WITH_VALUE = {
    "max_words",
    "min_words",
    "max_chars",
    "include",
    "exclude",
    "starts_with",
    "ends_with",
    "bullets",
    "lines",
    "language",
}


def run_checks(output: str, checks: list[dict]) -> list[bool]:
    """Whether `output` passes each check (a dict with `type` and, for some, `value`)."""
    return [bool(CHECKS[c["type"]](output, c.get("value"))) for c in checks]
