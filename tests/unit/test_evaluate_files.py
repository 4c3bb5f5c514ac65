"""Task files (JSONL, CSV, YAML) with good and bad input, the bundled suites, the generated sets,
and the bootstrap intervals."""

from __future__ import annotations

import json

import pytest

from workbench.errors import InvalidInput, NotFound
from workbench.evaluate import checks, generated
from workbench.evaluate.custom import load_task_file
from workbench.evaluate.stats import mean_ci, paired_difference, ratio_ci
from workbench.evaluate.suites import SUITES, bundled_task, expand, resolve_tasks, task_names
from workbench.evaluate.tasks import KINDS


def write(path, text):
    path.write_text(text, "utf-8")
    return path


def jsonl(rows):
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def test_jsonl_multiple_choice_with_letters_and_ids(tmp_path):
    path = write(
        tmp_path / "caps.jsonl",
        jsonl(
            [
                {
                    "id": "fr",
                    "question": "Capital of France?",
                    "choices": ["Lyon", "Paris"],
                    "answer": "B",
                },
                {"question": "Capital of Italy?", "choices": ["Rome", "Milan"], "answer": 0},
            ]
        ),
    )
    task = load_task_file(path)
    assert (task.name, task.kind, task.language) == ("caps", "multiple_choice", "en")
    assert [s["answer"] for s in task.samples] == [1, 0]
    assert [s["id"] for s in task.samples] == ["fr", "line 2"]


def test_csv_with_choice_columns_and_generation_kinds(tmp_path):
    mc = write(tmp_path / "mmlu.csv", "question,A,B,C,answer\n1+1?,1,2,3,B\n2+2?,4,5,6,a\n")
    task = load_task_file(mc)
    assert task.kind == "multiple_choice" and task.samples[0]["choices"] == ["1", "2", "3"]
    assert [s["answer"] for s in task.samples] == [1, 0]
    numeric = load_task_file(
        write(tmp_path / "n.jsonl", jsonl([{"question": "3*4?", "answer": 12}]))
    )
    assert (numeric.kind, numeric.metric) == ("generation", "numeric")
    words = load_task_file(write(tmp_path / "w.csv", "question,answer\n首都？,北京\n"))
    assert (words.metric, words.language) == ("exact", "zh")
    text = load_task_file(write(tmp_path / "t.jsonl", jsonl([{"text": "Some held-out text."}])))
    assert text.kind == "perplexity"
    rules = load_task_file(
        write(tmp_path / "r.jsonl", jsonl([{"question": "hi", "checks": [{"type": "lowercase"}]}]))
    )
    assert (rules.kind, rules.metric) == ("generation", "instructions")


def test_yaml_sets_template_fewshot_and_metric(tmp_path):
    write(tmp_path / "data.jsonl", jsonl([{"question": "Capital of Spain?", "answer": "Madrid"}]))
    spec = write(
        tmp_path / "task.yaml",
        "name: capitals\ndata: data.jsonl\ntemplate: 'Q: {question}'\nmetric: contains\n"
        'system: Answer briefly.\nfewshot:\n  - {question: "Capital of Italy?", answer: Rome}\n',
    )
    task = load_task_file(spec)
    assert (task.name, task.metric, task.kind) == ("capitals", "contains", "generation")
    prompt = KINDS["generation"].prompt(task, task.samples[0])
    assert prompt == (
        "<system>\nAnswer briefly.\n<user>\nQ: Capital of Italy?\n<assistant>\nRome\n"
        "<user>\nQ: Capital of Spain?"
    )


@pytest.mark.parametrize(
    ("name", "text", "message", "where"),
    [
        (
            "a.jsonl",
            '{"question": "q", "choices": ["x", "y"], "answer": 2}\n',
            "out of range",
            ":1",
        ),
        ("b.jsonl", '{"question": "q", "choices": ["x", "y"]}\n', "no `answer`", ":1"),
        (
            "c.jsonl",
            '{"question": "ok", "answer": "1"}\n{"choices": ["x"], "answer": 0}\n',
            "no `question`",
            ":2",
        ),  # noqa: E501
        ("d.jsonl", '{"foo": 1}\n', "none of the fields", ":1"),
        ("e.jsonl", '{"question": "q", "answer": 1}\n{"text": "t"}\n', "mixes kinds", ":2"),
        (
            "f.jsonl",
            '{"question": "q", "choices": ["x", "y"], "answer": "Z"}\n',
            "out of range",
            ":1",
        ),
        ("g.jsonl", "not json\n", "not valid JSON", ":1"),
        ("h.yaml", "name: x\nsampels: []\n", "Unknown field 'sampels'", "sampels"),
        ("i.yaml", "name: x\ndata: missing.jsonl\n", "does not exist", "data"),
        ("j.csv", "question,choices,answer\nq,a | b,-1\n", "not a choice index", ":2"),
        ("k.jsonl", "", "no samples", ""),
        (
            "l.jsonl",
            '{"question": "q", "checks": [{"type": "shout"}]}\n',
            "unknown check",
            "line 1",
        ),
    ],
)
def test_bad_task_files_say_where(tmp_path, name, text, message, where):
    with pytest.raises(InvalidInput) as info:
        load_task_file(write(tmp_path / name, text))
    assert message in info.value.what
    assert where in info.value.where
    assert info.value.fix


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        load_task_file(tmp_path / "nope.jsonl")
    with pytest.raises(NotFound) as info:
        resolve_tasks(["knowledge-fr"])
    assert "knowledge-en" in info.value.fix


def test_bundled_suites_are_bilingual_and_well_formed():
    names = task_names()
    for stem in ("knowledge", "reasoning", "arithmetic", "instructions", "identity", "judge"):
        assert f"{stem}-en" in names and f"{stem}-zh" in names
    choice = resolve_tasks(["choice"])
    assert sum(len(t.samples) for t in choice) >= 100  # multiple-choice items
    for task in resolve_tasks(["core", "identity", "judge-en", "judge-zh"]):
        assert task.samples, task.name
        assert KINDS[task.kind].prompt(task, task.samples[0])  # every kind shows its prompt
    zh = bundled_task("knowledge-zh")
    assert all(checks.CJK.search(s["question"]) for s in zh.samples)
    assert expand(["quick", "knowledge-en"]) == SUITES["quick"]


def test_arena_without_a_chat_store_has_no_votes():
    task = bundled_task("arena")
    assert task.kind == "arena"
    assert isinstance(task.samples, list)


def test_generated_sets_match_the_files_and_their_answers_check(tmp_path):
    written = generated.write_files(tmp_path)
    for path in written:
        assert path.read_text("utf-8") == (generated.EVAL_DIR / path.name).read_text("utf-8")
    for lang in ("en", "zh"):
        for sample in generated.arithmetic_samples(lang):
            generated.check_arithmetic(sample)
        for sample in generated.reasoning_samples(lang):
            generated.check_reasoning(sample, lang)
    bad = {**generated.arithmetic_samples("en")[0], "answer": "999999"}
    with pytest.raises(AssertionError):
        generated.check_arithmetic(bad)


def test_safe_eval_refuses_anything_but_arithmetic():
    assert generated.safe_eval("2 * (a + b)", {"a": 3, "b": 4}) == 14
    with pytest.raises(ValueError):
        generated.safe_eval("__import__('os')", {})


@pytest.mark.parametrize(
    ("output", "check", "ok"),
    [
        ("all lowercase here", {"type": "lowercase"}, True),
        ("Not lowercase", {"type": "lowercase"}, False),
        ("- a\n- b\n- c", {"type": "bullets", "value": 3}, True),
        ("1. a\n2. b", {"type": "bullets", "value": 3}, False),
        ('```json\n{"city": "Paris"}\n```', {"type": "json"}, True),
        ("{city: Paris}", {"type": "json"}, False),
        ("one two three", {"type": "max_words", "value": 3}, True),
        ("一二三四", {"type": "max_words", "value": 3}, False),
        ("北京是中国的首都", {"type": "language", "value": "zh"}, True),
        ("Beijing", {"type": "language", "value": "zh"}, False),
        ("好的，二", {"type": "no_commas"}, False),
        ("Yes, it is", {"type": "starts_with", "value": "yes"}, True),
        ("line\n\nline", {"type": "lines", "value": 2}, True),
    ],
)
def test_instruction_checks(output, check, ok):
    assert checks.run_checks(output, [check]) == [ok]


def test_bootstrap_intervals():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    estimate = mean_ci(values, seed=1)
    assert estimate.value == pytest.approx(0.7)
    assert estimate.low < estimate.value < estimate.high
    assert mean_ci(values, seed=1) == estimate  # seeded: the same interval every time
    assert mean_ci([1.0]).low == mean_ci([1.0]).high == 1.0
    wide, narrow = mean_ci(values[:10]), mean_ci(values * 4)
    assert wide.high - wide.low > narrow.high - narrow.low
    assert ratio_ci([1, 2, 3], [2, 2, 2]).value == pytest.approx(1.0)
    same = paired_difference(values, values)
    assert same.low == same.high == 0.0


def test_heldout_text_becomes_whole_passages():
    from workbench.evaluate.suites import HELDOUT_DIR, chunk_text

    text = "First doc, para one.\n\nPara two.\n---\nSecond doc.\n\n" + "x" * 30
    assert chunk_text(text, size=25) == [
        "First doc, para one.",
        "Para two.",
        "Second doc.",
        "x" * 25,
        "x" * 5,
    ]
    if not HELDOUT_DIR.is_dir():
        pytest.skip("no held-out text in this checkout")
    for lang in ("en", "zh"):
        task = bundled_task(f"heldout-{lang}")
        assert task.kind == "perplexity" and task.samples
        assert all(0 < len(s["text"]) <= 1200 and s["text"] != "---" for s in task.samples)
