"""Preference pairs: every shape people bring, row-level errors kept in rejects.jsonl, the
arena's votes turned into pairs (ties and skips left out and counted), the bundled set, the CLI
verbs and the evaluation task that scores held-out pairs."""

from __future__ import annotations

import json

import pytest

from workbench.chat_store import record_vote
from workbench.cli import main
from workbench.data.prefs import (
    bundled_prefs,
    import_prefs,
    load_prefs,
    pairs_from_votes,
    prefs_from_arena,
    read_pairs,
)
from workbench.errors import Conflict, InvalidInput, NotFound

ROWS = [
    {"prompt": "2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "Figure it out."},  # 1 plain
    {  # 2 conversational, the prompt given apart
        "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello! How can I help?"}],
        "rejected": [{"role": "assistant", "content": "What."}],
    },
    {  # 3 the prompt inside both conversations (HH style)
        "chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Eh."}],
    },
    {  # 4 ShareGPT with chosen/rejected turns (LLaMA-Factory)
        "conversations": [{"from": "human", "value": "你好"}],
        "chosen": {"from": "gpt", "value": "你好！有什么可以帮你？"},
        "rejected": {"from": "gpt", "value": "走开。"},
        "system": "你是助手。",
    },
    {"instruction": "Translate", "input": "chat", "chosen": "猫", "rejected": "dog"},  # 5 alpaca
    {"prompt": "Same?", "chosen": "Yes.", "rejected": " Yes. "},  # 6 identical answers
    {"prompt": "No answer", "chosen": "Here."},  # 7 rejected missing
    {"chosen": "A", "rejected": "B"},  # 8 no prompt at all
    {
        "prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        "chosen": "x",
        "rejected": "y",
    },  # 9 prompt ends with the assistant  # fmt: skip
    {
        "chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A"}],
        "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}],
    },  # 10
    {"prompt": "Empty", "chosen": "  ", "rejected": "no"},  # 11
    {"prompt": "2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "Figure it out."},  # 12 repeat
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in ROWS] + ["{not json"]  # 13 unreadable
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_every_shape_is_read_and_every_bad_row_is_named(pairs_file):
    loaded = load_prefs(pairs_file)
    assert [s["row"] for s in loaded.samples] == [1, 2, 3, 4, 5, 12]
    by_row = {s["row"]: s for s in loaded.samples}
    assert by_row[1]["prompt"] == [{"role": "user", "content": "2 + 3?"}]
    assert by_row[2]["prompt"][0] == {"role": "system", "content": "Be kind."}
    assert by_row[2]["rejected"] == "What."
    assert by_row[3]["prompt"] == [{"role": "user", "content": "Sky?"}]
    assert by_row[3]["chosen"] == "Blue."
    assert by_row[4]["prompt"] == [
        {"role": "system", "content": "你是助手。"},
        {"role": "user", "content": "你好"},
    ]
    assert by_row[5]["prompt"][-1]["content"] == "Translate\n\nchat"
    errors = {e.row: (e.field, e.message) for e in loaded.errors}
    assert set(errors) == {6, 7, 8, 9, 10, 11, 13}
    assert errors[6][0] == "rejected" and "same answer" in errors[6][1]
    assert errors[7] == ("rejected", "is missing")
    assert errors[8][0] == "prompt" and "missing" in errors[8][1]
    assert "end with the user" in errors[9][1]
    assert errors[10][0] == "rejected" and "prompts differ" in errors[10][1]
    assert errors[11] == ("chosen", "is empty")


def test_import_saves_splits_rejects_and_counts(workspace, pairs_file):
    result = import_prefs(workspace, pairs_file, name="mine", eval_fraction=0.2)
    assert result["rows"] == 13 and result["rejected"] == 7
    assert result["train_rows"] + result["eval_rows"] == 5  # 6 valid, one exact repeat dropped
    assert result["eval_rows"] == 1 and result["data_kind"] == "preference"
    rejects = (workspace.path_of("mine") / "rejects.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(r)["row"] for r in rejects] == [6, 7, 8, 9, 10, 11, 13]
    assert "Same?" in json.loads(rejects[0])["raw"]  # the original text is kept
    assert len(read_pairs(workspace, "mine", "train")) == 4
    with pytest.raises(Conflict):
        import_prefs(workspace, pairs_file, name="mine")
    with pytest.raises(InvalidInput) as fraction:
        import_prefs(workspace, pairs_file, name="other", eval_fraction=0.9)
    assert fraction.value.where == "eval_fraction"


def test_a_file_without_any_pair_says_what_a_row_needs(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(InvalidInput) as error:
        load_prefs(path)
    assert "row 1" in error.value.what and "chosen" in error.value.fix


def test_arena_votes_become_pairs_with_ties_and_skips_counted(workspace):
    with pytest.raises(InvalidInput) as empty:
        prefs_from_arena(workspace, name="arena")
    assert "no arena votes yet" in empty.value.what and "Arena" in empty.value.fix

    vote = dict(prompt="Capital of France?", models=["a", "b"], answers=["Paris.", "Lyon."])
    record_vote(workspace, outcome="win", winner="a", **vote)
    record_vote(workspace, outcome="win", winner="b", system="Be brief.", **vote)
    record_vote(workspace, outcome="tie", **vote)
    record_vote(workspace, outcome="skip", **vote)
    three = dict(prompt="2+2?", models=["a", "b", "c"], answers=["4", "5", "4"])
    record_vote(workspace, outcome="win", winner="a", **three)  # c repeats a's answer: unusable
    result = prefs_from_arena(workspace, name="arena", eval_fraction=0.0)
    assert result["arena"] == {
        "votes": 5, "wins": 3, "ties": 1, "skips": 1, "pairs": 3, "unusable": 1,
    }  # fmt: skip
    pairs = read_pairs(workspace, "arena")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        ("Paris.", "Lyon."), ("Lyon.", "Paris."), ("4", "5"),
    ]  # fmt: skip
    assert pairs[1]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert pairs[0]["models"] == {"chosen": "a", "rejected": "b"}
    _, only_ties = pairs_from_votes([{"outcome": "tie"}, {"outcome": "skip"}])
    assert only_ties["pairs"] == 0 and only_ties["ties"] == 1 and only_ties["skips"] == 1


def test_the_bundled_set_is_large_clean_and_bilingual():
    (path,) = bundled_prefs().values()
    loaded = load_prefs(path)
    assert len(loaded.samples) >= 200 and not loaded.errors
    prompts = [s["prompt"][-1]["content"] for s in loaded.samples]
    assert len(set(prompts)) == len(prompts)  # a held-out prompt is never also trained on
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in p) for p in prompts) >= 40
    assert all(len(s["chosen"]) > len(s["rejected"]) // 2 for s in loaded.samples)


def test_cli_imports_pairs_and_builds_them_from_the_arena(workspace, pairs_file, capsys):
    assert main(["data", "prefs-from-arena", "--out", "arena", "--json"]) == 2
    assert "no arena votes" in json.loads(capsys.readouterr().out)["error"]["what"]
    assert main(["data", "prefs-import", str(pairs_file), "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["valid"], report["invalid"]) == (6, 7)
    assert main(["data", "prefs-import", "--bundled", "--name", "prefs"]) == 0
    assert "198 train and 22 held-out pairs" in capsys.readouterr().out
    record_vote(workspace, prompt="Hi", models=["a", "b"], answers=["Hello!", "Go."],
                outcome="win", winner="a")  # fmt: skip
    record_vote(workspace, prompt="Hi", models=["a", "b"], answers=["x", "y"], outcome="tie")
    assert main(["data", "prefs-from-arena", "--out", "arena"]) == 0
    out = capsys.readouterr().out
    assert "1 pairs from 2 votes" in out and "1 ties" in out


def test_cli_train_maps_method_dpo_to_the_objective(workspace):
    from workbench.cli import build_parser
    from workbench.cli_train import train_recipe_from_args

    args = build_parser().parse_args(
        ["train", "--method", "dpo", "--model", "m", "--data", "p", "--out", "o", "--beta", "0.2"]
    )
    recipe = train_recipe_from_args(args)
    assert (recipe.objective, recipe.method, recipe.beta) == ("dpo", "lora", 0.2)
    args = build_parser().parse_args(
        ["train", "--method", "orpo", "--weights", "full", "--data", "p", "--out", "o",
         "--preset", "classroom"]
    )  # fmt: skip
    recipe = train_recipe_from_args(args)
    assert (recipe.objective, recipe.method) == ("orpo", "full")
    assert (recipe.epochs, recipe.learning_rate) == (1.0, 5e-4)  # the preset, for preferences


def test_the_evaluation_task_scores_held_out_pairs(workspace, tiny_artifact, pairs_file):
    from workbench.evaluate.runner import run_eval
    from workbench.evaluate.view import prompt_previews
    from workbench.recipes import EvalRecipe

    import_prefs(workspace, pairs_file, name="mine", eval_fraction=0.4)
    (preview,) = prompt_previews(["prefs:mine"], workspace)
    assert preview["kind"] == "preference" and preview["metric"] == "pref_acc"
    assert "⟦" in preview["prompt"]
    report = run_eval(EvalRecipe(models=["tiny"], tasks=["prefs:mine"]), workspace=workspace)
    rows = {r["metric"]: r for r in report["metrics"]}
    assert set(rows) == {"pref_acc", "pref_acc_norm", "margin"}
    assert rows["pref_acc"]["n"] == 2 and 0 <= rows["pref_acc"]["value"] <= 1
    assert rows["pref_acc"]["capability"] == "preference"
    with pytest.raises(NotFound) as missing:
        run_eval(EvalRecipe(models=["tiny"], tasks=["prefs:nothing-here"]), workspace=workspace)
    assert "nothing-here" in missing.value.what
    with pytest.raises(InvalidInput) as not_pairs:
        run_eval(EvalRecipe(models=["tiny"], tasks=["prefs:tiny"]), workspace=workspace)
    assert "not a dataset" in not_pairs.value.what or "no preference pairs" in not_pairs.value.what
