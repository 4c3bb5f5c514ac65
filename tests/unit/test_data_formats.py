"""Formats: every shape is detected, converts into the canonical form, and round-trips."""

from __future__ import annotations

import pytest

from workbench.data.files import Record
from workbench.data.formats import (
    FORMATS,
    RowProblem,
    check_sample,
    row_from_sample,
    sample_from_row,
)
from workbench.data.loading import detect_format

CONVERSATION = [
    {"role": "system", "content": "You are Puyu."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am Puyu."},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "你好！"},
]

ROWS = {
    "alpaca": {
        "system": "You are Puyu.",
        "instruction": "你好",
        "input": "",
        "output": "你好！",
        "history": [["Who are you?", "I am Puyu."]],
    },
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "You are Puyu."},
            {"from": "human", "value": "Who are you?"},
            {"from": "gpt", "value": "I am Puyu."},
            {"from": "human", "value": "你好"},
            {"from": "gpt", "value": "你好！"},
        ]
    },
    "openai": {"messages": CONVERSATION},
    "xtuner": {
        "conversation": [
            {"system": "You are Puyu.", "input": "Who are you?", "output": "I am Puyu."},
            {"input": "你好", "output": "你好！"},
        ]
    },
}


@pytest.mark.parametrize("fmt", list(ROWS))
def test_every_chat_format_gives_the_same_canonical_conversation(fmt):
    assert sample_from_row(ROWS[fmt], fmt) == {"messages": CONVERSATION}


@pytest.mark.parametrize("source", list(ROWS))
@pytest.mark.parametrize("target", list(ROWS))
def test_conversions_round_trip_without_loss(source, target):
    sample = sample_from_row(ROWS[source], source)
    converted = row_from_sample(sample, target)
    assert converted == ROWS[target]
    assert sample_from_row(converted, target) == sample


def test_raw_text_round_trips_and_refuses_chat_formats():
    sample = sample_from_row({"text": "A page of a book."}, "text")
    assert row_from_sample(sample, "text") == {"text": "A page of a book."}
    with pytest.raises(RowProblem, match="raw text"):
        row_from_sample(sample, "alpaca")
    with pytest.raises(RowProblem, match="conversation"):
        row_from_sample({"messages": CONVERSATION}, "text")


def test_alpaca_input_is_appended_to_the_instruction_and_aliases_are_read():
    sample = sample_from_row(
        {"instruction": "Translate:", "input": "你好", "output": "Hello"}, "alpaca"
    )
    assert sample["messages"][0] == {"role": "user", "content": "Translate:\n你好"}
    aliased = sample_from_row({"question": "2+2?", "answer": "4"}, "alpaca")
    assert [m["content"] for m in aliased["messages"]] == ["2+2?", "4"]


def test_tool_calls_keep_their_structure_and_are_refused_by_formats_that_cannot_hold_them():
    call = [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]
    row = {
        "messages": [
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": None, "tool_calls": call},
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
            {"role": "assistant", "content": "It is 2."},
        ]
    }
    sample = sample_from_row(row, "openai")
    assert sample["messages"][1]["tool_calls"] == call
    assert sample["messages"][2]["tool_call_id"] == "c1"
    assert row_from_sample(sample, "openai")["messages"][1]["tool_calls"] == call
    for target in ("alpaca", "sharegpt", "xtuner"):
        with pytest.raises(RowProblem, match="tool"):
            row_from_sample(sample, target)


def test_openai_text_parts_are_joined_and_images_refused():
    row = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": "Hello"},
        ]
    }
    assert sample_from_row(row, "openai")["messages"][0]["content"] == "Hi there"
    row["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "x"}})
    with pytest.raises(RowProblem) as problem:
        sample_from_row(row, "openai")
    assert problem.value.field == "messages[0].content[2]"


@pytest.mark.parametrize(
    ("fmt", "row", "field", "message"),
    [
        ("alpaca", {"instruction": "Hi"}, "output", "missing"),
        ("alpaca", {"instruction": "Hi", "output": "  "}, "output", "empty"),
        ("alpaca", {"instruction": 3, "output": "x"}, "instruction", "must be text"),
        ("alpaca", {"instruction": "a", "output": "b", "history": [["q"]]}, "history[0]", "pair"),
        ("sharegpt", {"conversations": []}, "conversations", "empty list"),
        (
            "sharegpt",
            {"conversations": [{"from": "bot", "value": "x"}]},
            "conversations[0].from",
            "bot",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
            "conversations[1]",
            "where a assistant message should come",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]},
            "conversations[0]",
            "where a user message should come",
        ),
        (
            "openai",
            {"messages": [{"role": "user", "content": "a"}]},
            "messages[0]",
            "no assistant answer",
        ),
        (
            "openai",
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            },
            "messages[2]",
            "ends without an assistant answer",
        ),
        (
            "openai",
            {"messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}]},
            "messages[1].role",
            "wizard",
        ),
        (
            "openai",
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "system", "content": "c"},
                    {"role": "user", "content": "d"},
                    {"role": "assistant", "content": "e"},
                ]
            },
            "messages[2]",
            "system message after",
        ),
        (
            "openai",
            {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]},
            "messages[1]",
            "follows no tool call",
        ),
        ("xtuner", {"conversation": [{"input": "a"}]}, "conversation[0].output", "missing"),
        (
            "xtuner",
            {
                "conversation": [
                    {"input": "a", "output": "b"},
                    {"system": "s", "input": "c", "output": "d"},
                ]
            },
            "conversation[1].system",
            "first turn",
        ),
        ("text", {"text": ""}, "text", "empty"),
    ],
)
def test_bad_rows_name_the_field_and_the_reason(fmt, row, field, message):
    with pytest.raises(RowProblem) as problem:
        sample_from_row(row, fmt)
    assert problem.value.field == field
    assert message in problem.value.message


def test_enormous_rows_are_refused_with_their_size():
    with pytest.raises(RowProblem, match="over the 100 limit"):
        check_sample({"text": "x" * 101}, ["text"], max_chars=100)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_detection_finds_each_format_with_full_confidence(fmt):
    row = ROWS.get(fmt, {"text": "plain"})
    detection = detect_format([Record(i, row) for i in range(1, 11)])
    assert detection.format == fmt
    assert detection.confidence == 1.0
    assert detection.checked == 10


def test_detection_is_less_sure_of_a_mixed_file_and_says_why():
    records = [Record(i, ROWS["alpaca"]) for i in range(8)]
    records += [Record(i, ROWS["sharegpt"]) for i in range(8, 10)]
    detection = detect_format(records)
    assert detection.format == "alpaca"
    assert detection.confidence < 0.8
    assert "80%" in detection.reason and "ShareGPT" in detection.reason


def test_detection_of_unknown_columns_names_them():
    detection = detect_format([Record(1, {"foo": 1, "bar": 2})])
    assert detection.format == ""
    assert "bar" in detection.reason and "foo" in detection.reason
