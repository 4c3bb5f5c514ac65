"""The Data studio as a user meets it: import and check a file, explore its rows and tokens,
clean and split it into a dataset artifact — in English and 中文, with errors for people.

Same setup as test_pages.py: a fresh workspace per test, the job queue held, and app.py run on
every rerun as the real server does.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.data import charts
from workbench.data.browse import VALIDITY, load_tokenizer
from workbench.data.prepare import list_datasets
from workbench.data.template import TRAIN_ON, render_sample
from workbench.i18n import LANGUAGES, t
from workbench.recipes import DEDUPE_MODES, OVERLONG_MODES

from .apptest import frame_with, open_app, rerun, texts

IMPORT, EXPLORE, PREPARE = (f"pages/data_{name}.py" for name in ("import", "explore", "prepare"))

ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Say hello in Chinese", "input": "", "output": "你好！"},
    "{this line is not json",
    {"instruction": "Name a colour", "input": "", "output": "Blue."},
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
]


@pytest.fixture
def data_file(tmp_path) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in ROWS]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return str(path)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.get("metric")}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_import_shows_the_counts_and_the_bad_row(workspace, data_file, lang):
    at = open_app(lang, IMPORT, source=data_file)
    assert at.title[0].value == t("data.import_title", lang)
    counts = metrics(at)
    assert counts[t("data.count_rows", lang)] == "5"
    assert counts[t("data.count_valid", lang)] == "4"
    assert counts[t("data.count_invalid", lang)] == "1"
    assert "**Alpaca**" in texts(at)
    errors = frame_with(at, t("data.unit_line", lang))
    assert list(errors[t("data.unit_line", lang)]) == [3]
    assert "not valid JSON" in errors[t("data.col_message", lang)][0]
    assert at.query_params["source"] == data_file
    assert not at.error


def test_the_format_can_be_overridden(workspace, data_file):
    at = open_app("en", IMPORT, source=data_file)
    at.selectbox(key="import_format").set_value("sharegpt")
    rerun(at)
    assert metrics(at)[t("data.count_valid", "en")] == "0"
    assert any("You chose ShareGPT" in info.value for info in at.info)
    assert at.query_params["format"] == "sharegpt"
    errors = frame_with(at, t("data.col_field", "en"))
    assert "conversations" in set(errors[t("data.col_field", "en")])


def test_a_path_is_opened_and_a_bad_one_explained(workspace, data_file, tmp_path):
    at = open_app("en", IMPORT)
    assert t("data.no_source", "en") in texts(at)
    at.radio(key="import_kind").set_value("path")
    rerun(at)
    at.text_input(key="import_path").set_value(str(tmp_path / "nope.jsonl"))
    at.button(key="import_open").click()
    rerun(at)
    error = at.error[0].value
    assert "There is no file" in error and t("error.fix", "en") in error
    at.text_input(key="import_path").set_value(data_file)
    at.button(key="import_open").click()
    rerun(at)
    assert not at.error
    assert metrics(at)[t("data.count_rows", "en")] == "5"


def test_an_upload_is_saved_in_the_workspace(workspace, data_file):
    at = open_app("en", IMPORT)
    at.radio(key="import_kind").set_value("upload")
    rerun(at)
    at.file_uploader(key="import_upload").upload("mine.jsonl", Path(data_file).read_bytes())
    rerun(at)
    saved = workspace.root / "uploads" / "mine.jsonl"
    assert saved.read_bytes() == Path(data_file).read_bytes()
    assert at.query_params["source"] == str(saved)
    assert metrics(at)[t("data.count_invalid", "en")] == "1"


def test_export_counts_the_rows_a_format_cannot_hold(workspace, data_file):
    at = open_app("en", IMPORT, source=data_file)
    at.selectbox(key="export_format").set_value("text")
    at.button(key="export_run").click()
    rerun(at)
    assert t("data.export_counts", "en", written=0, refused=4) in texts(at)
    assert len(at.dataframe[-1].value) == 4  # errors table, then the refused rows
    at.selectbox(key="export_format").set_value("sharegpt")
    at.button(key="export_run").click()
    rerun(at)
    assert t("data.export_counts", "en", written=4, refused=0) in texts(at)


def test_self_cognition_data_is_generated_and_opened(workspace):
    at = open_app("zh", IMPORT)
    at.radio(key="import_kind").set_value("self_cognition")
    rerun(at)
    at.text_input(key="sc_name").set_value("小书生")
    at.text_input(key="sc_author").set_value("书生训练营")
    at.button(key="sc_generate").click()
    rerun(at)
    datasets = {row["name"]: row for row in list_datasets(workspace)}
    assert datasets["self-cognition"]["train_rows"] > 50
    assert "self-cognition" in at.query_params["source"]
    assert metrics(at)[t("data.count_invalid", "zh")] == "0"


def test_an_empty_self_cognition_name_is_explained(workspace):
    at = open_app("en", IMPORT)
    at.radio(key="import_kind").set_value("self_cognition")
    rerun(at)
    at.button(key="sc_generate").click()
    rerun(at)
    assert "The name is empty" in at.error[0].value
    assert not list_datasets(workspace)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_browse_search_narrows_the_table(workspace, data_file, lang):
    at = open_app(lang, EXPLORE, source=data_file)
    assert at.title[0].value == t("data.explore_title", lang)
    table = at.dataframe[0].value
    assert list(table[t("data.col_row", lang)]) == [1, 2, 3, 4, 5]
    at.text_input(key="browse_query").set_value("capital")
    rerun(at)
    table = at.dataframe[0].value
    assert list(table[t("data.col_row", lang)]) == [1]
    assert table[t("data.col_answer", lang)][0] == "Paris."
    chat = [m for m in at.chat_message if m.name in ("user", "assistant")]
    assert [m.name for m in chat] == ["user", "assistant"]
    assert chat[1].markdown[0].value == "Paris."


def test_browse_shows_why_an_invalid_row_is_refused(workspace, data_file):
    at = open_app("en", EXPLORE, source=data_file)
    at.selectbox(key="browse_validity").set_value("invalid")
    rerun(at)
    assert list(at.dataframe[0].value[t("data.col_row", "en")]) == [3]
    assert any("Row 3 cannot be used" in e.value for e in at.error)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_doctor_highlights_the_trained_tokens(workspace, data_file, tiny_model_dir, lang):
    at = open_app(lang, EXPLORE, source=data_file, tab=t("data.tab_doctor", lang))
    # without a prepared default model the doctor explains what to do
    assert any("not prepared yet" in e.value for e in at.error)
    at.text_input(key="explore_model").set_value(str(tiny_model_dir))
    rerun(at)
    assert not at.error
    html = at.get("html")[0].proto.body
    assert 'class="tok trained"' in html and 'class="tok prompt"' in html
    assert "&lt;|im_start|&gt;" in html
    shown = unescape(re.sub(r"<[^>]+>", "", html)).replace("↵", "")  # what a reader sees
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" in shown
    counts = metrics(at)
    assert int(counts[t("data.tok_trained", lang)]) > 0
    assert counts[t("data.tok_cut", lang)] == "0"
    at.number_input(key="explore_cutoff").set_value(8)
    rerun(at)
    assert 'class="tok cut"' in at.get("html")[0].proto.body
    first = {"messages": [{"role": "user", "content": ROWS[0]["instruction"]}]}
    first["messages"].append({"role": "assistant", "content": ROWS[0]["output"]})
    tokenizer = load_tokenizer(str(tiny_model_dir), workspace)
    counts = render_sample(tokenizer, first, cutoff=8).summary()
    expected = t("data.cut_message", lang, cut=counts["cut"], lost=counts["cut_trained"])
    assert at.warning[0].value == expected


def test_token_counts_fill_the_browse_table_and_the_statistics(
    workspace, data_file, tiny_model_dir
):
    at = open_app("en", EXPLORE, source=data_file)
    assert frame_with(at, t("data.col_tokens", "en"))[t("data.col_tokens", "en")].isna().all()
    at.text_input(key="explore_model").set_value(str(tiny_model_dir))
    rerun(at)
    tokens = frame_with(at, t("data.col_tokens", "en"))[t("data.col_tokens", "en")]
    assert tokens.notna().sum() == 4  # the valid rows
    at.query_params["tab"] = t("data.tab_statistics", "en")
    rerun(at)
    assert metrics(at)[t("data.stat_samples", "en")] == "4"
    assert t("data.tokens_exact", "en") in texts(at)
    assert len(at.get("plotly_chart")) == 5


def test_explore_copes_when_no_row_is_valid(workspace, data_file, tiny_model_dir):
    at = open_app("en", EXPLORE, source=data_file, format="sharegpt")  # the wrong format
    table = frame_with(at, t("data.col_valid", "en"))
    assert len(table) == 5 and not table[t("data.col_valid", "en")].any()
    at.text_input(key="explore_model").set_value(str(tiny_model_dir))
    at.query_params["tab"] = t("data.tab_doctor", "en")
    rerun(at)
    assert any("Row 1 cannot be used: conversations" in e.value for e in at.error)
    at.query_params["tab"] = t("data.tab_statistics", "en")
    rerun(at)
    assert metrics(at)[t("data.stat_samples", "en")] == "0"


def test_explore_without_a_source_points_to_import(workspace):
    at = open_app("zh", EXPLORE)
    assert t("data.no_source", "zh") in texts(at)


def test_explore_with_a_bad_source_shows_an_error(workspace, tmp_path):
    at = open_app("en", EXPLORE, source=str(tmp_path / "gone.jsonl"))
    assert "There is no file" in at.error[0].value


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_prepare_saves_a_dataset_that_appears_in_the_list(workspace, data_file, lang):
    at = open_app(lang, PREPARE, source=data_file)
    assert at.title[0].value == t("data.prepare_title", lang)
    assert at.text_input(key="prep_name").value == "train"
    body = texts(at)
    assert f"workbench data import {data_file} --name train" in body
    assert "kind: import_data" in body
    at.text_input(key="prep_name").set_value("my-data")
    at.slider(key="prep_eval").set_value(0.25)
    rerun(at)
    assert "--eval-fraction 0.25" in texts(at)
    next(b for b in at.button if b.label == t("data.prepare_run", lang)).click()
    rerun(at)
    datasets = {row["name"]: row for row in list_datasets(workspace)}
    assert datasets["my-data"]["train_rows"] == 3 and datasets["my-data"]["eval_rows"] == 1
    assert datasets["my-data"]["rejected"] == 1
    assert t("data.prepared", lang, name="my-data", train=3, eval=1, rejected=1) in texts(at)
    listed = frame_with(at, t("data.ds_train_rows", lang))
    assert "my-data" in set(listed[t("data.ds_name", lang)])
    assert at.text_input(key="prep_name").value == "train"  # a free name for the next one


def test_prepare_explains_a_bad_name_and_a_bad_source(workspace, tmp_path):
    at = open_app("en", PREPARE, source=str(tmp_path / "gone.jsonl"))
    at.text_input(key="prep_name").set_value("bad name!")
    rerun(at)
    assert "Invalid dataset name" in at.error[0].value
    at.text_input(key="prep_name").set_value("fine")
    rerun(at)
    next(b for b in at.button if b.label == t("data.prepare_run", "en")).click()
    rerun(at)
    assert "There is no file" in at.error[0].value
    assert not list_datasets(workspace)


def test_the_chosen_source_follows_to_the_other_pages(workspace, data_file):
    at = open_app("en", IMPORT, source=data_file)
    at.query_params.pop("source")  # navigating between pages drops the URL's extra parameters
    at.switch_page(PREPARE)
    rerun(at)
    assert f"`{data_file}`" in texts(at)
    assert at.query_params["source"] == data_file


def test_every_choice_has_a_label_in_both_languages():
    names = [f"data.validity_{v}" for v in VALIDITY]
    names += [f"data.train_on_{k}" for k in TRAIN_ON]
    names += [f"data.dedupe_{m}" for m in DEDUPE_MODES] + [
        f"data.overlong_{m}" for m in OVERLONG_MODES
    ]
    names += [f"data.duplicates_{v}" for v in ("any", "only", "none")]
    names += [f"data.kind_{k}" for k in ("upload", "path", "bundled", "dataset", "self_cognition")]
    names += [f"data.unit_{u}" for u in ("line", "row")] + [
        f"data.count_{c}" for c in ("rows", "valid", "invalid")
    ]
    names += [f"data.tok_{c}" for c in ("tokens", "kept", "trained", "cut")]
    names += [f"data.tokens_{h}" for h in ("exact", "estimated")]
    names += [f"data.chart_{key}" for key in charts.LABELS]
    names += [
        f"data.col_{c}"
        for c in (
            "row",
            "valid",
            "preview",
            "answer",
            "turns",
            "chars",
            "tokens",
            "language",
            "duplicate",
        )
    ]
    for name in names:
        for lang in LANGUAGES:
            assert t(name, lang)
