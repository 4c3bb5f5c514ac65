"""Clean, split and save: the dataset artifact a user leaves the data studio with."""

from __future__ import annotations

import hashlib
import json

import pytest

from workbench.data.prepare import (
    dataset_file,
    list_datasets,
    read_dataset,
    run_import_data,
    save_samples,
    save_upload,
    split_samples,
)
from workbench.errors import Conflict, InvalidInput
from workbench.recipes import ImportDataRecipe, recipe_from_dict


def qa(question: str, answer: str) -> dict:
    return {"instruction": question, "input": "", "output": answer}


def write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture
def source(tmp_path):
    rows = [qa(f"Question number {i}?", f"Answer number {i}.") for i in range(40)]
    rows.append(qa("question NUMBER 3?", "Answer   number 3."))  # same text after normalising
    return write_jsonl(
        tmp_path / "qa.jsonl", rows, ['{"instruction": "broken', json.dumps(qa("x", ""))]
    )


def test_import_saves_train_eval_and_rejects_and_accounts_for_every_row(workspace, source):
    recipe = ImportDataRecipe(source=str(source), name="qa", eval_fraction=0.1, seed=3)
    result = run_import_data(recipe, workspace=workspace)
    assert result["rows"] == 43
    assert result["rejected"] == 2
    dedupe = next(s for s in result["steps"] if s["step"] == "dedupe")
    assert dedupe["dropped"] == 1
    assert result["train_rows"] + result["eval_rows"] + dedupe["dropped"] + 2 == 43
    assert result["eval_rows"] == 4

    manifest = workspace.get("qa")
    assert manifest.kind == "dataset"
    assert manifest.metrics["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest.recipe["kind"] == "import_data"
    assert [s["step"] for s in manifest.metrics["steps"]] == ["read", "validate", "dedupe", "split"]
    train, held = read_dataset(workspace, "qa"), read_dataset(workspace, "qa", "eval")
    assert len(train) == result["train_rows"] and len(held) == 4
    assert {s["row"] for s in train}.isdisjoint({s["row"] for s in held})
    assert train[0]["messages"][0]["role"] == "user"
    rejects = dataset_file(workspace, "qa", "rejects").read_text("utf-8").splitlines()
    assert [json.loads(line)["row"] for line in rejects] == [42, 43]
    assert list_datasets(workspace)[0]["name"] == "qa"


def test_split_is_seeded(workspace):
    samples = [{"text": str(i), "row": i} for i in range(100)]
    a = split_samples(samples, 0.2, seed=1)
    assert a == split_samples(samples, 0.2, seed=1)
    assert a[1] != split_samples(samples, 0.2, seed=2)[1]
    assert len(a[1]) == 20 and len(a[0]) == 80
    assert split_samples(samples[:3], 0.01, seed=0)[1]  # asked for an eval split: at least one
    assert split_samples(samples[:1], 0.5, seed=0) == (samples[:1], [])


def test_near_duplicates_are_dropped_only_when_asked(workspace, tmp_path):
    base = "Large language models learn from a great deal of text and can answer questions well."
    rows = [
        qa("Tell me about LLMs.", base),
        qa("Tell me about LLMs!", base.replace("great", "huge")),
    ]
    rows += [qa("Something else entirely", "An unrelated answer about cooking pasta at home.")]
    path = write_jsonl(tmp_path / "near.jsonl", rows)
    exact = run_import_data(
        ImportDataRecipe(source=str(path), name="exact", eval_fraction=0), workspace=workspace
    )
    near = run_import_data(
        ImportDataRecipe(source=str(path), name="near", dedupe="near", eval_fraction=0),
        workspace=workspace,
    )
    assert exact["train_rows"] == 3
    assert near["train_rows"] == 2


def test_overlong_samples_are_dropped_or_clipped(workspace, tmp_path, tiny_model_dir):
    long_answer = "Fine-tuning adapts a pretrained language model to new data. " * 20
    conversation = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tell me everything."},
            {"role": "assistant", "content": long_answer},
        ]
    }
    too_long = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": long_answer},
        ]
    }
    book = {"text": long_answer * 3}
    rows = [
        conversation,
        too_long,
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    chat_path = write_jsonl(tmp_path / "chat.jsonl", rows)
    text_path = write_jsonl(tmp_path / "book.jsonl", [book])
    common = {"model": str(tiny_model_dir), "cutoff": 64, "eval_fraction": 0}

    dropped = run_import_data(
        ImportDataRecipe(source=str(chat_path), name="drop", overlong="drop", **common),
        workspace=workspace,
    )
    assert dropped["train_rows"] == 1
    clipped = run_import_data(
        ImportDataRecipe(source=str(chat_path), name="clip", overlong="clip", **common),
        workspace=workspace,
    )
    step = clipped["steps"][-2]
    assert (step["clipped"], step["dropped"]) == (1, 1)
    kept = read_dataset(workspace, "clip")
    assert [len(s["messages"]) for s in kept] == [2, 2]  # the first exchange of the long chat

    pieces = run_import_data(
        ImportDataRecipe(source=str(text_path), name="book", overlong="clip", **common),
        workspace=workspace,
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [s["text"] for s in read_dataset(workspace, "book")]
    assert pieces["train_rows"] == len(texts) > 1
    assert "".join(texts) == book["text"]  # nothing lost, only cut
    assert max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) < 64


def test_a_taken_name_is_refused_before_any_work(workspace, source):
    run_import_data(ImportDataRecipe(source=str(source), name="qa"), workspace=workspace)
    with pytest.raises(Conflict, match="exists already"):
        run_import_data(ImportDataRecipe(source=str(source), name="qa"), workspace=workspace)


def test_a_file_with_no_usable_row_says_why(workspace, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [qa("a", ""), qa("b", "")])
    with pytest.raises(InvalidInput) as error:
        run_import_data(ImportDataRecipe(source=str(path), name="bad"), workspace=workspace)
    assert "row 1" in error.value.what and "output" in error.value.what
    assert not workspace.exists("bad")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dedupe": "fuzzy"}, "dedupe"),
        ({"overlong": "drop"}, "cutoff"),
        ({"eval_fraction": 0.9}, "eval_fraction"),
        ({"format": "yaml"}, "format"),
        ({"name": "../escape"}, "dataset name"),
    ],
)
def test_bad_recipes_name_the_field(changes, field):
    with pytest.raises(InvalidInput) as error:
        recipe_from_dict({"kind": "import_data", "source": "a.jsonl", "name": "ok", **changes})
    assert field in error.value.where


def test_generated_samples_are_saved_as_a_dataset(workspace):
    samples = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    ] * 10
    save_samples(workspace, "gen", samples, source="test", eval_fraction=0.2)
    assert workspace.get("gen").metrics["train_rows"] == 8
    assert len(read_dataset(workspace, "gen", "eval")) == 2


def test_uploads_are_kept_never_overwritten_and_limited(workspace, monkeypatch):
    first = save_upload(workspace, "../../my data.jsonl", b"one")
    assert first.parent == workspace.root / "uploads" and first.name == "my_data.jsonl"
    assert save_upload(workspace, "my data.jsonl", b"one") == first  # same bytes: same file
    second = save_upload(workspace, "my data.jsonl", b"two")
    assert second != first and first.read_bytes() == b"one"
    monkeypatch.setenv("WORKBENCH_MAX_UPLOAD_MB", "0.000001")
    with pytest.raises(InvalidInput, match="upload limit"):
        save_upload(workspace, "big.jsonl", b"x" * 100)
