"""Log-likelihood of continuations with a local Hugging Face model, the shared prefix computed once.

A multiple-choice question asks for log P(choice | question) for every choice. Scoring each
(question + choice) row on its own, as lm-evaluation-harness does, runs the question through the
model once per choice. Here the contexts of a batch of questions run once (left-padded, keeping
their key/value cache), the cache is copied to one row per choice, and only the choice tokens run
a second time:

    forward 1: contexts   [G questions x context length]      -> cache, logits of the last token
    forward 2: choices    [R choices  x longest choice - 1]   with the cache of their question

Tokenization follows lm-evaluation-harness so that the numbers agree with it: trailing
whitespace of the context moves to the continuation, the continuation's tokens are those of
`encode(context + continuation)` after the context's tokens (the tokenizer's own special tokens,
such as a BOS, included), and an empty context is replaced by the BOS token (the end-of-text
token when there is no BOS). Too long inputs lose tokens on the left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from workbench.errors import InvalidInput

Request = tuple[str, str]


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation), split the way lm-evaluation-harness splits them."""
    stripped = context.rstrip()
    if len(stripped) != len(context):  # "Answer: " + "Paris" -> "Answer:" + " Paris"
        continuation = context[len(stripped) :] + continuation
        context = stripped
    if not context:
        prefix = tokenizer.bos_token_id
        if prefix is None:
            prefix = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        return [prefix], tokenizer.encode(continuation)
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


def score_requests(
    model: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    *,
    batch_size: int = 32,
    should_stop: Callable[[], bool] | None = None,
) -> list[tuple[float, bool]]:
    """(sum of log-probabilities of the continuation, whether greedy decoding gives it) per request.

    Requests with the same context share one pass over it; `batch_size` bounds the continuation
    rows of one second pass. Results come back in the order of `requests`.

    Raises:
        InvalidInput: a continuation that is empty after tokenization.
    """
    import torch

    limit = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    for i, (_, cont) in enumerate(encoded):
        if not cont:
            raise InvalidInput(
                f"Request {i} has an empty continuation: there is nothing to score.",
                where=f"log-likelihood request {i}: {requests[i]!r}",
                fix="Give every choice some text.",
            )
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        groups.setdefault(tuple(ctx), []).append(i)
    results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    chunk: list[tuple[tuple[int, ...], list[int]]] = []
    rows = 0
    with torch.inference_mode():
        for context, members in groups.items():
            if chunk and rows + len(members) > batch_size:
                _score_chunk(model, chunk, encoded, results, limit)
                chunk, rows = [], 0
                if should_stop is not None and should_stop():
                    return results
            chunk.append((context, members))
            rows += len(members)
        if chunk:
            _score_chunk(model, chunk, encoded, results, limit)
    return results


def _score_chunk(
    model: Any,
    chunk: list[tuple[tuple[int, ...], list[int]]],
    encoded: list[tuple[list[int], list[int]]],
    results: list[tuple[float, bool]],
    limit: int,
) -> None:
    import torch

    device = model.device
    pad = int(getattr(model.config, "pad_token_id", None) or 0)
    longest_cont = max(len(encoded[i][1]) for _, members in chunk for i in members)
    # Keep room for the continuation: like lm-eval, the context loses tokens on its left.
    room = max(1, limit - longest_cont + 1)
    contexts = [list(context)[-room:] for context, _ in chunk]
    width = max(len(c) for c in contexts)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for g, context in enumerate(contexts):
        ids[g, width - len(context) :] = torch.tensor(context)
        mask[g, width - len(context) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        logits_to_keep=1,
    )
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [G, V]

    row_group = [g for g, (_, members) in enumerate(chunk) for _ in members]
    row_request = [i for _, members in chunk for i in members]
    conts = [encoded[i][1] for i in row_request]
    rest_width = max(len(c) for c in conts) - 1
    rest = None
    if rest_width > 0:
        index = torch.tensor(row_group, device=device)
        cache = out.past_key_values
        cache.batch_select_indices(index)
        rest_ids = torch.full((len(conts), rest_width), pad, dtype=torch.long)
        rest_mask = torch.zeros((len(conts), rest_width), dtype=torch.long)
        for r, cont in enumerate(conts):
            rest_ids[r, : len(cont) - 1] = torch.tensor(cont[:-1])
            rest_mask[r, : len(cont) - 1] = 1
        context_lengths = mask.sum(-1)[row_group]  # [R]
        rest_positions = context_lengths[:, None] + torch.arange(rest_width)[None, :]
        full_mask = torch.cat([mask[row_group], rest_mask], dim=1)
        rest = model(
            input_ids=rest_ids.to(device),
            attention_mask=full_mask.to(device),
            position_ids=rest_positions.to(device),
            past_key_values=cache,
            use_cache=True,
        ).logits.float()
        rest = torch.log_softmax(rest, dim=-1)  # [R, rest_width, V]
    for r, (request, group, cont) in enumerate(zip(row_request, row_group, conts, strict=True)):
        total = float(first[group, cont[0]])
        greedy = int(first[group].argmax()) == cont[0]
        if len(cont) > 1:
            targets = torch.tensor(cont[1:], device=device)
            picked = rest[r, : len(cont) - 1].gather(-1, targets[:, None]).squeeze(-1)
            total += float(picked.sum())
            greedy = greedy and bool((rest[r, : len(cont) - 1].argmax(-1) == targets).all())
        results[request] = (total, greedy)
