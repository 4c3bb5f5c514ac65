"""The eval runner on a tiny model: cache, resumption, failures kept local, the eval artifact."""

from __future__ import annotations

import json

import pytest

from workbench.errors import InvalidInput, NotFound, WorkbenchError
from workbench.evaluate import cache
from workbench.evaluate.runner import RESULTS_FILE, SAMPLES_FILE, run_eval
from workbench.recipes import EvalRecipe, recipe_from_dict


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices gain nothing from threads, and on a shared CPU waiting threads cost 1000x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return str(path)


def test_second_run_computes_nothing_new(workspace, tiny_artifact):
    recipe = EvalRecipe(
        dtype="float32", models=[tiny_artifact], tasks=["knowledge-en", "reasoning-zh"], limit=6
    )
    first = run_eval(recipe, workspace=workspace)
    assert (first["computed"], first["cached"]) == (12, 0)
    second = run_eval(recipe, workspace=workspace)
    assert (second["computed"], second["cached"]) == (0, 12)
    assert second["metrics"] == first["metrics"]
    # a larger limit computes only the new samples
    third = run_eval(
        EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=["knowledge-en"], limit=8),
        workspace=workspace,
    )
    assert (third["computed"], third["cached"]) == (2, 6)


def test_an_edited_sample_or_template_is_scored_again(workspace, tiny_artifact, tmp_path):
    rows = [
        {"question": "Capital of France?", "choices": ["Paris", "Lyon"], "answer": 0},
        {"question": "2+2?", "choices": ["4", "5"], "answer": "A"},
    ]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    recipe = EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=[path])
    assert run_eval(recipe, workspace=workspace)["computed"] == 2
    rows[1]["choices"] = ["4", "five"]
    write_jsonl(tmp_path / "mine.jsonl", rows)
    again = run_eval(recipe, workspace=workspace)
    assert (again["computed"], again["cached"]) == (1, 1)
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\ndata: mine.jsonl\ntemplate: 'Q: {question}\\nA:'\n", "utf-8")
    changed = run_eval(
        EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=[str(spec)]), workspace=workspace
    )
    assert changed["computed"] == 2  # another template: another task version


def test_cancelled_run_resumes_where_it_stopped(workspace, tiny_artifact):
    recipe = EvalRecipe(
        dtype="float32", models=[tiny_artifact], tasks=["knowledge-zh"], limit=20, batch_size=4
    )
    seen = []

    def progress(**event):
        seen.append(event)

    stop_after = 5
    stopped = run_eval(
        recipe,
        workspace=workspace,
        progress=progress,
        should_stop=lambda: sum(1 for e in seen if e.get("computed")) >= stop_after,
    )
    assert stopped["stopped"] is True and stopped["artifact"] == ""
    kept = stopped["computed"]
    assert 0 < kept < 20
    assert not workspace.list("eval")  # no artifact from a stopped run
    resumed = run_eval(recipe, workspace=workspace)
    assert (resumed["computed"], resumed["cached"]) == (20 - kept, kept)


def test_the_artifact_links_to_the_models_and_records_scores(workspace, tiny_artifact):
    recipe = EvalRecipe(
        dtype="float32", models=[tiny_artifact], tasks=["reasoning-en"], limit=4, name="first-eval"
    )
    result = run_eval(recipe, workspace=workspace, job_id="20260101-000000-eval-abcdef")
    assert result["artifact"] == "first-eval"
    manifest = workspace.get("first-eval")
    assert manifest.kind == "eval" and manifest.parents == [tiny_artifact]
    assert [m.name for m in workspace.lineage("first-eval")] == [tiny_artifact, "first-eval"]
    acc = next(r for r in result["metrics"] if r["metric"] == "acc")
    assert manifest.metrics[f"{tiny_artifact}/reasoning-en/acc"] == acc["value"]
    assert workspace.get(tiny_artifact).metrics["eval.reasoning-en.acc"] == acc["value"]
    folder = workspace.path_of("first-eval")
    document = json.loads((folder / RESULTS_FILE).read_text("utf-8"))
    assert document["tasks"][0]["prompt_example"].startswith("Question: What number comes next")
    lines = (folder / SAMPLES_FILE).read_text("utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["question"]
    assert acc["low"] <= acc["value"] <= acc["high"] and acc["n"] == 4
    with pytest.raises(WorkbenchError, match="exists already"):
        run_eval(recipe, workspace=workspace)


def test_a_model_that_fails_is_reported_and_the_others_kept(workspace, tiny_artifact, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}", "utf-8")
    (broken / "model.safetensors").write_bytes(b"not weights")
    recipe = EvalRecipe(
        dtype="float32",
        models=["no-such-model", tiny_artifact, str(broken)],
        tasks=["knowledge-en"],
        limit=3,
    )
    result = run_eval(recipe, workspace=workspace)
    failed = {e["model"]: e["error"] for e in result["errors"]}
    assert "No model called 'no-such-model'" in failed["no-such-model"]
    assert str(broken) in failed and "Could not load" in failed[str(broken)]
    assert {r["model"] for r in result["metrics"]} == {tiny_artifact}
    assert workspace.exists(result["artifact"])


def test_nothing_computed_is_an_error_naming_each_model(workspace):
    recipe = EvalRecipe(
        dtype="float32", models=["ghost-a", "ghost-b"], tasks=["knowledge-en"], limit=2
    )
    with pytest.raises(WorkbenchError) as info:
        run_eval(recipe, workspace=workspace)
    assert "ghost-a" in info.value.what and "ghost-b" in info.value.what


def test_a_failing_sample_is_named_and_the_rest_scored(workspace, tiny_artifact, tmp_path):
    rows = [
        {"id": "ok-1", "question": "Say hi.", "checks": [{"type": "max_chars", "value": 999}]},
        {"id": "too-long", "question": "hi " * 3000, "checks": [{"type": "json"}]},
        {"id": "ok-2", "question": "Say bye.", "checks": [{"type": "lowercase"}]},
    ]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    result = run_eval(
        EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=[path], batch_size=4),
        workspace=workspace,
    )
    assert [(e["sample"], e["task"]) for e in result["errors"]] == [("too-long", "long")]
    assert "tokens" in result["errors"][0]["error"]
    row = next(r for r in result["metrics"] if r["metric"] == "accuracy")
    assert (row["n"], row["samples"]) == (2, 3)


def test_bad_tasks_fail_before_anything_runs(workspace, tiny_artifact, tmp_path):
    with pytest.raises(NotFound, match="No task called 'knowlege-en'"):
        run_eval(
            EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=["knowlege-en"]),
            workspace=workspace,
        )
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 5}]
    )
    with pytest.raises(InvalidInput, match="out of range"):
        run_eval(
            EvalRecipe(dtype="float32", models=[tiny_artifact], tasks=[bad]), workspace=workspace
        )
    with pytest.raises(InvalidInput, match="need the name"):
        run_eval(EvalRecipe(models=[tiny_artifact], tasks=["identity"]), workspace=workspace)
    with pytest.raises(InvalidInput, match="need a judge"):
        run_eval(EvalRecipe(models=[tiny_artifact], tasks=["judge-zh"]), workspace=workspace)
    assert cache.count(workspace) == 0


def test_identity_name_comes_from_the_lineage(workspace, tiny_artifact):
    from workbench.data.prepare import save_samples
    from workbench.evaluate.runner import identity_from_lineage

    save_samples(
        workspace,
        "self-cog",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}],
        source="test",
        recipe={"kind": "self_cognition", "name": "小书生", "author": "Camp"},
        eval_fraction=0.0,
        seed=0,
    )
    with workspace.create("model", "tuned", variant="merged", parents=["self-cog"]) as staging:
        (staging / "config.json").write_text("{}", "utf-8")
    assert identity_from_lineage(workspace, [tiny_artifact, "tuned"]) == ("小书生", "Camp")
    assert identity_from_lineage(workspace, [tiny_artifact]) == ("", "")


def test_recipe_checks_and_yaml_round_trip():
    recipe = recipe_from_dict({"kind": "eval", "models": ["default"], "tasks": ["quick"]})
    assert recipe.runner == "workbench.evaluate.runner:run_eval"
    for bad, field in (
        ({"models": []}, "models"),
        ({"models": ["a", "a"]}, "models"),
        ({"tasks": []}, "tasks"),
        ({"limit": -1}, "limit"),
        ({"dtype": "int3"}, "dtype"),
    ):
        data = {"kind": "eval", "models": ["default"], "tasks": ["quick"], **bad}
        with pytest.raises(InvalidInput) as info:
            recipe_from_dict(data)
        assert field in info.value.where


def test_arena_win_rates_from_chat_votes(workspace, tiny_artifact):
    chat_store = pytest.importorskip("workbench.chat_store")
    for outcome, winner in (("win", "tuned"), ("win", "tuned"), ("tie", None), ("skip", None)):
        chat_store.record_vote(
            workspace, prompt="Who are you?", models=["tiny", "tuned"], answers=["a", "b"],
            outcome=outcome, winner=winner,
        )  # fmt: skip
    chat_store.record_vote(
        workspace, prompt="Hi", models=["tiny", "tuned", "third"], answers=["a", "b", "c"],
        outcome="win", winner="tiny",
    )  # fmt: skip
    result = run_eval(
        EvalRecipe(models=[tiny_artifact, "tuned"], tasks=["arena"]), workspace=workspace
    )
    rates = {r["model"]: (r["value"], r["n"]) for r in result["metrics"]}
    # tiny: lost 2, tied 1, beat tuned and third once -> (0 + 0 + 0.5 + 1 + 1) / 5
    assert rates["tiny"] == (pytest.approx(2.5 / 5), 5)
    # tuned: won 2, tied 1, lost to tiny once; "tuned" is no model here, the votes still count
    assert rates["tuned"] == (pytest.approx(2.5 / 4), 4)
    assert [e["model"] for e in result["errors"]] == ["tuned"]


def test_an_unreachable_endpoint_is_reported_and_the_others_kept(workspace, tiny_artifact):
    pytest.importorskip("workbench.engine.remote")
    remote = "openai:http://127.0.0.1:9/v1#ghost"  # port 9 (discard): nothing listens
    recipe = EvalRecipe(
        models=[remote, tiny_artifact], tasks=["knowledge-en", "identity-en"], limit=4,
        identity_name="Tiny", dtype="float32",
    )  # fmt: skip
    result = run_eval(recipe, workspace=workspace)
    mine = [e for e in result["errors"] if e["model"] == remote]
    assert {e["task"] for e in mine} == {"knowledge-en", "identity-en"}
    assert any("127.0.0.1:9" in e["error"] for e in mine)
    assert {r["model"] for r in result["metrics"]} == {tiny_artifact}
    assert all(r["n"] == 4 for r in result["metrics"])


def test_judge_compares_each_model_with_the_baseline(workspace, tiny_artifact, tmp_path):
    questions = [{"id": f"q{i}", "question": q} for i, q in enumerate(["Hi?", "Why?", "你好？"])]
    spec = tmp_path / "open.yaml"
    spec.write_text(
        "name: open\nkind: judge\nmax_new_tokens: 6\nsamples:\n"
        + "".join(f"  - {{id: {q['id']}, question: '{q['question']}'}}\n" for q in questions),
        "utf-8",
    )
    with workspace.create("model", "twin", variant="merged", parents=[tiny_artifact]) as staging:
        for item in workspace.path_of(tiny_artifact).iterdir():
            if item.name != "manifest.json":
                (staging / item.name).write_bytes(item.read_bytes())
    recipe = EvalRecipe(
        models=[tiny_artifact, "twin"], tasks=[str(spec)], judge=tiny_artifact, dtype="float32"
    )
    result = run_eval(recipe, workspace=workspace)
    assert not result["errors"]
    lines = [
        json.loads(x)
        for x in (workspace.path_of(result["artifact"]) / SAMPLES_FILE).read_text().splitlines()
    ]
    base = {x["id"]: x for x in lines if x["model"] == tiny_artifact}
    twin = {x["id"]: x for x in lines if x["model"] == "twin"}
    assert all(x["scores"]["win_rate"] == 0.5 and x["details"]["baseline"] for x in base.values())
    for sample_id, line in twin.items():
        assert line["target"] == base[sample_id]["output"]  # judged against the baseline's answer
        assert len(line["details"]["verdicts"]) == 2  # asked twice, answers swapped
        # the same weights answer the same: a fair judge can only call it even, and an
        # unparsed verdict counts as a tie too
        verdicts = line["details"]["verdicts"]
        if verdicts[0] == "A" and verdicts[1] == "B" or verdicts[0] == "B" and verdicts[1] == "A":
            assert line["scores"]["win_rate"] in (0.0, 1.0)
        else:
            assert 0.0 <= line["scores"]["win_rate"] <= 1.0
