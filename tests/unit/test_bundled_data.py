"""Bundled datasets: self-cognition samples say the right name and author, and the bilingual
instruction file is well-formed, bilingual and free of duplicates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.data.self_cognition import (
    SELF_COGNITION_FILE,
    generate_self_cognition,
    load_templates,
)
from workbench.errors import InvalidInput

INSTRUCTIONS_FILE = SELF_COGNITION_FILE.parent / "instructions_bilingual.jsonl"
CJK = re.compile(r"[\u4e00-\u9fff]")
NAME, AUTHOR = "Xiaoshu", "the InternLM camp"


def _pairs(samples: list[dict]) -> list[tuple[str, str]]:
    pairs = []
    for sample in samples:
        user, assistant = sample["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        pairs.append((user["content"], assistant["content"]))
    return pairs


def _questions(intent: str) -> set[str]:
    return {q for lang in load_templates().values() for q in lang[intent]["questions"]}


def test_default_gives_over_100_distinct_pairs_in_both_languages():
    pairs = _pairs(generate_self_cognition(NAME, AUTHOR))
    assert len(set(pairs)) == len(pairs) >= 100
    chinese = [q for q, _ in pairs if CJK.search(q)]
    assert len(chinese) >= 40 and len(pairs) - len(chinese) >= 40
    templates = load_templates()
    for lang in ("en", "zh"):
        every_question = {q for group in templates[lang].values() for q in group["questions"]}
        assert every_question <= {q for q, _ in pairs}, f"a {lang} question was never asked"


def test_answers_name_the_model_and_creator_answers_name_the_author():
    pairs = _pairs(generate_self_cognition(NAME, AUTHOR, count=500))
    assert all(NAME in answer for _, answer in pairs)
    assert not any("{" in q + a for q, a in pairs)
    for intent in ("creator", "other_model"):
        questions = _questions(intent)
        asked = [(q, a) for q, a in pairs if q in questions]
        assert asked and all(AUTHOR in a for _, a in asked), intent
    other_model = _questions("other_model")
    for question, answer in pairs:
        if question in other_model:
            assert answer.startswith(("No", "Nope", "不是")), (question, answer)


def test_chinese_samples_answer_in_chinese():
    pairs = _pairs(generate_self_cognition(NAME, AUTHOR, languages=("zh",)))
    assert len(pairs) >= 50
    for question, answer in pairs:
        assert CJK.search(question) and CJK.search(answer) and NAME in answer


def test_same_seed_same_samples_other_seed_other_order():
    first = generate_self_cognition(NAME, AUTHOR, seed=3)
    assert generate_self_cognition(NAME, AUTHOR, seed=3) == first
    other = generate_self_cognition(NAME, AUTHOR, seed=4)
    assert other != first
    assert {q for q, _ in _pairs(other)} == {q for q, _ in _pairs(first)}


@pytest.mark.parametrize("count", [1, 7, 120, 345, 1000])
def test_count_gives_exactly_that_many_without_repeats_while_possible(count):
    pairs = _pairs(generate_self_cognition(NAME, AUTHOR, languages=("en",), count=count))
    assert len(pairs) == count
    assert len(set(pairs)) == min(count, 345)  # 345 English question/answer pairs in all


def test_question_naming_the_model_itself_is_left_out():
    questions = {q for q, _ in _pairs(generate_self_cognition("InternLM", AUTHOR, count=1000))}
    assert "Are you InternLM?" not in questions
    assert "Are you ChatGPT?" in questions


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "Bot {x}"}, "name"),
        ({"author": ""}, "author"),
        ({"author": "line one\nline two"}, "author"),
        ({"languages": ("en", "fr")}, "languages"),
        ({"languages": ()}, "languages"),
        ({"count": 0}, "count"),
    ],
)
def test_bad_arguments_raise_invalid_input_naming_the_field(kwargs, field):
    args = {"name": NAME, "author": AUTHOR, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        generate_self_cognition(args.pop("name"), args.pop("author"), **args)
    assert caught.value.where == field
    assert field in str(caught.value)
    if field == "languages":
        assert "en" in caught.value.fix and "zh" in caught.value.fix


def test_name_and_author_are_stripped():
    padded = generate_self_cognition(f"  {NAME} ", f"{AUTHOR}  ")
    assert padded == generate_self_cognition(NAME, AUTHOR)


def _instruction_rows() -> list[dict]:
    lines = Path(INSTRUCTIONS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_instruction_file_is_bilingual_alpaca_without_duplicates():
    rows = _instruction_rows()
    assert len(rows) >= 220
    chinese = [row for row in rows if CJK.search(row["instruction"])]
    assert len(chinese) >= 110 and len(rows) - len(chinese) >= 110
    for row in rows:
        assert set(row) <= {"instruction", "input", "output", "system", "history"}, row
        assert row["instruction"].strip() and row["output"].strip(), row
        assert isinstance(row.get("input", ""), str)
    instructions = [row["instruction"] for row in rows]
    assert len(set(instructions)) == len(instructions)


def test_instruction_history_is_user_assistant_pairs():
    with_history = [row for row in _instruction_rows() if "history" in row]
    assert len(with_history) >= 8
    for row in with_history:
        assert row["history"], row["instruction"]
        for turn in row["history"]:
            assert isinstance(turn, list) and len(turn) == 2, turn
            assert all(isinstance(text, str) and text.strip() for text in turn), turn
