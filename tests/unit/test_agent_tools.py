"""The agent's tools as a model meets them: right answers, and failures it can read."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import pytest

from workbench.agent.search import DocumentIndex, words
from workbench.agent.tools import (
    calculate,
    convert_units,
    date_time,
    make_tools,
    tool_from_function,
)
from workbench.errors import InvalidInput


@pytest.mark.parametrize(
    "expression, value",
    [
        ("4821 * 379", "1827159"),
        ("2^10", "1024"),
        ("sqrt(55225)", "235"),
        ("(98765 - 45678) + 1,234", "54321"),
        ("10 / 4", "2.5"),
        ("372 × 58", "21576"),
        ("round(pi, 3)", "3.142"),
    ],
)
def test_the_calculator_computes(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "open('/etc/passwd').read()",
        "(1).__class__.__bases__",
        "x + 1",
        "9 ** 9 ** 9",
        "factorial(100000)",
        "lambda: 1",
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression):
    (calculator,) = make_tools(["calculator"])
    observation = calculator.run({"expression": expression})
    assert observation.error and observation.text.startswith("Error:")


def test_a_tool_from_a_function_gets_its_schema_from_hints_and_docstring():
    def book_room(room: str, hours: int, projector: bool = False, kind: Literal["a", "b"] = "a"):
        """Book a meeting room.

        Args:
            room: the room number, e.g. 305.
            hours: how long, in hours.
            projector: whether a projector is needed.
            kind: the booking kind.
        """
        return f"booked {room} for {hours} h" + (" with projector" if projector else "")

    tool = tool_from_function(book_room)
    assert tool.description == "Book a meeting room."
    assert tool.parameters["required"] == ["room", "hours"]
    assert tool.parameters["properties"]["hours"] == {
        "type": "integer",
        "description": "how long, in hours.",
    }
    assert tool.parameters["properties"]["kind"]["enum"] == ["a", "b"]
    assert tool.schema()["function"]["name"] == "book_room"
    assert tool.run({"room": "305", "hours": "2"}).text == "booked 305 for 2 h"
    missing = tool.run({"room": "305"})
    assert missing.error and "hours" in missing.text
    wrong = tool.run({"room": "305", "hours": "two"})
    assert wrong.error and "integer" in wrong.text
    unknown = tool.run({"room": "305", "hours": 1, "colour": "red"})
    assert unknown.error and "colour" in unknown.text


def test_a_function_without_docstring_or_hints_is_refused_with_a_fix():
    def undocumented(x: int) -> int:
        return x

    def untyped(x):
        """Something."""
        return x

    def nested(x: dict):
        """Something."""
        return x

    for function, phrase in ((undocumented, "docstring"), (untyped, "type hint"), (nested, "type")):
        with pytest.raises(InvalidInput) as caught:
            tool_from_function(function)
        assert phrase in caught.value.what and caught.value.fix


def test_units_and_dates():
    assert convert_units(5, "km", "mile") == "5 km = 3.10686 mile"
    assert convert_units(100, "°C", "fahrenheit") == "100 °C = 212 fahrenheit"
    assert convert_units(2, "斤", "kg") == "2 斤 = 1 kg"
    with pytest.raises(InvalidInput, match="Cannot convert"):
        convert_units(1, "kg", "km")
    assert date_time("days_between", "2024-01-15", other_date="2024-03-01") == "46"
    assert date_time("add_days", "2024-02-28", days=2) == "2024-03-01 (Friday)"
    assert date_time("weekday", "2025-03-14") == "2025-03-14 is a Friday"
    now = date_time("now", timezone="Asia/Shanghai")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Asia/Shanghai \(\w+day\)", now)
    shanghai = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    assert now[:10] in (f"{shanghai:%Y-%m-%d}", f"{shanghai - dt.timedelta(minutes=1):%Y-%m-%d}")
    (tool,) = make_tools(["datetime"])
    bad = tool.run({"operation": "weekday", "date": "14/03/2025"})
    assert bad.error and "YYYY-MM-DD" in bad.text


def test_bm25_finds_the_passage_that_answers():
    index = DocumentIndex.from_folder()
    score, best = index.search("GPU quota hours per week student")[0]
    assert best.source == "lab_handbook.md" and "12 GPU-hours" in best.text
    _, best = index.search("打印机 房间")[0]
    assert "305" in best.text
    assert index.search("zebra xylophone") == []
    assert words("Heron 2.1 有 32,768") == ["heron", "2.1", "有", "32", "768"]


def test_the_docs_tool_searches_uploaded_documents():
    index = DocumentIndex({"notes.md": "The secret launch code word is PELICAN.\n\nOther text."})
    (tool,) = make_tools(["docs"], index=index)
    assert "PELICAN" in tool.run({"query": "launch code word"}).text
    assert tool.run({"query": "nothing matches"}).text == "No passage matches those words."


def test_unknown_tool_names_are_bad_input():
    with pytest.raises(InvalidInput) as caught:
        make_tools(["calculator", "browser"])
    assert "browser" in caught.value.what and "calculator" in caught.value.fix
