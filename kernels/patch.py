"""Swap the kernels into a Llama-family model: `patch_llama(model, training=...)`.

Recognised by module class names (so InternLM2's remote code needs no import here):
  RMSNorm  LlamaRMSNorm, Qwen2RMSNorm, MistralRMSNorm, InternLM2RMSNorm      -> rms_norm
  MLP      LlamaMLP, Qwen2MLP, MistralMLP (gate/up/down_proj),
           InternLM2MLP (w1 gate, w3 up, w2 down), with a SiLU activation    -> swiglu
  loss     LlamaForCausalLM (also SmolLM2), Qwen2ForCausalLM, MistralForCausalLM,
           InternLM2ForCausalLM: in training with labels, the fused linear + cross-entropy
           (no [tokens, vocab] logits; the output then has logits=None)
  int8/int4 workbench.quantize's Int8Linear / Int4Linear                      -> dequant GEMM/GEMV

Each patched module gets an instance-level `forward` (the class and the state_dict are
untouched; `PatchReport.undo()` removes them). The choice of code happens per call: CUDA tensors
go to the Triton kernels, anything else to the pure-torch references (the loss keeps its
chunking on CPU, so it saves memory there too). The quantized layers keep their own forward on
CPU, where torch's weight-only CPU kernels beat a dequantizing reference. `backend="triton"`
forces the kernels (on CPU they then run under Triton's interpreter, for tests);
`backend="reference"` forces the references.
"""

from __future__ import annotations

import importlib.util
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kernels import references

RMS_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm", "MistralRMSNorm", "InternLM2RMSNorm")
# MLP class -> (gate, up, down) attribute names
MLPS = {
    "LlamaMLP": ("gate_proj", "up_proj", "down_proj"),
    "Qwen2MLP": ("gate_proj", "up_proj", "down_proj"),
    "MistralMLP": ("gate_proj", "up_proj", "down_proj"),
    "InternLM2MLP": ("w1", "w3", "w2"),
}
SILU = ("SiLU", "SiLUActivation")
CAUSAL_LMS = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "InternLM2ForCausalLM")
QUANTIZED = ("Int8Linear", "Int4Linear")
BACKENDS = ("auto", "triton", "reference")


@dataclass
class PatchReport:
    """What `patch_llama` changed (module names) and what it left alone, with the reason."""

    backend: str
    training: bool
    rms_norms: list[str] = field(default_factory=list)
    mlps: list[str] = field(default_factory=list)
    loss: str | None = None
    quantized: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    _modules: list[nn.Module] = field(default_factory=list, repr=False)

    @property
    def patched(self) -> int:
        return len(self.rms_norms) + len(self.mlps) + len(self.quantized) + bool(self.loss)

    def undo(self) -> None:
        """Give every patched module its class's forward back."""
        for module in self._modules:
            module.__dict__.pop("forward", None)
        self._modules.clear()


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _chooser(backend: str) -> Callable[[torch.Tensor], bool]:
    """Per call: whether the Triton kernel runs on tensor `t`."""
    if backend == "triton":
        return lambda t: True
    if backend == "reference":
        return lambda t: False
    installed = _triton_installed()
    return lambda t: installed and t.is_cuda


def _set_forward(module: nn.Module, forward: Callable[..., Any], report: PatchReport) -> None:
    module.forward = types.MethodType(forward, module)
    report._modules.append(module)


def _rms_norm_forward(use_triton: Callable[[torch.Tensor], bool]) -> Callable[..., Any]:
    def forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        eps = getattr(self, "variance_epsilon", getattr(self, "eps", 1e-6))
        if use_triton(hidden_states):
            from kernels.rms_norm import rms_norm

            return rms_norm(hidden_states, self.weight, eps)
        return references.rms_norm_reference(hidden_states, self.weight, eps)

    return forward


def _mlp_forward(
    names: tuple[str, str, str], use_triton: Callable[[torch.Tensor], bool]
) -> Callable[..., Any]:
    gate_name, up_name, down_name = names

    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        gate, up = getattr(self, gate_name)(x), getattr(self, up_name)(x)
        if use_triton(gate) and gate.dtype == up.dtype:
            from kernels.swiglu import swiglu

            return getattr(self, down_name)(swiglu(gate, up))
        return getattr(self, down_name)(references.swiglu_reference(gate, up))

    return forward


def _quantized_forward(use_triton: Callable[[torch.Tensor], bool]) -> Callable[..., Any]:
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not use_triton(x):
            return type(self).forward(self, x)  # torch's CPU weight-only kernels
        from kernels.dequant_matmul import int4_linear, int8_linear

        if hasattr(self, "zeros"):
            return int4_linear(x, self.qweight, self.scales, self.zeros, self.bias)
        return int8_linear(x, self.qweight, self.scales, self.bias)

    return forward


def _causal_lm_forward(use_triton: Callable[[torch.Tensor], bool]) -> Callable[..., Any]:
    def forward(self: nn.Module, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any):
        if labels is None or not self.training:
            return type(self).forward(self, *args, labels=labels, **kwargs)
        if args:  # positional input_ids, attention_mask, ... as the class's forward names them
            names = [p for p in inspect.signature(type(self).forward).parameters if p != "self"]
            kwargs.update(zip(names, args, strict=False))
        from transformers.modeling_outputs import CausalLMOutputWithPast

        from kernels.cross_entropy import cross_entropy_rows_triton, fused_linear_cross_entropy

        num_items = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)
        kwargs.pop("logits_to_keep", None)
        if self.__class__.__name__ == "InternLM2ForCausalLM":  # its model takes no extra kwargs
            kwargs = {k: v for k, v in kwargs.items() if k in _INTERNLM2_MODEL_ARGS}
        outputs = self.model(**kwargs)
        hidden = outputs[0]
        if shift_labels is None:
            shift_labels = nn.functional.pad(labels, (0, 1), value=references.IGNORE_INDEX)[..., 1:]
        weight = self.get_output_embeddings().weight
        device = hidden.device.type
        if torch.is_autocast_enabled(device):  # eager runs lm_head in the autocast dtype
            dtype = torch.get_autocast_dtype(device)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        elif hidden.dtype != weight.dtype:
            hidden = hidden.to(weight.dtype)
        triton_rows = use_triton(hidden)  # on CPU only when forced (the interpreter)
        rows_fn = (
            cross_entropy_rows_triton if triton_rows else references.cross_entropy_rows_reference
        )
        loss = fused_linear_cross_entropy(
            hidden,
            weight,
            shift_labels.to(hidden.device),
            reduction="mean" if num_items is None else "sum",
            rows_fn=rows_fn,
        )
        if num_items is not None:
            loss = loss / (num_items.to(loss.device) if torch.is_tensor(num_items) else num_items)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=None,
            past_key_values=getattr(outputs, "past_key_values", None),
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )

    return forward


_INTERNLM2_MODEL_ARGS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "past_key_values",
    "inputs_embeds",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
)


def patch_llama(model: nn.Module, *, training: bool, backend: str = "auto") -> PatchReport:
    """Put the fused kernels into a Llama-family model (Llama, SmolLM2, Qwen2, InternLM2).

    Args:
        model: a transformers causal LM, optionally wrapped by peft (patched in place).
        training: True also swaps the loss for the fused linear + cross-entropy (used when the
            model is in train mode and gets labels); False patches only what inference runs.
        backend: "auto" (Triton for CUDA tensors, references otherwise), "triton" or
            "reference".

    Returns:
        A PatchReport listing the patched modules; `report.undo()` reverts them.
    """
    if backend not in BACKENDS:
        raise ValueError(f"patch_llama: backend must be one of {BACKENDS}, got {backend!r}.")
    report = PatchReport(backend=backend, training=training)
    if backend == "triton" and not _triton_installed():
        raise ImportError("patch_llama: backend='triton' needs `pip install 'triton>=3.4'`.")
    if backend == "auto" and not _triton_installed():
        report.skipped["triton"] = "not installed: the references run on every device"
    use_triton = _chooser(backend)
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind in RMS_NORMS:
            _set_forward(module, _rms_norm_forward(use_triton), report)
            report.rms_norms.append(name)
        elif kind in MLPS:
            act = getattr(module, "act_fn", None)
            if type(act).__name__ not in SILU:
                report.skipped[name] = f"activation {type(act).__name__} is not SiLU"
                continue
            _set_forward(module, _mlp_forward(MLPS[kind], use_triton), report)
            report.mlps.append(name)
        elif kind in QUANTIZED:
            _set_forward(module, _quantized_forward(use_triton), report)
            report.quantized.append(name)
        elif kind in CAUSAL_LMS and training:
            head = module.get_output_embeddings()
            if not isinstance(head, nn.Linear) or head.bias is not None:
                report.skipped[name] = f"output layer {type(head).__name__} is not a plain Linear"
                continue
            _set_forward(module, _causal_lm_forward(use_triton), report)
            report.loss = name or type(module).__name__
    return report
