"""Log-likelihood of continuations with a local Hugging Face model, the shared prefix computed once.

A multiple-choice question asks for log P(choice | question) for every choice. Scoring each
(question + choice) row on its own, as lm-evaluation-harness does, runs the question through the
model once per choice. Here each question becomes one packed row — its context, then the tokens
of every choice — and an attention mask lets each choice see the context and itself, never the
other choices (position ids restart after the context for each choice):

    row:    [ context ........ | choice 1 | choice 2 | choice 3 | choice 4 ]
    mask:   causal in the context; each choice attends to the context and to its own tokens

One forward pass over a batch of such rows scores every choice of every question in it, and the
language-model head runs only where a log-probability is read. A model whose attention does not
take such a mask falls back to running the contexts first and copying their key/value cache to
one row per choice.

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

    Requests with the same context share one packed row; `batch_size` bounds the continuations
    scored in one forward pass. Results come back in the order of `requests`.

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
    # Similar lengths side by side: less padding in each batch.
    ordered = sorted(
        groups.items(), key=lambda g: len(g[0]) + sum(len(encoded[i][1]) for i in g[1])
    )
    chunk: list[tuple[tuple[int, ...], list[int]]] = []
    rows = 0
    with torch.inference_mode():
        for context, members in ordered:
            if chunk and rows + len(members) > batch_size:
                _score(model, chunk, encoded, results, limit)
                chunk, rows = [], 0
                if should_stop is not None and should_stop():
                    return results
            chunk.append((context, members))
            rows += len(members)
        if chunk:
            _score(model, chunk, encoded, results, limit)
    return results


_PACKING_FAILED: set[str] = set()  # model classes whose attention refused a packed mask


def _score(
    model: Any,
    chunk: list[tuple[tuple[int, ...], list[int]]],
    encoded: list[tuple[list[int], list[int]]],
    results: list[tuple[float, bool]],
    limit: int,
) -> None:
    kind = type(model).__name__
    if kind not in _PACKING_FAILED:
        try:
            _score_packed(model, chunk, encoded, results, limit)
            return
        except (TypeError, ValueError, RuntimeError):
            _PACKING_FAILED.add(kind)
    _score_chunk(model, chunk, encoded, results, limit)


def _score_packed(
    model: Any,
    chunk: list[tuple[tuple[int, ...], list[int]]],
    encoded: list[tuple[list[int], list[int]]],
    results: list[tuple[float, bool]],
    limit: int,
) -> None:
    """One forward pass: a packed row per question (context, then every choice)."""
    import torch

    device = model.device
    rows, layouts = [], []
    for context, members in chunk:
        conts = [encoded[i][1] for i in members]
        room = max(1, limit - sum(len(c) - 1 for c in conts))
        ctx = list(context)[-room:]  # like lm-eval, a too long context loses its left side
        ids, positions, spans = list(ctx), list(range(len(ctx))), []
        for i, cont in zip(members, conts, strict=True):
            spans.append((i, len(ids), cont))
            ids += cont[:-1]  # a choice's last token is predicted, never read
            positions += range(len(ctx), len(ctx) + len(cont) - 1)
        rows.append((ids, positions))
        layouts.append((len(ctx), spans))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
    for g, ((ids, positions), (ctx_len, spans)) in enumerate(zip(rows, layouts, strict=True)):
        input_ids[g, : len(ids)] = torch.tensor(ids)
        position_ids[g, : len(ids)] = torch.tensor(positions)
        mask[g, 0, :ctx_len, :ctx_len] = torch.ones(ctx_len, ctx_len, dtype=torch.bool).tril()
        for _, begin, cont in spans:
            k = len(cont) - 1
            if k:
                mask[g, 0, begin : begin + k, :ctx_len] = True
                mask[g, 0, begin : begin + k, begin : begin + k] = torch.ones(
                    k, k, dtype=torch.bool
                ).tril()
        pad = torch.arange(len(ids), width)
        mask[g, 0, pad, pad] = True  # padding sees itself only (no row may be fully masked)
    first = min(ctx_len for ctx_len, _ in layouts) - 1
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=position_ids.to(device),
        logits_to_keep=torch.arange(first, width, device=device),
    ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for g, (ctx_len, spans) in enumerate(layouts):
        for request, begin, cont in spans:
            sources = torch.tensor(
                [ctx_len - 1, *range(begin, begin + len(cont) - 1)], device=device
            )
            picked = logprobs[g, sources - first]
            targets = torch.tensor(cont, device=device)
            total = float(picked.gather(-1, targets[:, None]).sum())
            results[request] = (total, bool((picked.argmax(-1) == targets).all()))


def _score_chunk(
    model: Any,
    chunk: list[tuple[tuple[int, ...], list[int]]],
    encoded: list[tuple[list[int], list[int]]],
    results: list[tuple[float, bool]],
    limit: int,
) -> None:
    """The fallback: contexts first (left-padded, keeping their cache), then the choices."""
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
