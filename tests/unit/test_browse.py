"""The browse table, its filters and pages, transcripts, exports and the doctor's token mask."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.data.browse import (
    browse_table,
    convert_samples,
    errors_frame,
    filter_rows,
    find_row,
    import_command,
    load_cached,
    load_tokenizer,
    mask_html,
    page_count,
    page_of,
    rejects_bytes,
    rows_bytes,
    transcript,
)
from workbench.data.template import TokenizedSample, render_sample
from workbench.errors import NotFound, WorkbenchError
from workbench.recipes import ImportDataRecipe

ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Say hello", "input": "", "output": "Hello!"},
    "{not json",
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {
        "instruction": "Translate",
        "input": "你好",
        "output": "Hello",
        "history": [["Hi", "Hi there"], ["How are you?", "Fine."]],
    },
    {"instruction": "", "output": "empty question"},
]


def write_jsonl(path, rows) -> str:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return str(path)


@pytest.fixture
def loaded(tmp_path):
    return load_cached(write_jsonl(tmp_path / "data.jsonl", ROWS))


@pytest.fixture
def table(loaded):
    return browse_table(loaded)


def test_the_table_has_every_row_valid_or_not(table):
    assert list(table["row"]) == [1, 2, 3, 4, 5, 6]
    assert list(table["valid"]) == [True, True, False, True, True, False]
    assert table.loc[0, "preview"] == "What is the capital of France?"
    assert table.loc[0, "answer"] == "Paris."
    assert table.loc[2, "preview"].startswith("not valid JSON")
    assert table.loc[5, "preview"].startswith("instruction: is empty")
    assert list(table["turns"].astype("float").fillna(-1)) == [1, 1, -1, 1, 3, -1]
    assert table["tokens"].isna().all()  # no token counts without stats
    assert list(table["duplicate"]) == [False, False, False, True, False, False]


def test_row_metrics_fill_tokens_language_and_duplicates(loaded):
    metrics = pd.DataFrame(
        {
            "row": [1, 2, 4, 5],
            "turns": [1, 1, 1, 3],
            "chars": [36, 15, 36, 60],
            "tokens": [12, 7, 12, 40],
            "language": ["en", "en", "en", "mixed"],
            "duplicate": ["", "", "exact", ""],
        }
    )
    table = browse_table(loaded, metrics)
    assert list(table["tokens"].astype("float").fillna(-1)) == [12, 7, -1, 12, 40, -1]
    assert table.loc[4, "language"] == "mixed"
    assert list(table["duplicate"]) == [False, False, False, True, False, False]


def test_filters(table):
    assert list(filter_rows(table, query="CAPITAL")["row"]) == [1, 4]
    assert list(filter_rows(table, query="paris capital")["row"]) == [1, 4]
    assert list(filter_rows(table, query="paris hello")["row"]) == []
    assert list(filter_rows(table, query="你好")["row"]) == [5]
    assert list(filter_rows(table, query="#5")["row"]) == [5]
    assert list(filter_rows(table, validity="invalid")["row"]) == [3, 6]
    assert list(filter_rows(table, validity="valid", turns=1)["row"]) == [1, 2, 4]
    assert list(filter_rows(table, turns=(2, 9))["row"]) == [5]
    assert list(filter_rows(table, duplicate=True)["row"]) == [4]
    assert list(filter_rows(table, duplicate=False, validity="valid")["row"]) == [1, 2, 5]
    with pytest.raises(ValueError):
        filter_rows(table, validity="maybe")


def test_token_filters_leave_out_rows_without_a_count(table):
    table = table.copy()
    table["tokens"] = pd.array([10, 200, None, 10, 900, None], dtype="Int64")
    assert list(filter_rows(table, min_tokens=100)["row"]) == [2, 5]
    assert list(filter_rows(table, max_tokens=200)["row"]) == [1, 2, 4]
    assert list(filter_rows(table, min_tokens=100, max_tokens=500)["row"]) == [2]


def test_pages_are_clamped(table):
    assert page_count(table, 4) == 2
    assert page_count(table.iloc[:0], 4) == 1
    assert list(page_of(table, 1, 4)["row"]) == [1, 2, 3, 4]
    assert list(page_of(table, 2, 4)["row"]) == [5, 6]
    assert list(page_of(table, 99, 4)["row"]) == [5, 6]
    assert list(page_of(table, -3, 4)["row"]) == [1, 2, 3, 4]
    assert page_of(table.iloc[:0], 3, 4).empty


def test_a_big_table_filters_correctly(tmp_path):
    rows = [
        {"instruction": f"question {i}", "output": "needle" if i % 997 == 0 else f"answer {i}"}
        for i in range(100_000)
    ]
    table = browse_table(load_cached(write_jsonl(tmp_path / "big.jsonl", rows)))
    assert len(table) == 100_000
    found = filter_rows(table, query="needle", validity="valid")
    assert list(found["row"]) == [i + 1 for i in range(0, 100_000, 997)]
    assert list(page_of(found, 2, 50)["row"])[:2] == [50 * 997 + 1, 51 * 997 + 1]


def test_rows_and_transcripts(loaded):
    sample = find_row(loaded, 5)
    bubbles = transcript(sample)
    assert [b["role"] for b in bubbles] == ["user", "assistant"] * 3
    assert bubbles[-2]["content"] == "Translate\n你好"
    assert find_row(loaded, 3).message.startswith("not valid JSON")
    assert find_row(loaded, 42) is None
    assert transcript({"text": "A book."}) == [{"role": "text", "content": "A book."}]
    call = [{"type": "function", "function": {"name": "add", "arguments": "{}"}}]
    tool = transcript({"messages": [{"role": "assistant", "content": "", "tool_calls": call}]})
    assert '"name": "add"' in tool[0]["content"]


def test_load_cached_reads_a_changed_file_again(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS[:2])
    first = load_cached(path)
    assert load_cached(path) is first
    write_jsonl(tmp_path / "d.jsonl", ROWS[:3])
    assert load_cached(path).rows == 3
    with pytest.raises(NotFound):
        load_cached(str(tmp_path / "missing.jsonl"))


def test_mask_html_escapes_and_marks_tokens():
    tokenized = TokenizedSample(
        text="<|im_start|>user\n<script>alert(1)</script><|im_end|>\nHi!",
        input_ids=[1, 2, 3, 4, 5],
        labels=[-100, -100, -100, -100, 5],
        pieces=[
            ("<|im_start|>", False),
            ("user\n", False),
            ("<script>alert(1)</script>", False),
            ("<|im_end|>", False),
            ("Hi", True),
            ("!", True),
        ],
        total_tokens=6,
        cutoff=5,
    )
    html = mask_html(tokenized)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;|im_start|&gt;" in html  # special tokens are shown
    assert "white-space:pre-wrap" in html
    assert "user↵" not in html and "↵</span>\n" in html  # the newline stays, marked
    assert html.count('class="tok trained"') == 1
    assert html.count('class="tok prompt"') == 4
    assert html.count('class="tok cut"') == 1  # "!" is past the cutoff
    assert 'class="tok trained" title="#4 trained: &#x27;Hi&#x27;"' in html


def test_mask_of_a_real_tokenizer(tiny_model_dir, workspace):
    tokenizer = load_tokenizer(str(tiny_model_dir), workspace)
    sample = {
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ]
    }
    tokenized = render_sample(tokenizer, sample)
    html = mask_html(tokenized)
    trained = "".join(piece for piece, counts in tokenized.pieces if counts)
    assert trained == "Paris.<|im_end|>\n"
    assert html.count('class="tok trained"') == sum(c for _, c in tokenized.pieces)


def test_load_tokenizer_explains_what_is_missing(workspace):
    with pytest.raises(WorkbenchError, match="not prepared"):
        load_tokenizer("default", workspace, prepare=False)
    with pytest.raises(NotFound):
        load_tokenizer("./no/such/model", workspace)


def test_exports(loaded):
    rows, refused = convert_samples(loaded.samples, "sharegpt")
    assert len(rows) == 4 and not refused
    assert rows[0]["conversations"][0] == {
        "from": "human",
        "value": "What is the capital of France?",
    }
    rows, refused = convert_samples(loaded.samples, "text")
    assert not rows and [e.row for e in refused] == [1, 2, 4, 5]
    data = rows_bytes([{"a": 1}, {"a": 2}], "jsonl")
    assert data.decode().splitlines() == ['{"a": 1}', '{"a": 2}']
    assert rows_bytes([{"a": 1}], "parquet")[:4] == b"PAR1"
    rejects = [json.loads(line) for line in rejects_bytes(loaded.errors).decode().splitlines()]
    assert [r["row"] for r in rejects] == [3, 6]
    assert rejects[0]["raw"] == "{not json"
    frame = errors_frame(loaded.errors, ("Line", "Field", "Problem"))
    assert list(frame.columns) == ["Line", "Field", "Problem"]
    assert list(frame["Line"]) == [3, 6]


def test_import_command_replays_the_recipe():
    recipe = ImportDataRecipe(source="my data.jsonl", name="mine", dedupe="near", cutoff=512)
    assert import_command(recipe) == (
        "workbench data import 'my data.jsonl' --name mine --dedupe near --cutoff 512"
    )
