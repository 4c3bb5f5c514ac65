"""Task kinds on a tiny model: each kind's scores against answers computed independently here."""

from __future__ import annotations

import math

import pytest

from workbench.errors import InvalidInput
from workbench.evaluate.engines import EvalEngine
from workbench.evaluate.judge import parse_verdict, vote_points
from workbench.evaluate.scoring import encode_pair, score_requests
from workbench.evaluate.tasks import KINDS, RunContext, Task, check_task
from workbench.generate import GenerationSettings


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices gain nothing from threads, and on a shared CPU waiting threads cost 1000x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tmp_path_factory):
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws")).ensure()
    engine = EvalEngine(str(tiny_model_dir), ws, dtype="float32", batch_size=8)
    yield engine
    engine.close()


def naive_loglik(model, tokenizer, context, continuation):
    """One forward pass over context + continuation, summed log-probs: the textbook way."""
    import torch

    ctx, cont = encode_pair(tokenizer, context, continuation)
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits.float()
    logprobs = torch.log_softmax(logits, -1)[0]
    total = sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
    greedy = all(int(logprobs[len(ctx) - 1 + j].argmax()) == t for j, t in enumerate(cont))
    return total, greedy


REQUESTS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer:", " Lyon, a big city"),
    ("Q: 1+1?\nA: ", "2"),  # the trailing space moves to the continuation
    ("", "hello world"),  # empty context: scored after the end-of-text token
    ("你好，世界。", "书生浦语"),
]


@pytest.mark.parametrize("path", ["packed", "cached"])
def test_shared_prefix_scores_equal_one_row_per_choice(tiny, path, monkeypatch):
    from workbench.evaluate import scoring

    model, tokenizer = tiny
    refused = set() if path == "packed" else {type(model).__name__}
    monkeypatch.setattr(scoring, "_PACKING_FAILED", refused)
    fast = score_requests(model, tokenizer, REQUESTS, batch_size=3)  # several chunks
    assert refused == scoring._PACKING_FAILED  # the packed path ran (or the fallback was forced)
    for request, (total, greedy) in zip(REQUESTS, fast, strict=True):
        want_total, want_greedy = naive_loglik(model, tokenizer, *request)
        assert total == pytest.approx(want_total, abs=1e-4)
        assert greedy == want_greedy


def test_greedy_flag_is_true_for_the_models_own_continuation(tiny):
    import torch

    model, tokenizer = tiny
    context = "The capital of France is"
    ids = tokenizer.encode(context, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False)
    continuation = tokenizer.decode(out[0, len(ids) :])
    (_, greedy), (_, other) = score_requests(
        model, tokenizer, [(context, continuation), (context, " zebra crossing")]
    )
    if encode_pair(tokenizer, context, continuation)[1] == out[0, len(ids) :].tolist():
        assert greedy is True  # the tokenization round-trips: greedy decoding gives it
    assert other is False or continuation.strip() == "zebra crossing"


def mc_task(samples, **kw):
    return check_task(Task(name="mc", kind="multiple_choice", samples=samples, **kw))


def test_multiple_choice_accuracy_matches_answers_computed_here(tiny, engine):
    model, tokenizer = tiny
    questions = [
        ("What is the capital of France?", ["Paris", "Lyon", "a small village by the sea"]),
        ("Which number is even?", ["7", "14", "21", "33"]),
        ("What do bees make?", ["Honey", "Silk"]),
        ("Pick a colour.", ["red", "green", "a very long shade of blue"]),
    ]
    samples, expected_acc, expected_norm = [], [], []
    for i, (question, choices) in enumerate(questions):
        context = f"Question: {question}\nAnswer:"
        lls = [naive_loglik(model, tokenizer, context, " " + c)[0] for c in choices]
        best = max(range(len(lls)), key=lls.__getitem__)
        best_norm = max(range(len(lls)), key=lambda j: lls[j] / len(choices[j]))
        answer = best if i % 2 == 0 else (best + 1) % len(choices)  # half right, half wrong
        samples.append({"id": str(i), "question": question, "choices": choices, "answer": answer})
        expected_acc.append(float(answer == best))
        expected_norm.append(float(answer == best_norm))
    task = mc_task(samples)
    kind = KINDS["multiple_choice"]
    results = list(kind.score(task, samples, engine, RunContext(batch_size=4)))
    assert [r.scores["acc"] for r in results] == expected_acc
    assert [r.scores["acc_norm"] for r in results] == expected_norm
    summary = kind.aggregate(task, results, seed=0)
    assert summary["acc"].value == pytest.approx(0.5)
    assert summary["acc"].low <= 0.5 <= summary["acc"].high


def test_multiple_choice_prompt_shows_every_scored_choice():
    task = mc_task(
        [{"id": "1", "question": "2+2?", "choices": ["4", "5"], "answer": 0}],
        fewshot=[{"id": "f", "question": "1+1?", "choices": ["2", "3"], "answer": 0}],
    )
    prompt = KINDS["multiple_choice"].prompt(task, task.samples[0])
    assert prompt.splitlines()[0:2] == ["Question: 1+1?", "Answer: 2"]
    assert "Answer:⟦ 4⟧" in prompt and "Answer:⟦ 5⟧" in prompt
    zh = mc_task(
        [{"id": "1", "question": "一加一？", "choices": ["二", "三"], "answer": 0}], language="zh"
    )
    assert "答案：⟦二⟧" in KINDS["multiple_choice"].prompt(zh, zh.samples[0])
    letters = mc_task(
        [{"id": "1", "question": "Q?", "choices": ["x", "y"], "answer": 1}],
        choice_style="letters",
        template="{question}\n{choices}\nAnswer:",
    )
    assert KINDS["multiple_choice"].requests(letters, letters.samples[0]) == [
        ("Q?\nA. x\nB. y\nAnswer:", " A"),
        ("Q?\nA. x\nB. y\nAnswer:", " B"),
    ]


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"id": "1", "question": "q", "choices": ["a", "b"], "answer": 2}, "out of range"),
        ({"id": "1", "question": "q", "choices": ["a"], "answer": 0}, "at least two"),
        ({"id": "1", "question": "q", "choices": ["a", ""], "answer": 0}, "empty"),
        ({"id": "1", "question": "q", "choices": ["a", "b"], "answer": "x"}, "not a choice"),
    ],
)
def test_bad_multiple_choice_samples_are_named(sample, message):
    with pytest.raises(InvalidInput) as info:
        mc_task([sample])
    assert message in info.value.what and "sample '1'" in info.value.what


def test_generation_scores_the_engines_outputs(engine):
    task = check_task(
        Task(
            name="gen",
            kind="generation",
            metric="instructions",
            max_new_tokens=8,
            samples=[
                {
                    "id": "a",
                    "question": "Say hi.",
                    "checks": [{"type": "max_chars", "value": 10**6}],
                },
                {"id": "b", "question": "Say hi in JSON.", "checks": [{"type": "json"}]},
            ],
        )
    )
    kind = KINDS["generation"]
    results = list(kind.score(task, task.samples, engine, RunContext()))
    for sample, result in zip(task.samples, results, strict=True):
        again = "".join(
            engine.chat(
                [{"role": "user", "content": sample["question"]}],
                GenerationSettings(max_new_tokens=8),
            )
        ).strip()
        assert result.output == again  # greedy: the same text each time
        assert result.scores == kind.judge_output(task, sample, again).scores


def test_generation_metrics_on_known_outputs():
    kind = KINDS["generation"]
    numeric = Task(name="n", kind="generation", metric="numeric", samples=[])
    sample = {"id": "1", "question": "?", "answer": "1250"}
    assert kind.judge_output(numeric, sample, "3 boxes... Answer: 1,250").scores["accuracy"] == 1
    assert kind.judge_output(numeric, sample, "答案：1250 个").scores["accuracy"] == 1
    assert kind.judge_output(numeric, sample, "It is 125 or so").scores["accuracy"] == 0
    exact = Task(name="e", kind="generation", metric="exact", samples=[])
    paris = {"id": "1", "question": "?", "answer": ["Paris", "巴黎"]}
    assert kind.judge_output(exact, paris, "The answer is: paris.").scores["accuracy"] == 1
    assert kind.judge_output(exact, paris, "巴黎\nmore text").scores["accuracy"] == 1
    assert kind.judge_output(exact, paris, "Lyon, not Paris").scores["accuracy"] == 0


def test_perplexity_is_bits_per_byte_of_the_text(tiny, engine):
    model, tokenizer = tiny
    texts = ["The capital of France is Paris.", "量化把权重存成更少的位。"]
    task = check_task(
        Task(
            name="ppl",
            kind="perplexity",
            samples=[{"id": str(i), "text": t} for i, t in enumerate(texts)],
        )
    )
    kind = KINDS["perplexity"]
    results = list(kind.score(task, task.samples, engine, RunContext()))
    nats = [-naive_loglik(model, tokenizer, "", t)[0] for t in texts]
    sizes = [len(t.encode()) for t in texts]
    for result, n, size in zip(results, nats, sizes, strict=True):
        assert result.scores["bits_per_byte"] == pytest.approx(n / size / math.log(2), rel=1e-4)
    summary = kind.aggregate(task, results, seed=0)
    assert summary["bits_per_byte"].value == pytest.approx(
        sum(nats) / sum(sizes) / math.log(2), rel=1e-4
    )
    assert summary["byte_perplexity"].value == pytest.approx(2 ** summary["bits_per_byte"].value)


def test_identity_counts_answers_that_give_the_name(engine):
    samples = [{"id": "1", "question": "Who are you?"}, {"id": "2", "question": "你是谁？"}]
    task = Task(name="id", kind="identity", samples=samples, max_new_tokens=6)
    kind = KINDS["identity"]
    with pytest.raises(InvalidInput, match="needs the name"):
        list(kind.score(task, samples, engine, RunContext()))
    task.options = {"name": "Zyxwv-not-said", "author": "Nobody Inc"}
    results = list(kind.score(task, samples, engine, RunContext()))
    assert [r.scores["name_rate"] for r in results] == [0.0, 0.0]
    said = results[0].output.strip()[:3]
    if said:  # a name the model does say is counted
        task.options = {"name": said}
        again = list(kind.score(task, samples[:1], engine, RunContext()))
        assert again[0].scores["name_rate"] == 1.0


class ScriptedJudge:
    """A stand-in for an external judge model (e.g. a remote API): answers by a fixed rule."""

    def __init__(self, rule):
        self.rule, self.prompts = rule, []

    def chat(self, messages, settings):
        self.prompts.append(messages[-1]["content"])
        return iter([self.rule(messages[-1]["content"])])


def test_judge_swaps_positions_and_counts_wins(engine):
    samples = [{"id": "1", "question": "Capital of France?", "reference": "Paris, surely."}]
    task = check_task(Task(name="j", kind="judge", samples=samples, max_new_tokens=6))
    kind = KINDS["judge"]

    def run(rule):
        judge = ScriptedJudge(rule)
        ctx = RunContext(extra={"judge_engine": judge})
        return list(kind.score(task, samples, engine, ctx))[0], judge

    always_a, judge = run(lambda prompt: "[[A]]")
    assert always_a.scores["win_rate"] == 0.5  # position bias cancels out
    assert "Paris, surely." in judge.prompts[0] and "Paris, surely." in judge.prompts[1]
    prefers_paris, _ = run(
        lambda p: "[[A]]" if "Paris" in p.split("[Answer A]")[1].split("[Answer B]")[0] else "[[B]]"
    )
    assert prefers_paris.scores["win_rate"] == 0.0  # the tiny model does not say Paris
    babble, _ = run(lambda prompt: "I cannot decide")
    assert babble.scores["win_rate"] == 0.5 and babble.details["unparsed"] == 2


def test_verdicts_and_votes():
    assert parse_verdict("My verdict: [[B]]") == "B"
    assert parse_verdict("A is better") == "A"
    assert parse_verdict("tie") == "C"
    assert parse_verdict("no idea") is None
    vote = {"model_a": "x", "model_b": "y", "winner": "a"}
    assert (vote_points(vote, "x"), vote_points(vote, "y"), vote_points(vote, "z")) == (1, 0, None)
    assert vote_points({**vote, "winner": "tie"}, "y") == 0.5
    assert vote_points({**vote, "winner": "y"}, "y") == 1.0


def test_arena_win_rates_from_votes():
    votes = [
        {"id": "1", "model_a": "base", "model_b": "tuned", "winner": "b"},
        {"id": "2", "model_a": "tuned", "model_b": "base", "winner": "a"},
        {"id": "3", "model_a": "base", "model_b": "tuned", "winner": "tie"},
    ]
    task = check_task(Task(name="arena", kind="arena", samples=votes))
    kind = KINDS["arena"]
    tuned = list(kind.score(task, votes, None, RunContext(model="tuned")))
    base = list(kind.score(task, votes, None, RunContext(model="base")))
    assert kind.aggregate(task, tuned, 0)["win_rate"].value == pytest.approx(2.5 / 3)
    assert kind.aggregate(task, base, 0)["win_rate"].value == pytest.approx(0.5 / 3)
    with pytest.raises(InvalidInput, match="model_a"):
        check_task(Task(name="a", kind="arena", samples=[{"id": "1", "winner": "a"}]))


def test_requests_in_flight_give_the_same_answers_in_order(engine):
    from workbench.evaluate.tasks import generate_all

    prompts = ["Hi.", "你好。", "What is 2+2?", "Name a colour.", "Say yes.", "Count to three."]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    one_by_one = list(generate_all(engine, conversations, 6, window=1))
    together = list(generate_all(engine, conversations, 6, window=4))
    assert together == one_by_one and len(together) == len(prompts)
    long = [[{"role": "user", "content": "hi " * 3000}]]
    with pytest.raises(InvalidInput):  # a request that fails raises in its turn
        list(generate_all(engine, conversations[:2] + long, 6, window=4))
    stopped = list(generate_all(engine, conversations, 6, window=4, should_stop=lambda: True))
    assert stopped == one_by_one[:1]
