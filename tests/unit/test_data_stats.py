"""Dataset statistics a user reads in the Data studio: token lengths (exact and estimated),
repeats, languages, turns and roles, and the charts drawn from them."""

from __future__ import annotations

import json
import random

import numpy as np
import plotly.graph_objects as go
import pytest

from workbench.data import charts
from workbench.data.stats import (
    compute,
    dataset_stats,
    exact_duplicates,
    language_of,
    near_duplicates,
    render_for_length,
    row_metrics,
    sample_text,
    token_lengths,
)

PROSE = (
    "the model learns from data and every batch moves the weights a little toward lower loss "
    "while the learning rate decides how far each step goes on the way to a useful assistant"
)
WORDS = PROSE.split()
HAN = "数据模型训练学习率批量文本答案问题代码函数结果测试内存速度你好世界语言大小新旧"
SENTENCE = (
    "Fine-tuning adapts a pretrained language model to new data: it keeps what the model "
    "already knows and shifts its answers toward the style and facts of the examples given."
)
SENTENCE_ZH = (
    "微调是在预训练语言模型的基础上，用新的数据继续训练，使模型保留已有的知识，"
    "同时让回答更接近示例中的风格和事实，这样就能得到一个更有用的助手。"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def chat(*contents: str, system: str = "", row: int = 1, **extra) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for i, content in enumerate(contents):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    messages[-1].update(extra)
    return {"messages": messages, "row": row}


def synthetic(n: int, seed: int = 0) -> list[dict]:
    """Conversations of English, Chinese or mixed text with numbers, 1-3 turns."""
    rng = random.Random(seed)

    def text() -> str:
        kind = rng.random()
        parts = []
        for _ in range(rng.randint(1, 12)):
            if kind < 0.5 or (kind > 0.8 and rng.random() < 0.5):
                parts.append(" ".join(rng.choices(WORDS, k=rng.randint(3, 15))) + ".")
            else:
                parts.append("".join(rng.choices(HAN, k=rng.randint(4, 20))) + "。")
            if rng.random() < 0.1:
                parts.append(str(rng.randint(0, 99999)))
        return " ".join(parts)

    samples = []
    for row in range(1, n + 1):
        contents = [text() for _ in range(2 * rng.randint(1, 3))]
        samples.append(chat(*contents, system="Be brief." if rng.random() < 0.3 else "", row=row))
    return samples


def direct_count(tokenizer, sample: dict) -> int:
    text = sample.get("text")
    if text is None:
        text = tokenizer.apply_chat_template(sample["messages"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- token lengths -------------------------------------------------------------------------


def test_exact_lengths_are_the_rendered_template_tokenized(tokenizer):
    samples = [
        chat("What is the capital of France?", "Paris.", system="You are helpful."),
        chat("你好", "你好，世界。", "2 + 2?", "4"),
        {"text": "def add(a, b):\n    return a + b\n", "row": 3},
        chat("Hi", "Hello!", weight=0.0),  # extra keys are not part of what the model sees
    ]
    lengths = token_lengths(samples, tokenizer)
    stripped = [{"role": m["role"], "content": m["content"]} for m in samples[3]["messages"]]
    assert render_for_length(tokenizer, samples[3]) == tokenizer.apply_chat_template(
        stripped, tokenize=False
    )
    assert lengths.exact and lengths.sampled == 4 and lengths.relative_error == 0
    assert lengths.values.tolist() == [direct_count(tokenizer, s) for s in samples]


def test_estimated_lengths_stay_close_and_say_they_are_estimates(tokenizer):
    samples = synthetic(3000)
    true = token_lengths(samples, tokenizer).values
    estimate = token_lengths(samples, tokenizer, exact_limit=1000, sample_size=600)
    assert not estimate.exact and estimate.sampled == 600
    error = np.abs(estimate.values - true) / true
    assert np.median(error) < 0.05  # stated in the UI as the median error
    assert np.percentile(error, 95) < 0.15
    assert abs(estimate.relative_error - np.median(error)) < 0.03  # the reported error is honest
    assert (estimate.values == true).sum() >= 600  # the tokenized rows keep their exact count
    again = token_lengths(samples, tokenizer, exact_limit=1000, sample_size=600)
    assert np.array_equal(again.values, estimate.values)  # seeded: the same every time


def test_over_cutoff_counts_rows_longer_than_the_cutoff(tokenizer):
    samples = synthetic(200, seed=1)
    exact = token_lengths(samples, tokenizer).values
    cutoff = int(np.median(exact))
    stats = dataset_stats(samples, tokenizer=tokenizer, cutoff=cutoff)
    tokens = stats["tokens"]
    assert tokens["exact"] and tokens["cutoff"] == cutoff
    assert tokens["over_cutoff"] == int((exact > cutoff).sum()) > 0
    assert tokens["max"] == exact.max() and tokens["min"] == exact.min()
    assert sum(tokens["histogram"]["counts"]) == 200
    assert tokens["histogram"]["edges"][-1] > exact.max()


# --- repeats -------------------------------------------------------------------------------


def test_a_sentence_with_a_word_or_two_changed_is_a_near_repeat():
    texts = [
        SENTENCE,
        "Quantization stores weights in fewer bits so that models run faster on small machines.",
        SENTENCE.replace("new data", "fresh data"),
        SENTENCE.replace("style", "tone").replace("facts", "details"),
        "A completely different remark about rivers, mountains and the weather in the spring.",
        SENTENCE_ZH,
        SENTENCE_ZH.replace("风格", "语气"),
        "今天天气很好，我们去公园散步，看到很多人在放风筝，孩子们在草地上奔跑，非常热闹。",
    ]
    assert near_duplicates(texts).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        True,
        False,
    ]


def test_exact_repeats_ignore_case_spacing_and_punctuation_and_keep_the_first():
    texts = [
        "Hello, world! How are you?",
        "hello   world how are you",
        "HELLO WORLD. HOW ARE YOU!",
        "Hello world, how were you?",
        "你好，世界！",
        "你好 世界",
    ]
    assert exact_duplicates(texts).tolist() == [False, True, True, False, False, True]
    assert not near_duplicates(texts)[[1, 2, 5]].any()  # an exact repeat is not also "near"


def test_repeats_are_found_across_scan_chunks():
    rng = random.Random(2)
    texts = [" ".join(rng.choices(WORDS, k=40)) + f" {i}" for i in range(3000)]  # ~700k chars
    texts.append("network " + texts[5].split(" ", 1)[1])  # its first word changed
    texts.append(texts[10].upper())
    near, exact = near_duplicates(texts), exact_duplicates(texts)
    assert near[-2] and exact[-1]
    assert not near[:-2].any() and not exact[:-1].any()


# --- languages, turns, roles ---------------------------------------------------------------


def test_language_by_share_of_chinese_characters():
    texts = [
        "这是一个中文句子。",
        "This is an English sentence.",
        "我们用 LoRA fine-tuning 训练模型",
        "1234 !!! ???",
        "Mostly English, with two 中文 characters",
        "",
    ]
    assert language_of(texts) == ["zh", "en", "mixed", "other", "en", "other"]


def test_turns_roles_kind_and_lengths_on_hand_built_samples():
    samples = [
        chat("q1", "a1", system="sys", row=2),
        chat("q1", "a1", "q2", "a2", row=3),
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {"role": "assistant", "content": "It is sunny."},
            ],
            "row": 5,
        },
    ]
    stats = dataset_stats(samples)
    assert stats["rows"] == 3 and stats["kind"] == "chat"
    assert stats["turns"] == {"1": 2, "2": 1}
    assert stats["roles"] == {
        "system": {"messages": 1, "chars": 3},
        "user": {"messages": 4, "chars": 14},
        "assistant": {"messages": 5, "chars": 18},
        "tool": {"messages": 1, "chars": 5},
    }
    assert sample_text(samples[1]) == "q1\na1\nq2\na2"
    chars = [len(sample_text(s)) for s in samples]
    assert row_metrics(samples)["chars"].tolist() == chars
    assert stats["chars"]["max"] == max(chars) and stats["chars"]["min"] == min(chars)
    assert stats["tokens"] is None
    mixed = dataset_stats([*samples, {"text": "raw", "row": 9}])
    assert mixed["kind"] == "mixed" and mixed["turns"] == {"1": 2, "2": 1}


def test_stats_are_json_and_metrics_name_the_users_rows(tokenizer):
    samples = synthetic(50, seed=3)
    samples.append({**samples[0], "row": 51})
    samples.append({**samples[1], "row": 52})
    stats, metrics = compute(samples, tokenizer, cutoff=64)
    assert json.loads(json.dumps(stats)) == stats
    assert stats["duplicates"]["exact"] == 2 and stats["duplicates"]["exact_rows"] == [51, 52]
    assert list(metrics.columns) == ["row", "turns", "chars", "tokens", "language", "duplicate"]
    assert metrics["row"].tolist() == list(range(1, 53))
    assert metrics["duplicate"].tolist()[-2:] == ["exact", "exact"]
    assert metrics["tokens"].sum() > 0 and stats["rows"] == len(metrics) == 52
    plain = row_metrics(samples)
    assert plain["tokens"].isna().all()
    assert plain.drop(columns="tokens").equals(metrics.drop(columns="tokens"))
    assert sum(stats["language"].values()) == 52


def test_empty_dataset():
    stats = dataset_stats([])
    assert stats["rows"] == 0 and stats["duplicates"]["exact"] == 0
    assert json.dumps(stats)


# --- charts --------------------------------------------------------------------------------


def test_charts_draw_what_the_stats_say(tokenizer):
    samples = synthetic(120, seed=4)
    samples += [{**samples[0], "row": 121}]
    stats = dataset_stats(samples, tokenizer=tokenizer, cutoff=100)

    hist = charts.token_histogram(stats)
    assert isinstance(hist, go.Figure)
    assert sum(hist.data[0].y) == stats["rows"]
    assert "exact" in hist.layout.title.text
    assert [shape.x0 for shape in hist.layout.shapes] == [100]

    turns = charts.turns_bar(stats)
    assert dict(zip(turns.data[0].x, turns.data[0].y, strict=True)) == stats["turns"]

    roles = charts.roles_bar(stats)
    assert list(roles.data[0].y) == [stats["roles"][r]["messages"] for r in roles.data[0].x]
    assert list(roles.data[1].y) == [stats["roles"][r]["chars"] for r in roles.data[1].x]

    pie = charts.language_pie(stats, labels={"zh": "中文", "language_title": "语言"})
    assert sum(pie.data[0].values) == stats["rows"] and pie.layout.title.text == "语言"
    assert "中文" in pie.data[0].labels

    dupes = charts.duplicates_bar(stats)
    assert list(dupes.data[0].y) == [stats["rows"] - 1, 1, stats["duplicates"]["near"]]
    for fig in (hist, turns, roles, pie, dupes):
        assert fig.layout.title.text


def test_histogram_title_says_estimated_and_handles_no_tokenizer():
    stats = {
        "rows": 3,
        "tokens": {
            "exact": False,
            "sampled": 4000,
            "relative_error": 0.012,
            "cutoff": 5000,
            "over_cutoff": 0,
            "histogram": {"edges": [0, 10, 20, 30], "counts": [1, 1, 1]},
        },
    }
    fig = charts.token_histogram(stats)
    assert "estimated from 4000" in fig.layout.title.text and "1.2%" in fig.layout.title.text
    assert not fig.layout.shapes  # a cutoff far beyond every bar is a note, not a line
    assert "5000" in fig.layout.annotations[0].text
    empty = charts.token_histogram({"rows": 3, "tokens": None})
    assert not empty.data and empty.layout.title.text
