"""The label mask: exactly the assistant answers (and their end-of-turn token) count in the loss."""

from __future__ import annotations

import pytest

from workbench.data.template import IGNORE_INDEX, render_sample
from workbench.errors import InvalidInput

SINGLE = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
}
MULTI = {
    "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好，世界。"},
    ],
    "row": 7,
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def trained_text(result) -> str:
    return "".join(piece for piece, trained in result.pieces if trained)


def test_single_turn_trains_on_the_answer_and_its_end_token_only(tokenizer):
    result = render_sample(tokenizer, SINGLE)
    assert result.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    assert trained_text(result) == "Paris.<|im_end|>\n"
    assert result.exact_spans
    # labels equal the ids exactly where the mask says so
    for token, label, (_, trained) in zip(
        result.input_ids, result.labels, result.pieces, strict=True
    ):
        assert label == (token if trained else IGNORE_INDEX)
    assert "".join(p for p, _ in result.pieces) == result.text


def test_multi_turn_trains_every_answer_or_only_the_last(tokenizer):
    every = render_sample(tokenizer, MULTI)
    assert (
        trained_text(every) == "The capital of France is Paris.<|im_end|>\n你好，世界。<|im_end|>\n"
    )
    last = render_sample(tokenizer, MULTI, train_on="last")
    assert trained_text(last) == "你好，世界。<|im_end|>\n"
    everything = render_sample(tokenizer, MULTI, train_on="all")
    assert everything.trained_tokens == everything.total_tokens


def test_ids_match_a_plain_tokenization_of_the_rendered_text(tokenizer):
    result = render_sample(tokenizer, MULTI)
    assert result.input_ids == tokenizer(result.text, add_special_tokens=False)["input_ids"]


def test_cutoff_keeps_the_start_and_counts_what_is_cut(tokenizer):
    full = render_sample(tokenizer, MULTI)
    cut = render_sample(tokenizer, MULTI, cutoff=full.total_tokens - 5)
    assert cut.input_ids == full.input_ids[: full.total_tokens - 5]
    assert cut.cut_tokens == 5
    assert cut.cut_trained_tokens == 5  # the end of the last answer is what goes
    assert cut.trained_tokens == full.trained_tokens - 5
    assert cut.summary()["cut"] == 5


def test_raw_text_trains_on_every_token_plus_end_of_text(tokenizer):
    result = render_sample(tokenizer, {"text": "Fine-tuning adapts a model."})
    assert result.text.endswith(tokenizer.eos_token)
    assert result.trained_tokens == result.total_tokens


def test_a_template_that_rewrites_earlier_turns_falls_back_to_searching(tokenizer):
    # Renders only the last assistant answer in full when asked to continue (like templates that
    # drop earlier reasoning): prefixes no longer line up.
    template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "<|im_start|>assistant\n...<|im_end|>\n{% else %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    result = render_sample(tokenizer, MULTI, chat_template=template)
    assert not result.exact_spans
    assert (
        trained_text(result) == "你好，世界。<|im_end|>\n"
    )  # the hidden answer is not in the text


def test_bad_choices_are_clear(tokenizer):
    with pytest.raises(InvalidInput, match="train_on"):
        render_sample(tokenizer, SINGLE, train_on="users")


def test_a_template_that_marks_the_final_turn_still_finds_earlier_answers(tokenizer):
    # Adds a marker after the last message only, so rendering up to an earlier answer is not a
    # prefix of the whole conversation: the answers are found by searching instead.
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% if loop.last %}<|endoftext|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    result = render_sample(tokenizer, MULTI, chat_template=template)
    assert not result.exact_spans
    assert trained_text(result).startswith("The capital of France is Paris.<|im_end|>")
    assert "你好，世界。" in trained_text(result)
    assert "What is the capital" not in trained_text(result)
