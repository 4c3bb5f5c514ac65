"""A lean forward pass for Llama-family models (Llama, Mistral, Qwen2, SmolLM), for fast decoding.

Hugging Face's modules spend most of a CPU decode step in Python overhead (30 layers of ~15
small ops each, cache objects, hooks). This module keeps the same maths with fewer, bigger ops:
q/k/v and gate/up fused into one matmul each, a key/value cache preallocated once for a fixed
number of slots (one slot per concurrent request), and weights that may be packed to int8 or
int4 for the CPU's weight-only kernels (memory bandwidth sets the speed of batch-1 decoding).

Weights come from a loaded `transformers` model; rotary frequencies are taken from the model's
own rotary module, so scaled variants (Llama 3, linear, dynamic NTK at load) match it.
`supports(model)` says whether a model can run here; other models use `HFRunner` (runners.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from workbench import cpu_gemv
from workbench.engine.batching import TokenScores

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
WEIGHT_FORMATS = ("model", "bfloat16", "int8", "int4")
INT4_GROUP = 32
# Up to this many rows (decoding; the engine's default number of slots) packed layers use
# Workbench's AVX2 kernels, whose float32 activations make each row's result independent of what
# it is batched with; prompts (more rows) go through torch's kernels (bench/RESULTS.md).
AVX2_MAX_ROWS = 8
REFINE_TOP = 64  # candidates a packed head passes to the dense head


def quantized_kind(module: Any) -> str:
    """ "linear" for a plain nn.Linear, "int8" / "int4" for Workbench's quantized layers
    (quantize/modules.py), "" for anything else (bitsandbytes, other replacements)."""
    from workbench.quantize.modules import Int4Linear, Int8Linear

    if type(module) is torch.nn.Linear:
        return "linear"
    return {Int8Linear: "int8", Int4Linear: "int4"}.get(type(module), "")


def _stackable(modules: list[Any]) -> bool:
    """Whether these layers (q/k/v, or gate/up) can be stacked into one matrix."""
    kinds = {quantized_kind(m) for m in modules}
    if kinds == {"linear"}:
        return True
    return len(kinds) == 1 and "" not in kinds and len({m.group for m in modules}) == 1


def supports(model: Any) -> str:
    """ "" when the lean path can run `model`, else the reason it cannot."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type or 'unknown'!r} (the lean path knows {SUPPORTED_TYPES})"
    if type(model).__name__.startswith("Peft"):
        return "a LoRA adapter on top (merge it first)"
    if getattr(config, "quantization_config", None):
        return "a quantized checkpoint (its own layers run it)"
    if next(model.parameters()).device.type != "cpu" and is_quantized(model):
        return "quantized layers off the CPU (their kernels here are CPU kernels)"
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers:
        return "no decoder layers where a Llama-family model keeps them"
    first = layers[0]
    projections = [
        getattr(first.self_attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    projections += [getattr(first.mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    kinds = {quantized_kind(p) for p in projections}
    if "" in kinds:
        return "layers that are neither linear nor Workbench-quantized (bitsandbytes or other)"
    if kinds != {"linear"}:
        if not cpu_gemv.available():
            return f"quantized layers, whose kernels need AVX2 ({cpu_gemv.why_unavailable()})"
        for layer in layers:
            attn, mlp = layer.self_attn, layer.mlp
            if not (
                _stackable([attn.q_proj, attn.k_proj, attn.v_proj])
                and _stackable([mlp.gate_proj, mlp.up_proj])
            ):
                return "quantized q/k/v or gate/up layers of different formats"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(model, "hf_device_map", None) and len(set(model.hf_device_map.values())) > 1:
        return "weights spread over several devices"
    return ""


class PackedLinear:
    """y = x @ W.T (+ b) with W stored as the model had it, in bf16, int8 or int4 (group 32).

    int8 is per output channel, symmetric; int4 is per group of 32 inputs with a scale and a
    minimum (the layout of torch's `_weight_int4pack_mm_for_cpu`). Weights whose values already
    lie on such a grid (a model dequantized from a GGUF Q4 file) lose nothing in int4.

    Packed weights are held twice where the AVX2 kernels build (workbench/cpu_gemv.py): in their
    layout for decoding (up to AVX2_MAX_ROWS rows, float32 activations; faster than torch's
    kernels on AVX2, bench/RESULTS.md) and in torch's for prompts and batches.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fmt: str, act: torch.dtype):
        self.fmt = fmt
        self.act = act
        self.bias = None if bias is None else bias.detach().to(act)
        self.out_features = weight.shape[0]
        weight = weight.detach()
        self.fast: tuple | None = None  # (cpu_gemv function, its weights) for a few rows
        if fmt == "int8":
            w = weight.float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
            self.weight = torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8)
            self.scale = scale.to(cpu_gemv.TORCH_KERNEL_DTYPE)
            if cpu_gemv.available():
                self.fast = (cpu_gemv.int8_matmul, (self.weight, scale))
        elif fmt == "int4":
            codes, scale, low = _int4_codes(weight.float())
            self.weight, scales_and_zeros = _pack_int4(codes, scale, low)
            self.scale = scales_and_zeros.to(cpu_gemv.TORCH_KERNEL_DTYPE)
            if cpu_gemv.available():
                self.fast = (cpu_gemv.int4_matmul, (cpu_gemv.pack_int4(codes), scale, low))
        elif fmt == "bfloat16":
            # Outside the fused decoder (prompts, scoring) bf16 weights take bf16 activations
            # whatever the number of rows, so a score does not depend on its batch; the fused
            # decoder widens them to float32 (cpu_gemv.bf16_matmul's kernel).
            self.weight = weight.to(torch.bfloat16)
        else:
            self.weight = weight.to(act)

    @classmethod
    def from_quantized(cls, modules: list[Any], act: torch.dtype) -> PackedLinear:
        """The layers of a Workbench-quantized model (quantize/modules.py), all int8 or all int4
        with one group size, stacked by rows, their stored codes used as they are: int4 groups
        become runs of 32 inputs (each with its group's scale and low, so nothing changes) and
        the padding of a group size that does not divide the inputs is dropped.

        Raises:
            ValueError: the modules mix formats or group sizes (`quantized_kind` says which).
        """
        kinds = {quantized_kind(m) for m in modules}
        if len(kinds) != 1 or not kinds <= {"int8", "int4"}:
            raise ValueError(f"cannot stack layers of kinds {sorted(kinds)}")
        if len({m.group for m in modules}) != 1:
            raise ValueError("cannot stack layers of different group sizes")
        self = cls.__new__(cls)
        self.fmt, self.act = kinds.pop(), act
        self.weight = None  # no copy for torch's kernels: the AVX2 kernels take every row count
        biases = [m.bias for m in modules]
        self.bias = None if biases[0] is None else torch.cat(biases).detach().to(act)
        self.out_features = sum(m.out_features for m in modules)
        k = modules[0].in_features
        if self.fmt == "int8":
            q = torch.cat([m.qweight for m in modules]).contiguous()
            scale = torch.cat([m.scales.float() for m in modules]).contiguous()
            self.fast = (cpu_gemv.int8_matmul, (q, scale))
        else:
            runs = modules[0].group // cpu_gemv.RUN

            def per_run(t: torch.Tensor) -> torch.Tensor:
                return t.float().repeat_interleave(runs, dim=1)[:, : k // cpu_gemv.RUN]

            codes = torch.cat([m.qweight[:, : k // 2] for m in modules]).contiguous()
            scale = torch.cat([per_run(m.scales) for m in modules]).contiguous()
            low = torch.cat([per_run(m.zeros) - 8 * per_run(m.scales) for m in modules])
            self.fast = (cpu_gemv.int4_matmul, (codes, scale, low.contiguous()))
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast is not None and (
            x.numel() <= AVX2_MAX_ROWS * x.shape[-1] or self.weight is None
        ):
            function, weights = self.fast
            y = function(x, *weights).to(self.act)
        elif self.fmt == "int8":
            y = cpu_gemv.torch_kernel_matmul(
                x, self.out_features, torch.ops.aten._weight_int8pack_mm, self.weight, self.scale
            )
        elif self.fmt == "int4":
            y = cpu_gemv.torch_kernel_matmul(
                x,
                self.out_features,
                torch.ops.aten._weight_int4pack_mm_for_cpu,
                self.weight,
                INT4_GROUP,
                self.scale,
            )
        else:
            y = F.linear(x.to(self.weight.dtype), self.weight).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def stack_tensors(self) -> list[torch.Tensor] | None:
        """[weight, scale, low, bias] for the fused decoder (cpu_gemv.lean_stack), empty
        tensors where there is none; None when this matrix's format cannot go there."""
        none = torch.empty(0)
        bias = none if self.bias is None else self.bias.float().contiguous()
        if self.fast is not None and self.fmt == "int8":
            q, scale = self.fast[1]
            return [q, scale.float().contiguous(), none, bias]
        if self.fast is not None and self.fmt == "int4":
            packed, scale, low = self.fast[1]
            return [packed, scale, low, bias]
        if self.fmt == "bfloat16" or (self.fmt == "model" and self.weight.dtype == torch.float32):
            return [self.weight.contiguous(), none, none, bias]
        return None

    def nbytes(self) -> int:
        """Bytes one decode step reads (one of the two copies of packed weights)."""
        if self.weight is None:
            return sum(t.nbytes for t in self.fast[1])
        extra = getattr(self, "scale", None)
        return self.weight.nbytes + (extra.nbytes if extra is not None else 0)


def _int4_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 with groups of INT4_GROUP inputs: codes [N, K] in 0..15, and the scale
    and minimum [N, K / INT4_GROUP] of each group (w = code * scale + low)."""
    n, k = w.shape
    groups = w.reshape(n, k // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15.0).clamp_min(1e-12)
    codes = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
    return codes.reshape(n, k).to(torch.uint8), scale.contiguous(), low.contiguous()


def _pack_int4(
    codes: torch.Tensor, scale: torch.Tensor, low: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes, scales and minimums in the layout of torch's `_weight_int4pack_mm_for_cpu`."""
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
    # The kernel computes (q - 8) * scale + zero, so zero = low + 8 * scale.
    scales_and_zeros = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous()
    return packed, scales_and_zeros


def int4_is_lossless(weight: torch.Tensor, tolerance: float = 1e-6) -> bool:
    """Whether int4 (group 32) holds this weight exactly: true for weights that came from a
    4-bit GGUF file, which the embedded model did."""
    n, k = weight.shape
    if k % INT4_GROUP or weight.device.type != "cpu":
        return False
    groups = weight.detach().float().reshape(n, k // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((high - low) / 15.0).clamp_min(1e-12)
    back = torch.round((groups - low) / scale).clamp(0, 15) * scale + low
    return bool((back - groups).abs().max() <= tolerance * max(1.0, groups.abs().max().item()))


def is_quantized(model: Any) -> bool:
    """Whether any layer of `model` is one of Workbench's int8/int4 layers."""
    return any(quantized_kind(m) in ("int8", "int4") for m in model.modules())


def _packed(modules: list[Any], fmt: str, act: torch.dtype) -> PackedLinear:
    """One matrix for `modules` stacked by rows: their own quantized codes where the model is
    Workbench-quantized, else their float weights packed to `fmt`."""
    if quantized_kind(modules[0]) != "linear":
        return PackedLinear.from_quantized(modules, act)
    weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
    biases = [m.bias for m in modules]
    bias = torch.cat(biases) if all(b is not None for b in biases) else None
    return PackedLinear(weight, bias, fmt, act)


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: PackedLinear
    o: PackedLinear
    post_norm: torch.Tensor
    gate_up: PackedLinear
    down: PackedLinear


class LeanModel:
    """The decoder of a Llama-family model with a preallocated key/value cache.

    Args:
        model: a loaded transformers model that `supports` accepts.
        slots: how many sequences the cache holds at once (concurrent requests).
        max_len: the most tokens (prompt and answer) a slot holds.
        weights: "model" (as loaded), "bfloat16", "int8" or "int4" (CPU only for the last two)
            for the layers' matmuls. A Workbench-quantized model runs its own int8/int4 codes
            ("model" only).
        head: the format of the output head ("" = the same as the layers).
        fused: run the decoder layers in one C++ call (cpu_gemv.lean_stack) where the weights
            allow it (float32 activations on a CPU with the AVX2 kernels); False keeps the
            torch operations (the reference the fused path is tested against).
    """

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        max_len: int,
        weights: str = "model",
        head: str = "",
        fused: bool = True,
    ) -> None:
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
        config = model.config
        inner = model.model
        self.device = next(model.parameters()).device
        param_dtype = next(model.parameters()).dtype
        if weights != "model" and is_quantized(model):
            raise ValueError(
                f"the model is already quantized; weights={weights!r} needs a float one"
            )
        # Activations stay in the model's dtype, which on a CPU without native bf16 is the fast
        # one for norms, rotary and attention; packed layers convert their inputs where torch's
        # kernels want bf16 (cpu_gemv.TORCH_KERNEL_DTYPE). bf16 weights take bf16 activations,
        # except in the fused decoder, whose bf16 kernel widens them to float32.
        self.act = param_dtype
        if weights == "bfloat16":
            cpu_fused = fused and self.device.type == "cpu" and cpu_gemv.available()
            self.act = torch.float32 if cpu_fused else torch.bfloat16
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.vocab = config.vocab_size
        self.slots, self.max_len = slots, max_len
        layer_fmt = weights
        head_fmt = head or weights
        self.weights = weights

        with torch.no_grad():
            self.embed = inner.embed_tokens.weight.detach().to(self.act)
            self.layers = [self._layer(layer, layer_fmt) for layer in inner.layers]
            self.norm = inner.norm.weight.detach().to(self.act)
            head = model.get_output_embeddings()
            if quantized_kind(head) in ("int8", "int4"):  # the quantized model's own head
                self.head = PackedLinear.from_quantized([head], self.act)
                head_fmt = "model"
            else:
                self.head = PackedLinear(
                    head.weight, getattr(head, "bias", None), head_fmt, self.act
                )
            # A packed head ranks the vocabulary fast; its best candidates are then scored again
            # with the head's own weights (tied to the embedding: already in memory), so greedy
            # choices and the top of the distribution are as exact as the dense head's.
            self.head_dense = None
            if head_fmt in ("int8", "int4"):
                tied = head.weight.data_ptr() == inner.embed_tokens.weight.data_ptr()
                self.head_dense = self.embed if tied else head.weight.detach().to(self.act)
            rotary = inner.rotary_emb
            inv_freq = rotary.inv_freq.detach().float().to(self.device)
            positions = torch.arange(max_len, device=self.device, dtype=torch.float32)
            freqs = torch.outer(positions, inv_freq)
            angles = torch.cat([freqs, freqs], dim=-1)
            scaling = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)
            self.cos = (angles.cos() * scaling).to(self.act)
            self.sin = (angles.sin() * scaling).to(self.act)
        shape = (len(self.layers), slots, self.kv_heads, max_len, self.head_dim)
        self.cache_k = torch.zeros(shape, dtype=self.act, device=self.device)
        self.cache_v = torch.zeros(shape, dtype=self.act, device=self.device)
        self.stack = self._fused_stack() if fused else None
        self.torch_prompts = self._torch_prompts()

    def _torch_prompts(self) -> bool:
        """Whether prompts (more than AVX2_MAX_ROWS rows) are faster through torch's kernels than
        through the fused decoder: on a CPU with native bf16, torch's int8/int4/bf16 kernels are
        GEMMs with bf16 dot products (measured: a 300-token prompt in int4 438 ms against 885;
        bench/RESULTS.md); without it they emulate bf16 and the fused decoder wins."""
        from workbench.hardware import cpu_supports_bf16

        matrices = [
            m for layer in self.layers for m in (layer.qkv, layer.o, layer.gate_up, layer.down)
        ]
        return (
            self.device.type == "cpu"
            and self.weights in ("int8", "int4", "bfloat16")
            and all(m.weight is not None for m in matrices)
            and cpu_supports_bf16()
        )

    def _fused_stack(self) -> Any:
        """The C++ decoder (csrc/lean_stack.cpp) over these layers' weights, or None where it
        cannot run them (another device or activation dtype, bf16 weights, no AVX2 kernels)."""
        if self.device.type != "cpu" or self.act != torch.float32 or not cpu_gemv.available():
            return None
        layers = []
        for layer in self.layers:
            matrices = [m.stack_tensors() for m in (layer.qkv, layer.o, layer.gate_up, layer.down)]
            if any(m is None for m in matrices):
                return None
            norms = [layer.input_norm.contiguous(), layer.post_norm.contiguous()]
            layers.append(norms + [t for m in matrices for t in m])
        head = self.head.stack_tensors()
        if head is None:
            return None
        head = [self.norm.contiguous(), *head]
        return cpu_gemv.lean_stack(layers, head, self.heads, self.kv_heads, self.head_dim, self.eps)

    def _run_stack(
        self, x: torch.Tensor, slots: list[int], positions: list[int], head_rows: int = 0
    ) -> torch.Tensor:
        """Logits (float32, refined as `logits` does) of the last `head_rows` rows (0: all) of
        x [M, C], rows of cache `slots` at `positions`, from the fused decoder."""
        normed, logits = self.stack.forward(
            x.contiguous(),
            torch.tensor(slots, dtype=torch.long),
            torch.tensor(positions, dtype=torch.long),
            self.cache_k,
            self.cache_v,
            self.cos,
            self.sin,
            head_rows,
        )
        return self._refine(normed[len(normed) - len(logits) :], logits)

    def _layer(self, layer: Any, fmt: str) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        return _Layer(
            input_norm=layer.input_layernorm.weight.detach().to(self.act),
            qkv=_packed([attn.q_proj, attn.k_proj, attn.v_proj], fmt, self.act),
            o=_packed([attn.o_proj], fmt, self.act),
            post_norm=layer.post_attention_layernorm.weight.detach().to(self.act),
            gate_up=_packed([mlp.gate_proj, mlp.up_proj], fmt, self.act),
            down=_packed([mlp.down_proj], fmt, self.act),
        )

    def weight_bytes(self) -> int:
        """Bytes of weights read per decode step (what bounds batch-1 speed)."""
        total = self.head.nbytes()
        for layer in self.layers:
            total += sum(p.nbytes() for p in (layer.qkv, layer.o, layer.gate_up, layer.down))
        return total

    # --- the maths ---------------------------------------------------------------------------

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.weights != "model":  # one fused op; its rounding differs a little from HF's
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        # As transformers' LlamaRMSNorm: in fp32, then back to the activation dtype.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [B,T,1,D] of `positions` [B,T], computed once per forward pass."""
        return self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)

    def _qkv(self, layer: _Layer, x: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor]):
        """q [B,H,T,D], k and v [B,KV,T,D] for hidden states x [B,T,C] at the positions whose
        rotary `angles` are given; q and k are rotated together, in one pass."""
        b, t, _ = x.shape
        qkv = layer.qkv(self._rms(x, layer.input_norm))
        qkv = qkv.view(b, t, self.heads + 2 * self.kv_heads, self.head_dim)
        rotated = self._rope(qkv[:, :, : self.heads + self.kv_heads], *angles)
        q = rotated[:, :, : self.heads].transpose(1, 2)
        k = rotated[:, :, self.heads :].transpose(1, 2)
        v = qkv[:, :, self.heads + self.kv_heads :].transpose(1, 2)
        return q, k, v

    def _finish(self, layer: _Layer, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = attn.shape
        x = x + layer.o(attn.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
        gate, up = layer.gate_up(self._rms(x, layer.post_norm)).chunk(2, dim=-1)
        return x + layer.down(F.silu(gate) * up)

    def _attend_one(self, q, keys, values, blocked) -> torch.Tensor:
        """Attention of one query per row [S,H,1,D] over cached keys and values [S,KV,L,D]:
        query heads grouped by the key/value head they share, so nothing is copied (for one
        query this is cheaper than the fused kernel with a mask). `blocked` masks the keys past
        each row's position (None: every row is at the last one)."""
        s, _, _, d = q.shape
        grouped = q.reshape(s, self.kv_heads, self.heads // self.kv_heads, d)
        scores = torch.matmul(grouped, keys.transpose(-1, -2)).float() * d**-0.5
        if blocked is not None:
            scores = scores.masked_fill(blocked, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs.to(values.dtype), values)  # [S, KV, G, D]
        return out.reshape(s, self.heads, 1, d)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output logits (float32) for final hidden states [N, C] (already normed); with a
        packed head, the REFINE_TOP best are recomputed with the dense weights."""
        return self._refine(hidden, self.head(hidden).float())

    def _refine(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """`logits` of a packed head with their REFINE_TOP best recomputed densely."""
        if self.head_dense is None:
            return logits
        top = logits.topk(min(REFINE_TOP, logits.shape[-1]), dim=-1).indices
        rows = self.head_dense[top].float()  # [N, K, C]
        exact = torch.einsum("nc,nkc->nk", hidden.float(), rows)
        if self.head.bias is not None:
            exact = exact + self.head.bias.float()[top]
        return logits.scatter(-1, top, exact)

    def logits_exact(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the dense head weights (for scoring, where every probability counts)."""
        if self.head_dense is None:
            return self.head(hidden).float()
        logits = F.linear(hidden, self.head_dense).float()
        return logits if self.head.bias is None else logits + self.head.bias.float()

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self._rms(x, self.norm)

    @torch.inference_mode()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Run the prompt `ids` into cache slot `slot` from position 0; logits [V] of its end."""
        t = len(ids)
        tokens = torch.tensor([ids], device=self.device)
        if self.stack is not None and not (self.torch_prompts and t > AVX2_MAX_ROWS):
            return self._run_stack(self.embed[tokens[0]], [slot] * t, list(range(t)), 1)[0]
        positions = torch.arange(t, device=self.device).unsqueeze(0)
        x = self.embed[tokens]
        angles = self._angles(positions)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, angles)
            self.cache_k[i, slot, :, :t] = k[0]
            self.cache_v[i, slot, :, :t] = v[0]
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = self._finish(layer, x, attn)
        return self.logits(self.final_norm(x[:, -1]))[0]

    @torch.inference_mode()
    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """One token for each of the first len(tokens) slots, at its position; logits [S,V].

        Slots that are idle take a dummy token at position 0; their rows are ignored. Running
        the first S slots (not a gathered subset) lets attention read the cache without copies.
        """
        s = len(tokens)
        if self.stack is not None:
            return self._run_stack(self.embed[torch.tensor(tokens)], list(range(s)), positions)
        pos = torch.tensor(positions, device=self.device)
        span = max(positions) + 1
        token_ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
        x = self.embed[token_ids]
        blocked = None
        if min(positions) < span - 1:  # rows at different positions: mask each one's future
            blocked = (torch.arange(span, device=self.device)[None, :] > pos[:, None])[
                :, None, None
            ]
        rows = torch.arange(s, device=self.device)
        angles = self._angles(pos[:, None])
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, angles)
            if s == 1:  # plain slicing: cheaper than an indexed write
                self.cache_k[i, 0, :, span - 1] = k[0, :, 0]
                self.cache_v[i, 0, :, span - 1] = v[0, :, 0]
            else:
                self.cache_k[i, rows, :, pos] = k[:, :, 0]
                self.cache_v[i, rows, :, pos] = v[:, :, 0]
            keys = self.cache_k[i, :s, :, :span]
            values = self.cache_v[i, :s, :, :span]
            x = self._finish(layer, x, self._attend_one(q, keys, values, blocked))
        return self.logits(self.final_norm(x[:, 0]))

    @torch.inference_mode()
    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B,T,C] of right-padded rows, no cache (for scoring)."""
        b, t = tokens.shape
        positions = torch.arange(t, device=self.device).expand(b, t)
        x = self.embed[tokens.to(self.device)]
        angles = self._angles(positions)
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, angles)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = self._finish(layer, x, attn)
        return self.final_norm(x)

    def release(self, slot: int) -> None:
        """A slot's request ended; its cache rows are simply overwritten by the next one."""

    @torch.inference_mode()
    def score(self, rows: list[list[int]], starts: list[int]) -> list[TokenScores]:
        """For each row, the log-probability of each token from `start` on given those before,
        and the greedy choice at each of those positions. Rows run as one batch."""
        width = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row)
        hidden = self.hidden(tokens)
        results = []
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            # The hidden state at position p predicts token p + 1.
            logits = self.logits_exact(hidden[i, start - 1 : len(row) - 1])
            logprobs = torch.log_softmax(logits, -1)
            targets = torch.tensor(row[start:], device=logprobs.device)
            best, best_ids = logprobs.max(-1)
            picked = logprobs.gather(-1, targets[:, None])[:, 0]
            results.append(TokenScores(picked.tolist(), best_ids.tolist(), best.tolist()))
        return results
