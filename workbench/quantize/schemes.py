"""The arithmetic of weight-only quantization: int8 per output channel, int4 per group.

    q, scale = quantize_int8(w)                  # w ≈ q * scale[:, None]
    q, scales, zeros = quantize_int4(w, 128)     # w ≈ (q - 8) * scale + zero, per group of 128

int8 is symmetric (absmax / 127 per row): activations then multiply an int8 matrix directly.
int4 is asymmetric per group of input columns (min..max mapped onto 0..15), written in the form
torch's CPU int4 kernel reads: `(q - 8) * scale + zero`. A row whose length the group does not
divide is padded by `pad_columns` with copies of its last column, which leaves every group's
range unchanged; the padded columns meet zeros in the activations, so they add nothing.

Everything here is pure torch on tensors and runs on any device.
"""

from __future__ import annotations

import torch

from workbench.errors import InvalidInput

INT4_GROUPS = (32, 64, 128, 256)  # the group sizes torch's int4 kernels take


def quantize_int8(weight: torch.Tensor, group: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel, or per group of `group` input columns.

    Args:
        weight: [out, in] floating point.
        group: 0 for one scale per row; else columns per scale (must divide `in`).

    Returns:
        (q int8 [out, in], scale float32 [out] or [out, in / group]) with
        weight ≈ q * scale (broadcast over each row or group).
    """
    w = weight.detach().float()
    rows, columns = w.shape
    if group:
        check_group(columns, group, "int8 group")
    width = group or columns
    grouped = w.reshape(rows, columns // width, width)
    scale = (grouped.abs().amax(dim=2) / 127.0).clamp(min=1e-12)
    q = torch.round(grouped / scale[:, :, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(rows, columns), scale.reshape(rows) if not group else scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight that int8 `q` with per-row ([out]) or per-group ([out, groups])
    `scale` stands for."""
    if scale.dim() == 1:
        return q.float() * scale.float()[:, None]
    rows, columns = q.shape
    groups = scale.shape[1]
    w = q.float().reshape(rows, groups, columns // groups) * scale.float()[:, :, None]
    return w.reshape(rows, columns)


def check_group(columns: int, group: int, where: str = "group") -> None:
    """Raise InvalidInput unless `group` is a kernel group size that divides `columns`."""
    if group not in INT4_GROUPS:
        raise InvalidInput(
            f"Group size {group} is not supported.",
            where=where,
            fix=f"Use one of {', '.join(map(str, INT4_GROUPS))} (smaller groups: better quality, "
            "slightly bigger files).",
        )
    if columns % group:
        raise InvalidInput(
            f"Group size {group} does not divide the {columns} input columns of the weight.",
            where=where,
            fix=f"Pad the weight first (pad_columns(w, {group})), or use a group size that "
            f"divides {columns}.",
        )


def pad_columns(weight: torch.Tensor, group: int) -> torch.Tensor:
    """`weight` with its last column repeated until the group divides the column count."""
    extra = (-weight.shape[1]) % group
    if not extra:
        return weight
    return torch.cat([weight, weight[:, -1:].expand(-1, extra)], dim=1)


def quantize_int4(
    weight: torch.Tensor, group: int, clip: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of `group` input columns (round to nearest).

    Args:
        weight: [out, in] floating point; `group` must divide `in` (see pad_columns).
        group: columns per group, one of INT4_GROUPS.
        clip: shrink each group's range by this factor (1.0: none); a tensor [out, in/group]
            gives one factor per group (the activation-aware search picks them).

    Returns:
        (q uint8 in 0..15 [out, in], scales [out, groups], zeros [out, groups]) in float32, with
        weight ≈ (q - 8) * scale + zero within each group.

    Raises:
        InvalidInput: the group size is not supported or does not divide the columns.
    """
    rows, columns = weight.shape
    check_group(columns, group)
    w = weight.detach().float().reshape(rows, columns // group, group)
    if isinstance(clip, torch.Tensor):
        clip = clip.float().reshape(rows, columns // group, 1)
    low = (w.amin(dim=2, keepdim=True) * clip).clamp(max=0.0)
    high = (w.amax(dim=2, keepdim=True) * clip).clamp(min=0.0)
    scale = ((high - low) / 15.0).clamp(min=1e-10)
    q = torch.round((w - low) / scale).clamp(0, 15)
    zero = low + 8.0 * scale
    return (
        q.to(torch.uint8).reshape(rows, columns),
        scale.reshape(rows, -1),
        zero.reshape(rows, -1),
    )


def dequantize_int4(
    q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group: int
) -> torch.Tensor:
    """The float32 weight [out, in] that int4 codes `q` (0..15) with per-group scales stand for."""
    rows, columns = q.shape
    w = q.float().reshape(rows, columns // group, group) - 8.0
    w = w * scales.float().unsqueeze(2) + zeros.float().unsqueeze(2)
    return w.reshape(rows, columns)


def fake_quantize_int4(
    weight: torch.Tensor, group: int, clip: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Round trip through int4: what the model computes with after quantization."""
    return dequantize_int4(*quantize_int4(weight, group, clip), group).to(weight.dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte: column 2i in the low nibble, column 2i+1 in the high one."""
    if q.shape[1] % 2:
        raise InvalidInput(
            f"int4 packing needs an even number of columns, got {q.shape[1]}.",
            where="pack_int4",
            fix="Pad the weight to a multiple of the group size first.",
        )
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The codes (uint8 0..15, [out, 2 * packed columns]) that `pack_int4` packed."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)
