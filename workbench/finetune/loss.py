"""The causal-LM loss computed on trained positions only: same value, less work.

In supervised fine-tuning most positions carry no label (-100: system prompt, user turns,
template tokens), yet a causal LM's forward projects every position onto the whole vocabulary
([tokens × vocab] logits, 49,152 columns for SmolLM2) and runs the softmax there. Here the
decoder runs as usual, then only the hidden states whose next-token label counts go through
the output layer and the cross-entropy, in chunks:

    hidden = causal_lm.model(...)                     # all positions (they are keys/values)
    keep = shift_labels != -100
    loss = Σ CE(lm_head(hidden[keep]), shift_labels[keep]) / num_items_in_batch

which is what transformers computes (`ForCausalLMLoss`: logits upcast to float32, summed,
divided by `num_items_in_batch`), up to float rounding. With a plain `lm_head` and gradients
on, each chunk's logit gradient is turned into the hidden states' (and lm_head's) gradient
during the forward, as `kernels.cross_entropy` does, so no chunk's logits are kept; otherwise (a LoRA on `lm_head`, eval under no_grad) the output layer module itself runs on the
kept rows, chunk by chunk.

The split applies to the causal LMs whose forward is exactly `model → lm_head → loss`
(`SPLITTABLE`), peft-wrapped or not, DDP-wrapped or not: for the length of one call the causal
LM gets an instance-level forward, so every wrapper's own forward still runs. Anything else —
another architecture (Gemma-2's logit soft-capping, Granite's logit scaling, remote code), a
model whose forward someone already replaced (e.g. `kernels.patch_llama`), a call without
labels — takes the model's own forward. Continued pre-training trains every token, so the
split saves nothing there, but costs nothing either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

IGNORE_INDEX = -100
# Causal LMs whose forward is `hidden = self.model(...)`, `logits = self.lm_head(hidden)`,
# `loss = ForCausalLMLoss(logits, labels, ...)`, with nothing in between (transformers 5.x).
SPLITTABLE = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
CHUNK_ROWS = 512  # kept rows per output-layer chunk: [512 × 49,152] float32 logits = 96 MiB


def causal_lm_loss(model: Any, batch: Any, *, device: str, num_items: Any) -> torch.Tensor:
    """The batch's loss, `model(..., labels=batch.labels, num_items_in_batch=num_items).loss`,
    computed on the trained positions only where the model allows it (see the module docstring).

    Args:
        model: a causal LM, optionally wrapped by peft and/or DistributedDataParallel.
        batch: a `workbench.finetune.batches.Batch` (input_ids, labels, position_ids,
            attention_mask).
        device: where the model is.
        num_items: what the summed token losses are divided by (a tensor or a number), as
            transformers' `num_items_in_batch`.

    Returns:
        The scalar loss (float32), differentiable when gradients are on.
    """
    kwargs = {
        "input_ids": batch.input_ids.to(device),
        "labels": batch.labels.to(device),
        "position_ids": None if batch.position_ids is None else batch.position_ids.to(device),
        "attention_mask": None if batch.attention_mask is None else batch.attention_mask.to(device),
        "num_items_in_batch": num_items,
        "use_cache": False,
    }
    causal = splittable_causal_lm(model)
    if causal is None:
        return model(**kwargs).loss
    with _trained_positions_only(causal):
        return model(**kwargs).loss


def splittable_causal_lm(model: Any) -> nn.Module | None:
    """The causal LM inside `model` (peft, DDP unwrapped) when its loss can be split, else None."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    if type(inner).__name__ not in SPLITTABLE or "forward" in vars(inner):
        return None
    if not isinstance(getattr(inner, "model", None), nn.Module):
        return None
    return inner


@contextmanager
def _trained_positions_only(causal: nn.Module) -> Iterator[None]:
    causal.forward = _split_forward.__get__(causal)
    try:
        yield
    finally:
        del causal.forward


def _split_forward(
    self: nn.Module,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    past_key_values: Any = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    **kwargs: Any,
) -> Any:
    """The causal LM's forward with the loss on trained positions only (no logits returned)."""
    if labels is None:
        return type(self).forward(
            self,
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
    from transformers.modeling_outputs import CausalLMOutputWithPast

    num_items = kwargs.pop("num_items_in_batch", None)
    shift_labels = kwargs.pop("shift_labels", None)
    outputs = self.model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=past_key_values,
        inputs_embeds=inputs_embeds,
        use_cache=use_cache,
        **kwargs,
    )
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    loss = trained_token_loss(
        outputs.last_hidden_state, shift_labels, self.get_output_embeddings(), num_items
    )
    return CausalLMOutputWithPast(
        loss=loss,
        logits=None,
        past_key_values=outputs.past_key_values,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


def trained_token_loss(
    hidden: torch.Tensor,
    shift_labels: torch.Tensor,
    head: nn.Module,
    num_items: Any = None,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of `head(hidden)` against next-token labels, on the labelled rows only.

    Args:
        hidden: [..., hidden_size] final hidden states.
        shift_labels: [...] next-token labels, IGNORE_INDEX where no loss counts.
        head: the output layer (a plain Linear, or any module such as a LoRA-wrapped one).
        num_items: divide the summed loss by this; None: the mean over labelled rows.
        chunk_rows: labelled rows per output-layer chunk (default CHUNK_ROWS).

    Returns:
        float32 scalar, as transformers' `ForCausalLMLoss` computes it.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    keep = shift_labels.to(hidden.device) != IGNORE_INDEX
    rows = hidden[keep]
    targets = shift_labels.to(hidden.device)[keep]
    if _plain_linear(head) and torch.is_grad_enabled():
        total = _fused_sum(rows, head.weight, targets, chunk_rows)
    else:
        total = _chunked_sum(rows, head, targets, chunk_rows)
    if num_items is None:
        return total / max(len(targets), 1)
    return total / (num_items.to(total.device) if torch.is_tensor(num_items) else num_items)


def _plain_linear(head: nn.Module) -> bool:
    return type(head) is nn.Linear and head.bias is None and "forward" not in vars(head)


def _fused_sum(
    rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    device = rows.device.type
    if torch.is_autocast_enabled(device):  # eager runs lm_head in the autocast dtype
        dtype = torch.get_autocast_dtype(device)
        rows, weight = rows.to(dtype), weight.to(dtype)
    elif rows.dtype != weight.dtype:
        rows = rows.to(weight.dtype)
    return _LinearCrossEntropySum.apply(rows.contiguous(), weight, targets, chunk_rows)


class _LinearCrossEntropySum(torch.autograd.Function):
    """Σ CE(x @ W.T, y) over rows whose labels all count, in chunks of rows; each chunk's logit
    gradient (softmax − onehot) is turned into dx (and dW) during the forward, so no chunk's
    logits outlive it. `kernels.cross_entropy.FusedLinearCrossEntropyFunction` in torch only,
    without the ignored-label bookkeeping (workbench does not import the top-level `kernels`,
    which is not installed with it)."""

    @staticmethod
    def forward(ctx, x, weight, labels, chunk_rows):  # noqa: ANN001, ANN205
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, len(labels), chunk_rows):
                end = min(start + chunk_rows, len(labels))
                logits = x[start:end] @ weight.T
                total += _loss_and_grad_(logits, labels[start:end])
                if need_x:
                    torch.mm(logits, weight, out=grad_x[start:end])
                if need_w:
                    grad_w.addmm_(logits.T, x[start:end])
                del logits
        ctx.save_for_backward(grad_x, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: ANN001, ANN205
        grad_x, grad_w = ctx.saved_tensors
        grad_x = None if grad_x is None else grad_x * grad_total.to(grad_x.dtype)
        grad_w = None if grad_w is None else grad_w * grad_total.to(grad_w.dtype)
        return grad_x, grad_w, None, None


def _chunked_sum(
    rows: torch.Tensor, head: nn.Module, targets: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    total = rows.new_zeros((), dtype=torch.float32)
    for start in range(0, max(len(targets), 1), chunk_rows):  # no rows: one empty chunk, so the
        # loss still hangs on the graph (a zero gradient, as the model's own loss gives)
        logits = head(rows[start : start + chunk_rows]).float()
        total = total + nn.functional.cross_entropy(
            logits, targets[start : start + chunk_rows], reduction="sum"
        )
    return total


def _loss_and_grad_(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the rows (float32); `logits` becomes its gradient, in place:
    softmax − onehot (computed in float32, stored in the logits' dtype)."""
    h = logits.float()
    lse = torch.logsumexp(h, dim=-1)
    index = torch.arange(len(labels), device=h.device)
    loss = (lse - h[index, labels]).sum()
    h.sub_(lse[:, None]).exp_()
    h[index, labels] -= 1.0
    if h is not logits:
        logits.copy_(h)
    return loss
