"""Pure-torch references: what each Triton kernel must compute. No Triton here.

Tests compare the kernels with these; `patch_llama` uses them where the kernels cannot run.
Every reference computes in float32 inside and returns the dtype the matching Llama module
(or the eager loss) returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Llama's RMSNorm: `weight * (x * rsqrt(mean(x²) + eps)).to(x.dtype)` (stats in float32)."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """`silu(gate) * up`, computed in float32 and returned in the inputs' dtype."""
    return (F.silu(gate.float()) * up.float()).to(gate.dtype)


def linear_cross_entropy_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """The eager loss: `cross_entropy((x @ weight.T).float(), labels)`, mean over the tokens
    whose label is not `ignore_index` (or their sum with reduction="sum")."""
    logits = (x @ weight.T).float()
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction=reduction)


def cross_entropy_rows_reference(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, scale: float
) -> torch.Tensor:
    """Loss per row of `logits` times `scale` (0 where ignored); overwrites `logits` with the
    gradient of the scaled summed loss, `(softmax - onehot) * scale`. The chunk step of the fused
    linear + cross-entropy, in torch: what its Triton row kernel does."""
    valid = labels != ignore_index
    safe = torch.where(valid, labels, 0)
    h = logits.float()
    lse = torch.logsumexp(h, dim=-1)
    loss = (lse - h.gather(1, safe[:, None]).squeeze(1)) * scale * valid
    grad = torch.exp(h - lse[:, None])
    grad[torch.arange(len(safe), device=grad.device), safe] -= 1.0
    grad *= (valid * scale)[:, None]
    logits.copy_(grad)
    return loss


def dequantize_int8_reference(qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """float32 [out, in] from int8 codes and scales per row ([out]) or per group ([out, groups])."""
    if scales.dim() == 1:
        return qweight.float() * scales.float()[:, None]
    rows, columns = qweight.shape
    groups = scales.shape[1]
    w = qweight.float().reshape(rows, groups, columns // groups) * scales.float()[:, :, None]
    return w.reshape(rows, columns)


def dequantize_int4_reference(
    qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, in_features: int
) -> torch.Tensor:
    """float32 [out, in_features] from workbench.quantize's int4 format: `qweight` uint8
    [out, padded_in / 2] with column 2i in the low nibble and 2i+1 in the high one, and
    `w = (q - 8) * scale + zero` per group of padded_in / groups columns."""
    rows = qweight.shape[0]
    q = torch.stack([qweight & 0x0F, qweight >> 4], dim=2).reshape(rows, -1).float()
    groups = scales.shape[1]
    w = (q.reshape(rows, groups, -1) - 8.0) * scales.float()[:, :, None] + zeros.float()[:, :, None]
    return w.reshape(rows, -1)[:, :in_features]


def int8_linear_reference(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`x @ dequant(W).T + bias` in float32, returned in x's dtype."""
    y = x.float() @ dequantize_int8_reference(qweight, scales).T
    y = y if bias is None else y + bias.float()
    return y.to(x.dtype)


def int4_linear_reference(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x @ dequant(W).T + bias` in float32, returned in x's dtype; W has x.shape[-1] columns."""
    w = dequantize_int4_reference(qweight, scales, zeros, x.shape[-1])
    y = x.float() @ w.T
    y = y if bias is None else y + bias.float()
    return y.to(x.dtype)
