"""A sample as the model sees it: rendered through a chat template, tokenized, with its label mask.

This is the one place that decides which tokens count in the loss. Fine-tuning builds its
batches with `render_sample`, and the dataset doctor shows the very same result, so what the
user inspects is exactly what is trained.

How the mask is found: for each assistant message k the template is rendered twice, up to the
message before it with the generation prompt, and up to message k itself. The characters
between the two are the answer as the template writes it, end-of-turn token included (the model
must learn to stop). Templates that rewrite earlier turns break this prefix property; then the
answer text is searched for in the full rendering instead, and `exact_spans` is False.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError

IGNORE_INDEX = -100  # the label value the loss skips (torch.nn.CrossEntropyLoss default)
TRAIN_ON = {
    "assistant": "every assistant answer",
    "last": "only the last assistant answer",
    "all": "every token, prompts included",
}
MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id")


@dataclass
class TokenizedSample:
    """A sample rendered and tokenized for training.

    Attributes:
        text: the exact text the template produced.
        input_ids: token ids after the cutoff.
        labels: the same ids where a token counts in the loss, IGNORE_INDEX elsewhere.
        pieces: (text of the token, counts in the loss) for every token before the cutoff.
        total_tokens: tokens before the cutoff.
        cutoff: the cutoff applied (0 = none).
        spans: character ranges of `text` that are trained.
        exact_spans: False when the template forced the fallback search (see module docstring).
    """

    text: str
    input_ids: list[int]
    labels: list[int]
    pieces: list[tuple[str, bool]] = field(default_factory=list)
    total_tokens: int = 0
    cutoff: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
    exact_spans: bool = True

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    @property
    def cut_tokens(self) -> int:
        return self.total_tokens - len(self.input_ids)

    @property
    def cut_trained_tokens(self) -> int:
        """Trained tokens lost to the cutoff."""
        return sum(1 for _, trained in self.pieces[len(self.input_ids) :] if trained)

    def summary(self) -> dict:
        return {
            "tokens": self.total_tokens,
            "kept": len(self.input_ids),
            "trained": self.trained_tokens,
            "cut": self.cut_tokens,
            "cut_trained": self.cut_trained_tokens,
            "cutoff": self.cutoff,
            "exact_spans": self.exact_spans,
        }


def render_sample(
    tokenizer: Any,
    sample: dict,
    *,
    train_on: str = "assistant",
    cutoff: int = 0,
    chat_template: str | None = None,
) -> TokenizedSample:
    """Render `sample` (canonical) through the tokenizer's chat template and mark trained tokens.

    Args:
        tokenizer: a Hugging Face tokenizer (fast: token offsets are needed).
        sample: {"messages": [...]} or {"text": ...}; a "row" key is ignored.
        train_on: a key of TRAIN_ON. Raw text always trains on every token.
        cutoff: keep at most this many tokens (0 keeps all).
        chat_template: a Jinja template to use instead of the tokenizer's own.

    Raises:
        InvalidInput: unknown train_on, a tokenizer without a chat template or offsets.
    """
    if train_on not in TRAIN_ON:
        raise InvalidInput(
            f"Unknown train_on {train_on!r}.",
            where="train_on",
            fix=f"Use one of: {', '.join(TRAIN_ON)}.",
        )
    if "text" in sample:
        text = sample["text"] + (tokenizer.eos_token or "")
        spans = [(0, len(text))]
        exact = True
    else:
        messages = [{k: m[k] for k in MESSAGE_KEYS if k in m} for m in sample["messages"]]
        text, spans, exact = _render_with_spans(tokenizer, messages, chat_template)
        if train_on == "all":
            spans = [(0, len(text))]
        elif train_on == "last":
            spans = spans[-1:]
    encoded = _encode_with_offsets(tokenizer, text)
    ids = encoded["input_ids"]
    trained = [_inside(offset, spans) for offset in encoded["offset_mapping"]]
    pieces = _pieces(text, tokenizer, ids, encoded["offset_mapping"], trained)
    kept = ids[:cutoff] if cutoff > 0 else ids
    labels = [i if t else IGNORE_INDEX for i, t in zip(kept, trained, strict=False)]
    return TokenizedSample(text, list(kept), labels, pieces, len(ids), cutoff, spans, exact)


def _render(tokenizer: Any, messages: list[dict], template: str | None, prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=prompt, chat_template=template
        )
    except ValueError as exc:  # transformers: "Cannot use chat template functions ..."
        raise InvalidInput(
            f"This tokenizer has no chat template: {exc}",
            where="chat template",
            fix="Pick a chat (instruct) model, or give a template to use.",
        ) from None
    except Exception as exc:  # a Jinja error inside the template
        raise WorkbenchError(
            f"The chat template failed on this sample: {exc}",
            where="chat template",
            fix="Check the template, or the sample's roles (some templates refuse a system "
            "message or tool calls).",
        ) from None


def _render_with_spans(
    tokenizer: Any, messages: list[dict], template: str | None
) -> tuple[str, list[tuple[int, int]], bool]:
    text = _render(tokenizer, messages, template, prompt=False)
    spans, exact, search_from = [], True, 0
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:k], template, prompt=True) if k else ""
        upto = _render(tokenizer, messages[: k + 1], template, prompt=False)
        if upto.startswith(before) and text.startswith(upto) and len(upto) > len(before):
            spans.append((len(before), len(upto)))
            search_from = len(upto)
            continue
        exact = False  # the template rewrites earlier turns: find the answer in the full text
        start = text.find(message["content"], search_from)
        if start < 0:
            continue
        end = start + len(message["content"])
        eos = tokenizer.eos_token or ""
        if eos and text.startswith(eos, end):
            end += len(eos)
        spans.append((start, end))
        search_from = end
    return text, spans, exact


def _encode_with_offsets(tokenizer: Any, text: str) -> dict:
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInput(
            "This tokenizer is a slow (Python) tokenizer; the label mask needs token offsets.",
            where="tokenizer",
            fix="Use the model's fast tokenizer (a tokenizer.json in its folder).",
        )
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)


def _inside(offset: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    start, end = offset
    middle = start if end <= start else (start + end - 1) // 2
    return any(a <= middle < b for a, b in spans)


def _pieces(
    text: str, tokenizer: Any, ids: list[int], offsets: list, trained: list[bool]
) -> list[tuple[str, bool]]:
    """The text of each token; a character split over several byte-level tokens shows once."""
    pieces, shown_until = [], 0
    for token_id, (start, end), counts in zip(ids, offsets, trained, strict=True):
        if end <= start:
            piece = tokenizer.convert_ids_to_tokens(token_id)
        else:
            piece = text[max(start, shown_until) : end]
            shown_until = max(shown_until, end)
        pieces.append((piece, counts))
    return pieces
