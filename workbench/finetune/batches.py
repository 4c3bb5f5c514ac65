"""Training rows from a dataset: rendered with the label mask, cut to the cutoff, and packed.

Packing puts several samples into one row so that no compute goes to padding. The samples in a
row must not see each other: each restarts its `position_ids` at 0, and transformers then
builds a block-diagonal causal mask from them (when no attention mask and no cache is passed).
The first token of every packed sample gets no label, so no sample is trained to follow
another one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from workbench.data.template import IGNORE_INDEX, render_sample


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class Batch:
    """One forward pass worth of rows (torch tensors)."""

    input_ids: Any
    labels: Any
    position_ids: Any | None
    attention_mask: Any | None
    tokens: int  # real (not padding) tokens
    trained: int  # tokens that count in the loss


def build_examples(
    samples: list[dict],
    tokenizer: Any,
    *,
    objective: str,
    train_on: str,
    cutoff: int,
    chat_template: str | None = None,
) -> tuple[list[Example], dict]:
    """Render every sample; sft samples are cut at `cutoff`, cpt text is split into pieces.

    Returns the examples and counts: samples, examples, tokens, trained, truncated, empty (samples
    left with no trained token, e.g. the answer fell beyond the cutoff — they are skipped).
    """
    examples, truncated, empty = [], 0, 0
    for sample in samples:
        if objective == "cpt":
            text = sample.get("text") if "text" in sample else _joined(sample)
            rendered = render_sample(tokenizer, {"text": text}, train_on="all")
            ids = rendered.input_ids
            pieces = [ids[i : i + cutoff] for i in range(0, len(ids), cutoff)]
            truncated += len(pieces) > 1
            examples += [Example(p, list(p)) for p in pieces if len(p) > 1]
            continue
        rendered = render_sample(
            tokenizer, sample, train_on=train_on, cutoff=cutoff, chat_template=chat_template
        )
        truncated += rendered.cut_tokens > 0
        example = Example(rendered.input_ids, rendered.labels)
        if example.trained == 0:
            empty += 1
            continue
        examples.append(example)
    counts = {
        "samples": len(samples),
        "examples": len(examples),
        "tokens": sum(len(e.input_ids) for e in examples),
        "trained": sum(e.trained for e in examples),
        "truncated": truncated,
        "empty": empty,
    }
    return examples, counts


def _joined(sample: dict) -> str:
    return "\n\n".join(m["content"] for m in sample["messages"])


def pack_rows(examples: list[Example], seq_len: int) -> list[list[Example]]:
    """Group examples, in order, into rows of at most `seq_len` tokens (first fit)."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for example in examples:
        size = len(example.input_ids)
        for i, left in enumerate(room[-8:], start=max(0, len(room) - 8)):  # recent rows only
            if size <= left:
                rows[i].append(example)
                room[i] -= size
                break
        else:
            rows.append([example])
            room.append(seq_len - size)
    return rows


def make_batches(
    examples: list[Example],
    *,
    batch_size: int,
    seq_len: int,
    packing: bool,
    pad_id: int,
    seed: int,
    epoch: int,
) -> list[Batch]:
    """The batches of one epoch, in a seeded order (the same seed and epoch give the same list)."""
    order = list(examples)
    random.Random(seed * 1000 + epoch).shuffle(order)
    rows = pack_rows(order, seq_len) if packing else [[e] for e in order]
    return [
        _collate(rows[i : i + batch_size], pad_id, packed=packing)
        for i in range(0, len(rows), batch_size)
    ]


def _collate(rows: list[list[Example]], pad_id: int, *, packed: bool) -> Batch:
    import torch

    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids, labels, positions, mask = [], [], [], []
    tokens = trained = 0
    for row in rows:
        row_ids, row_labels, row_pos = [], [], []
        for example in row:
            row_ids += example.input_ids
            first_label = IGNORE_INDEX if packed and row_labels else example.labels[0]
            row_labels += [first_label, *example.labels[1:]]
            row_pos += range(len(example.input_ids))
        real = len(row_ids)
        tokens += real
        trained += sum(1 for label in row_labels[1:] if label != IGNORE_INDEX)
        pad = width - real
        last = row_pos[-1] if row_pos else -1
        ids.append(row_ids + [pad_id] * pad)
        labels.append(row_labels + [IGNORE_INDEX] * pad)
        positions.append(row_pos + list(range(last + 1, last + 1 + pad)))
        mask.append([1] * real + [0] * pad)
    return Batch(
        input_ids=torch.tensor(ids),
        labels=torch.tensor(labels),
        position_ids=torch.tensor(positions) if packed else None,
        attention_mask=None if packed else torch.tensor(mask),
        tokens=tokens,
        trained=trained,
    )
