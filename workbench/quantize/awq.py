"""Activation-aware int4 (AWQ style): scale the weights that meet large activations before
rounding, and clip each group's range where that lowers the layer's output error.

Rounding hurts most where an input channel carries large activations: the error of its weights
is multiplied by them. For each set of linear layers that read the same input (q/k/v after the
attention norm, gate/up after the MLP norm, down after up), the search tries per-channel scales
s = mean|x|^alpha for alpha in a grid, quantizes W * s, and keeps the alpha whose output on the
calibration activations is closest to the float layer. alpha = 0 is plain round-to-nearest, so
the search never does worse than it on the calibration data. The inverse scale is folded into
the operation before (a norm's weight, or the rows of up_proj), so the float model computes
exactly the same function; only the rounding changes. Then, per group of every int4 layer, the
clip search shrinks the range (1.0 down to 0.75) when that lowers the output error.

Calibration activations are captured in one forward pass of the float model: scaling is an
identity in float, so the inputs a layer sees do not depend on the layers before it being scaled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.errors import InvalidInput
from workbench.quantize.schemes import pad_columns, quantize_int4

ALPHAS = tuple(i / 10 for i in range(11))
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


@dataclass(frozen=True)
class ScaleGroup:
    """Linear layers (names inside a decoder layer) that read what `prev` produces."""

    prev: str
    linears: tuple[str, ...]


# model_type -> the scale groups of one decoder layer. Architectures not here are refused with
# int4-rtn as the alternative.
LAYOUTS: dict[str, tuple[ScaleGroup, ...]] = {
    name: (
        ScaleGroup("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",)),
        ScaleGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
        ScaleGroup("mlp.up_proj", ("mlp.down_proj",)),
    )
    for name in ("llama", "mistral", "qwen2", "qwen3")
}


def check_supported(model_type: str) -> tuple[ScaleGroup, ...]:
    """The layout of `model_type`, or InvalidInput naming the supported ones and the alternative."""
    if model_type not in LAYOUTS:
        raise InvalidInput(
            f"Activation-aware int4 does not know the layer layout of {model_type!r} models.",
            where="method int4-awq",
            fix=f"Use int4-rtn (works for any model) or int8; int4-awq supports "
            f"{', '.join(sorted(LAYOUTS))}.",
        )
    return LAYOUTS[model_type]


def fake_quantize(weight: torch.Tensor, group: int, clip: Any = 1.0) -> torch.Tensor:
    """int4 round trip of `weight` [out, in], padding the columns to the group as the layer does."""
    from workbench.quantize.schemes import dequantize_int4

    padded = pad_columns(weight.float(), group)
    q, scales, zeros = quantize_int4(padded, group, clip)
    return dequantize_int4(q, scales, zeros, group)[:, : weight.shape[1]]


def calibration_blocks(
    tokenizer: Any, samples: list[dict], *, blocks: int = 16, length: int = 256
) -> torch.Tensor:
    """Token blocks [n, length] cut from the samples (chats through the chat template).

    Raises:
        InvalidInput: the samples give fewer than one block of tokens.
    """
    texts = []
    for sample in samples:
        if "messages" in sample and getattr(tokenizer, "chat_template", None):
            texts.append(tokenizer.apply_chat_template(sample["messages"], tokenize=False))
        elif "messages" in sample:
            texts.append("\n".join(m.get("content") or "" for m in sample["messages"]))
        else:
            texts.append(str(sample.get("text", "")))
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= blocks * length:
            break
    count = min(blocks, len(ids) // length)
    if count < 1:
        raise InvalidInput(
            f"The calibration data holds {len(ids)} tokens; at least {length} are needed.",
            where="calibration data",
            fix="Use a bigger dataset for --calib (a few hundred rows), or leave it out to use "
            "the bundled instruction set.",
        )
    return torch.tensor(ids[: count * length]).reshape(count, length)


class _Capture:
    """Forward pre-hook: sums |x| per input channel and keeps `per_call` evenly spaced rows of x
    from each call (one calibration block a call)."""

    def __init__(self, per_call: int) -> None:
        self.per_call, self.abs_sum, self.count, self.rows = per_call, None, 0, []

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
        total = x.abs().sum(0)
        self.abs_sum = total if self.abs_sum is None else self.abs_sum + total
        self.count += x.shape[0]
        picks = torch.linspace(0, x.shape[0] - 1, min(self.per_call, x.shape[0])).long()
        self.rows.append(x[picks].clone())

    def mean_abs(self) -> torch.Tensor:
        return self.abs_sum / max(self.count, 1)

    def sample(self) -> torch.Tensor:
        return torch.cat(self.rows)


def _output_error(x: torch.Tensor, weights: list[torch.Tensor], quantized: list[torch.Tensor]):
    return sum(
        float(((x @ (w - q).t()) ** 2).sum()) for w, q in zip(weights, quantized, strict=True)
    )


def search_scale(
    x: torch.Tensor, mean_abs: torch.Tensor, weights: list[torch.Tensor], group: int
) -> tuple[torch.Tensor, float, float]:
    """The per-channel scale (and its alpha) that makes int4 rounding cost the least output error.

    Returns:
        (scale [in], best alpha, error at alpha 0 / best error) — the last says how much it helped.
    """
    best = (torch.ones_like(mean_abs), 0.0, float("inf"))
    baseline = None
    for alpha in ALPHAS:
        s = mean_abs.clamp(min=1e-6) ** alpha
        s = s / (s.max() * s.min()).sqrt()
        quantized = [fake_quantize(w * s, group) / s for w in weights]
        error = _output_error(x, weights, quantized)
        baseline = error if baseline is None else baseline
        if error < best[2]:
            best = (s, alpha, error)
    return best[0], best[1], (baseline / best[2]) if best[2] > 0 else 1.0


def search_clip(weight: torch.Tensor, x: torch.Tensor, group: int) -> torch.Tensor:
    """Per (row, group) range factor from CLIP_RATIOS with the least output error on `x`."""
    padded_w = pad_columns(weight.float(), group)
    padded_x = torch.nn.functional.pad(x, (0, padded_w.shape[1] - x.shape[1]))
    rows, groups = padded_w.shape[0], padded_w.shape[1] // group
    xg = padded_x.reshape(x.shape[0], groups, group)
    wg = padded_w.reshape(rows, groups, group)
    best_error = torch.full((rows, groups), float("inf"))
    best_ratio = torch.ones(rows, groups)
    for ratio in CLIP_RATIOS:
        q = fake_quantize(padded_w, group, ratio).reshape(rows, groups, group)
        # error of each (row, group)'s share of the output, summed over the sample tokens
        error = (torch.einsum("tgj,rgj->trg", xg, wg - q) ** 2).sum(0)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
    return best_ratio


def _fold(prev: nn.Module, scale: torch.Tensor) -> None:
    """Divide the output of `prev` (a norm or a linear) by `scale`, channel by channel."""
    with torch.no_grad():
        if isinstance(prev, nn.Linear):
            prev.weight.div_(scale[:, None].to(prev.weight.dtype))
            if prev.bias is not None:
                prev.bias.div_(scale.to(prev.bias.dtype))
        else:  # RMSNorm / LayerNorm: weight (and bias) are per channel
            prev.weight.div_(scale.to(prev.weight.dtype))
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(scale.to(prev.bias.dtype))


def awq_search(
    model: nn.Module,
    tokenizer: Any,
    samples: list[dict],
    *,
    group: int = 128,
    blocks: int = 16,
    block_length: int = 256,
    search_tokens: int = 512,
    progress: Callable[..., None] = lambda **_: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict:
    """Scale (in place, function-preserving) and pick clip ranges for the model's int4 layers.

    Args:
        model: a float32 causal LM of a supported layout (see LAYOUTS).
        samples: canonical dataset samples ({"messages": ...} or {"text": ...}).

    Returns:
        {"clips": {linear name: [out, groups] factors}, "alphas": {group name: alpha},
         "calibration_tokens": int, "error_reduction": mean error(rtn) / error(awq)};
        {} when should_stop() asked to stop.
    """
    layout = check_supported(model.config.model_type)
    layers = model.model.layers
    ids = calibration_blocks(tokenizer, samples, blocks=blocks, length=block_length)
    per_block = max(1, search_tokens // len(ids))
    captures: dict[str, _Capture] = {}
    hooks = []
    for i, layer in enumerate(layers):
        for sg in layout:
            for name in sg.linears:
                capture = _Capture(per_block)
                captures[f"model.layers.{i}.{name}"] = capture
                hooks.append(layer.get_submodule(name).register_forward_pre_hook(capture))
    try:
        with torch.inference_mode():
            for b in range(len(ids)):
                if should_stop():
                    return {}
                model(input_ids=ids[b : b + 1])
                progress(message=f"calibration pass: block {b + 1} of {len(ids)}")
    finally:
        for hook in hooks:
            hook.remove()

    clips, alphas, gains = {}, {}, []
    for i, layer in enumerate(layers):
        if should_stop():
            return {}
        for sg in layout:
            mods = [layer.get_submodule(n) for n in sg.linears]
            prev = layer.get_submodule(sg.prev)
            first = captures[f"model.layers.{i}.{sg.linears[0]}"]
            x = first.sample()
            can_fold = isinstance(prev, nn.Linear) and prev.out_features == mods[0].in_features
            if not isinstance(prev, nn.Linear) or can_fold:
                weights = [m.weight.detach().float() for m in mods]
                scale, alpha, gain = search_scale(x, first.mean_abs(), weights, group)
                _fold(prev, scale)
                with torch.no_grad():
                    for m in mods:
                        m.weight.mul_(scale[None, :].to(m.weight.dtype))
                x = x / scale
                alphas[f"model.layers.{i}.{sg.prev}"] = alpha
                gains.append(gain)
            for name, m in zip(sg.linears, mods, strict=True):
                clips[f"model.layers.{i}.{name}"] = search_clip(m.weight.detach(), x, group)
        progress(step=i + 1, total=len(layers), message=f"activation-aware search: layer {i + 1}")
    return {
        "clips": clips,
        "alphas": alphas,
        "calibration_tokens": int(ids.numel()),
        "error_reduction": round(sum(gains) / len(gains), 3) if gains else 1.0,
    }
