"""Reading the files people bring: every file type, and every bad input, with row numbers."""

from __future__ import annotations

import json

import pytest

from workbench.data.files import read_source, write_rows
from workbench.data.loading import load_data, write_rejects
from workbench.errors import InvalidInput, NotFound

ALPACA = [
    {"instruction": "Say hi", "input": "", "output": "Hi!"},
    {"instruction": "你好吗？", "input": "", "output": "我很好。"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_type_reads_the_same_samples(tmp_path, suffix):
    path = write_rows(ALPACA, tmp_path / f"data{suffix}")
    loaded = load_data(path)
    assert loaded.format == "alpaca"
    assert [s["messages"][1]["content"] for s in loaded.samples] == ["Hi!", "我很好。"]
    assert loaded.errors == []
    assert len(loaded.source.sha256) == 64


def test_a_datasets_folder_reads_its_train_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ALPACA),
            "test": datasets.Dataset.from_list(ALPACA[:1]),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    loaded = load_data(tmp_path / "saved")
    assert loaded.source.file_type == "datasets"
    assert len(loaded.samples) == 2
    assert any("also there: test" in n for n in loaded.source.notices)


def test_a_text_file_becomes_one_document_per_paragraph(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First paragraph,\nstill first.\n\n\nSecond one.\n", "utf-8")
    loaded = load_data(path)
    assert loaded.format == "text"
    assert [(s["row"], s["text"]) for s in loaded.samples] == [
        (1, "First paragraph,\nstill first."),
        (5, "Second one."),
    ]


def test_bad_jsonl_lines_are_reported_by_line_and_the_rest_is_kept(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps(ALPACA[0])
    path.write_bytes(
        "\n".join(
            [
                good,  # 1
                '{"instruction": "x", "output": ',  # 2 malformed
                "",  # 3 blank
                json.dumps({"instruction": "x", "output": ""}),  # 4 empty field
                "[1, 2]",  # 5 not an object
                json.dumps({"instruction": "x"}),  # 6 missing field
                good,  # 7
            ]
        ).encode()
        + b"\n"
        + b'{"instruction": "caf\xe9", "output": "x"}\n'  # 8 Latin-1 byte
    )
    loaded = load_data(path)
    assert len(loaded.samples) == 2
    found = {(e.row, e.field): e.message for e in loaded.errors}
    assert set(found) == {(2, ""), (4, "output"), (5, ""), (6, "output"), (8, "")}
    assert "not valid JSON" in found[(2, "")]
    assert "empty" in found[(4, "output")]
    assert "got a list" in found[(5, "")]
    assert "missing" in found[(6, "output")]
    assert "not UTF-8" in found[(8, "")] and "0xe9" in found[(8, "")]
    rejects = tmp_path / "rejects.jsonl"
    write_rejects(loaded.errors, rejects)
    kept = [json.loads(line) for line in rejects.read_text("utf-8").splitlines()]
    assert [r["row"] for r in kept] == [2, 4, 5, 6, 8]
    assert kept[0]["raw"] == '{"instruction": "x", "output": '


def test_a_utf8_bom_is_skipped_with_a_notice(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA[0]).encode() + b"\n")
    loaded = load_data(path)
    assert len(loaded.samples) == 1 and not loaded.errors
    assert any("BOM" in n for n in loaded.source.notices)


def test_a_gbk_file_is_refused_with_the_encoding_to_use_and_reads_with_it(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("instruction,output\n你好,世界\n".encode("gb18030"))
    with pytest.raises(InvalidInput) as error:
        read_source(path)
    assert "line 2" in error.value.where
    assert "gb18030" in error.value.fix
    loaded = load_data(path, encoding="gb18030")
    assert loaded.samples[0]["messages"][1]["content"] == "世界"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_says_so(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match="empty"):
        load_data(path)


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",,}\n]', "utf-8"
    )
    with pytest.raises(InvalidInput) as error:
        load_data(path)
    assert "line 3" in error.value.what
    assert ".jsonl" in error.value.fix


def test_json_with_one_object_per_line_is_read_as_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "lines.json", ALPACA)
    loaded = load_data(path)
    assert len(loaded.samples) == 2
    assert any("JSONL" in n for n in loaded.source.notices)


def test_csv_rows_keep_their_line_numbers_and_json_cells_are_parsed(tmp_path):
    path = tmp_path / "data.csv"
    conversations = json.dumps([{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}])
    path.write_text(
        'conversations,note\n"' + conversations.replace('"', '""') + '",x\n'
        '"[{""from"": ""human"", ""value"": ""multi\nline""}, {""from"": ""gpt"", ""value"": ""ok""}]",y\n'
        "too,many,cells\n",
        "utf-8",
    )
    loaded = load_data(path)
    assert loaded.format == "sharegpt"
    assert [s["row"] for s in loaded.samples] == [2, 3]
    assert [(e.row, "has 3 fields" in e.message) for e in loaded.errors] == [(5, True)]


def test_csv_header_problems_are_file_errors(tmp_path):
    path = tmp_path / "dupe.csv"
    path.write_text("a,a\n1,2\n", "utf-8")
    with pytest.raises(InvalidInput, match="repeated column"):
        read_source(path)


def test_unknown_format_lists_the_columns_and_the_expected_shapes(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"foo": "a", "bar": "b"}])
    with pytest.raises(InvalidInput) as error:
        load_data(path)
    assert "foo" in error.value.what
    assert "conversations" in error.value.fix and "--format" in error.value.fix


def test_choosing_a_format_overrides_detection_and_says_it_disagrees(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "a", "output": "b", "text": "c"}])
    assert load_data(path).format == "alpaca"
    chosen = load_data(path, fmt="text")
    assert chosen.samples[0]["text"] == "c"
    assert "look more like Alpaca" in chosen.notices[0]


def test_missing_paths_and_unknown_formats_are_clear(tmp_path):
    with pytest.raises(NotFound, match="no file or folder"):
        load_data(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidInput, match="Unknown dataset format"):
        load_data(tmp_path / "nope.jsonl", fmt="yaml")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidInput, match="not a saved `datasets` dataset"):
        load_data(tmp_path / "folder")


def test_writing_csv_keeps_nested_values_as_json(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "a,b"}, {"from": "gpt", "value": "c"}]}]
    path = write_rows(rows, tmp_path / "out.csv")
    assert load_data(path).samples[0]["messages"][0]["content"] == "a,b"
    with pytest.raises(InvalidInput, match="unknown file type"):
        write_rows(rows, tmp_path / "out.xlsx")
