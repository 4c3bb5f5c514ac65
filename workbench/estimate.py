"""Will it fit? Memory and time of a fine-tuning run, estimated before it starts.

The memory model counts, from the model's shapes, what an eager Hugging Face Llama-family
training step keeps alive at its peak (checked tensor by tensor with autograd's saved-tensor
hooks on transformers 5 / torch 2.13, and against measured peak memory in
bench/estimate_memory.py):

  weights       the base model in the training dtype (QLoRA: 4-bit nf4 linear layers,
                0.5 byte + one fp32 absmax per 64 weights; embeddings and norms unquantized);
  trainable     LoRA adapters, kept in fp32 by peft whatever the base dtype;
  gradients     one per trainable weight, in its dtype;
  optimizer     AdamW: two states per trainable weight, in its dtype (fp32 for adapters);
  activations   what autograd saves per layer (RMSNorm inputs in fp32, q/k/v/attention output
                and log-sum-exp of the O(T)-memory sdpa kernel, SwiGLU intermediates, LoRA inputs
                and x·A), or with gradient checkpointing each layer's input plus one recomputed
                layer; plus the backward pass's working set;
  logits        the fp32 loss over the vocabulary: at the start of the backward pass the saved
                log-softmax, its gradient and the logits' gradient (3 × tokens × vocab × 4 B);
  transient     AdamW's temporary (one tensor the size of the largest trainable weight);
  overhead      the runtime already there before the model loads: torch + transformers + peft
                imported on CPU (0.40 GB measured), CUDA context on a GPU (0.5 GB assumed).

The peak is the larger of two moments: the start of the backward pass (activations and logits
alive) and the optimizer step (all gradients alive, activations freed). `parts` lists what is
resident at that moment, so the parts add up to `total`.

Assumptions the training loop has to meet for the numbers to hold: the model output is dropped
before `backward()` (`loss = model(...).loss`), `zero_grad(set_to_none=True)`, batches longer than
one example carry padding (so sdpa gets a mask and transformers expands k/v to all heads), and on
CPU glibc returns freed memory (`CPU_ALLOCATOR_ENV`); with glibc's defaults peak RSS measured up to
1.7x the live tensors for batch 4x256, because freed activations stay in the heap.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput
from workbench.hardware import HardwareInfo, detect_hardware

GB = 2**30  # the unit HardwareInfo reports in
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
METHODS = ("lora", "qlora", "full")
OPTIMIZERS = ("adamw",)
DEVICES = ("cpu", "cuda")
NF4_BYTES_PER_WEIGHT = 0.5 + 4 / 64  # 4 bits + one fp32 absmax per block of 64
SAFETY_MARGIN = 0.10  # fits only when the total stays below 90% of what is available
RUNTIME_BYTES = {"cpu": int(0.40 * GB), "cuda": int(0.5 * GB)}
CUDA_ALLOCATOR_SLACK = 0.10  # caching allocator: assumed, not measured (no GPU yet)
# Where training time goes beyond the matmuls (elementwise ops, attention, Python, the optimizer):
# achieved training FLOP/s ÷ this process's matmul FLOP/s. CPU calibrated in
# bench/estimate_memory.py (fp32 LoRA and full fine-tuning of SmolLM2-135M on 2 EPYC cores:
# 1.5-1.9); CUDA assumed (small models are launch-bound; no GPU run yet).
EFFICIENCY = {"cpu": 1.6, "cuda": 0.3}
# Setting it in the environment of a CPU training process makes glibc give freed memory back.
CPU_ALLOCATOR_ENV = {"MALLOC_TRIM_THRESHOLD_": "0"}

# Which tensor each linear layer reads: x1 = input norm output, ao = attention output,
# x2 = post-attention norm output, p = SwiGLU product.
LINEAR_INPUT = {
    "q_proj": "x1", "k_proj": "x1", "v_proj": "x1", "o_proj": "ao",
    "gate_proj": "x2", "up_proj": "x2", "down_proj": "p",
    "wqkv": "x1", "wo": "ao", "w1": "x2", "w3": "x2", "w2": "p",
}  # fmt: skip


@dataclass
class ModelShape:
    """The sizes of a Llama-family decoder (Llama, Mistral, SmolLM2, Qwen2/3, InternLM2)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool
    params: int = 0  # total parameter count; computed from the shapes when 0
    family: str = "llama"  # "llama" or "internlm2" (fused wqkv, w1/w2/w3 names)
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm on each head of q and k

    def __post_init__(self) -> None:
        if not self.params:
            self.params = self.count_params()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Read a config.json dict; knows the common key aliases of Llama-family configs."""
        config = config.get("text_config") or config
        model_type = str(config.get("model_type", "llama")).lower()

        def pick(*keys: str, default: Any = None) -> Any:
            for key in keys:
                if config.get(key) is not None:
                    return config[key]
            if default is None:
                raise InvalidInput(
                    f"The model config has no {keys[0]!r} (nor {', '.join(keys[1:]) or 'alias'}).",
                    where=f"config.json: {keys[0]}",
                    fix="Use a Llama-family model (Llama, SmolLM2, Qwen2, InternLM2) folder.",
                )
            return default

        hidden = int(pick("hidden_size", "n_embd", "d_model"))
        heads = int(pick("num_attention_heads", "num_heads", "n_head"))
        bias = bool(config.get("attention_bias") or config.get("bias"))
        return cls(
            vocab_size=int(pick("vocab_size")),
            hidden_size=hidden,
            intermediate_size=int(pick("intermediate_size", "ffn_hidden_size", "n_inner")),
            num_layers=int(pick("num_hidden_layers", "num_layers", "n_layer")),
            num_heads=heads,
            num_kv_heads=int(pick("num_key_value_heads", "num_kv_heads", default=heads)),
            head_dim=int(pick("head_dim", default=hidden // heads)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            family="internlm2" if model_type.startswith("internlm") else "llama",
            qkv_bias=bias or model_type == "qwen2",
            o_bias=bias and model_type != "qwen2",
            mlp_bias=bool(config.get("mlp_bias")),
            qk_norm=model_type.startswith("qwen3"),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """Each decoder layer's linear layers: name -> (in features, out features)."""
        h, i = self.hidden_size, self.intermediate_size
        qd, kvd = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.family == "internlm2":
            return {"wqkv": (h, qd + 2 * kvd), "wo": (qd, h), "w1": (h, i), "w3": (h, i),
                    "w2": (i, h)}  # fmt: skip
        return {"q_proj": (h, qd), "k_proj": (h, kvd), "v_proj": (h, kvd), "o_proj": (qd, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}  # fmt: skip

    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers (what QLoRA quantizes), all layers."""
        return self.num_layers * sum(a * b for a, b in self.linears().values())

    def count_params(self) -> int:
        qd, kvd = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        h, i = self.hidden_size, self.intermediate_size
        per_layer = 2 * h  # the two RMSNorm weights
        per_layer += (qd + 2 * kvd) * self.qkv_bias + h * self.o_bias + (2 * i + h) * self.mlp_bias
        per_layer += 2 * self.head_dim * self.qk_norm
        embeddings = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.linear_params() + self.num_layers * per_layer + h + embeddings


def model_shape(folder: Path | str) -> ModelShape:
    """The ModelShape of a Hugging Face model folder (reads its config.json)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise InvalidInput(
            f"{folder} has no config.json, so its size is unknown.",
            where=str(folder),
            fix="Point at a Hugging Face model folder (config.json + weights).",
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"config.json could not be read: {exc}", where=str(path), fix="Restore the file."
        ) from exc
    return ModelShape.from_config(config)


@dataclass
class TrainPlan:
    """What the run will do: method, LoRA settings, batch, cutoff, dtype, device."""

    method: str = "lora"  # "lora" | "qlora" | "full"
    lora_rank: int = 8
    lora_targets: str | list[str] = "all-linear"  # or e.g. ["q_proj", "v_proj"]
    batch_size: int = 1
    grad_accum: int = 1
    seq_len: int = 512  # the cutoff: longer examples are truncated, batches padded to it
    dtype: str = "float32"  # weights and compute
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    device: str = "cpu"

    def __post_init__(self) -> None:
        choices = {"method": METHODS, "dtype": tuple(DTYPE_BYTES), "optimizer": OPTIMIZERS,
                   "device": DEVICES}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidInput(
                    f"Unknown {name} {getattr(self, name)!r}.",
                    where=f"plan.{name}",
                    fix=f"Use one of: {', '.join(allowed)}.",
                )
        for name in ("batch_size", "grad_accum", "seq_len", "lora_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(
                    f"{name} must be a whole number of at least 1, got {value!r}.",
                    where=f"plan.{name}",
                    fix=f"Set {name} to 1 or more.",
                )
        if isinstance(self.lora_targets, str) and self.lora_targets != "all-linear":
            self.lora_targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def targets(self, shape: ModelShape) -> list[str]:
        """The linear layers that get adapters (none for full fine-tuning)."""
        if self.method == "full":
            return []
        names = shape.linears()
        if self.lora_targets == "all-linear":
            return list(names)
        unknown = [t for t in self.lora_targets if t not in names]
        if unknown or not self.lora_targets:
            raise InvalidInput(
                f"LoRA target(s) {unknown or self.lora_targets} are not linear layers of this model.",
                where="plan.lora_targets",
                fix=f"Use 'all-linear' or some of: {', '.join(names)}.",
            )
        return list(self.lora_targets)


@dataclass
class MemoryEstimate:
    """Peak memory of one training step, by part, against what the device has free."""

    parts: dict[str, int]
    total: int
    available: int
    fits: bool
    headroom: int
    peak_at: str  # "backward" or "optimizer step"
    device: str
    suggestions: list[str] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # the suggestions as plan changes
    notes: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> int:
        """The part already in use before the model loads (imports, CUDA context)."""
        return RUNTIME_BYTES[self.device]

    def to_dict(self) -> dict:
        gb = {k: round(v / GB, 3) for k, v in self.parts.items()}
        return {**asdict(self), "parts_gb": gb, "total_gb": round(self.total / GB, 2),
                "available_gb": round(self.available / GB, 2)}  # fmt: skip


def _activation_bytes(shape: ModelShape, plan: TrainPlan) -> tuple[int, int, int]:
    """(saved by all layers, saved by one layer, backward working set) in bytes."""
    a, f = DTYPE_BYTES[plan.dtype], 4
    n = plan.batch_size * plan.seq_len
    h, i, r = shape.hidden_size, shape.intermediate_size, plan.lora_rank
    qd, kvd = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    full = plan.method == "full"
    targets = plan.targets(shape)
    # RMSNorm saves its input in fp32 (a copy unless fp32) and 1/rms; with a trainable weight
    # also the normalized fp32 input.
    norm = n * h * f + n * f + (n * h * f if full else 0)
    layer = 2 * norm
    if shape.qk_norm:
        layer += n * (qd + kvd) * f + n * (shape.num_heads + shape.num_kv_heads) * f
    # The inputs of the linear layers: kept once for trainable weights; for LoRA lora_A keeps
    # its input in fp32 - the same tensor in fp32, one fp32 copy per adapter otherwise.
    widths = {"x1": h, "ao": qd, "x2": h, "p": i}
    for site, width in widths.items():
        readers = [name for name in shape.linears() if LINEAR_INPUT[name] == site]
        adapted = [name for name in readers if name in targets]
        kept_anyway = site == "ao"  # sdpa saves its output
        if full:
            layer += 0 if kept_anyway else n * width * a
        elif adapted:
            copies = len(adapted) if a != f else (0 if kept_anyway else 1)
            layer += copies * n * width * f
    # sdpa (flash/efficient kernels, O(T)): q, k, v, output, log-sum-exp. With a padding mask
    # transformers repeats k and v to all heads first.
    padded = plan.batch_size > 1
    kv = qd if padded else kvd
    layer += n * (2 * qd + 2 * kv) * a + n * shape.num_heads * f
    layer += 3 * n * i * a  # SwiGLU: gate output, silu(gate), up output
    layer += len(targets) * n * r * f  # LoRA: x @ A for lora_B
    # Once per forward: rotary cos/sin, the padding mask, the final norm (+ lm_head input).
    shared = 2 * n * shape.head_dim * a + (plan.batch_size * plan.seq_len**2 * f if padded else 0)
    shared += norm + (n * h * a if full else 0)
    # Backward working set: a few gradients of one layer's widest tensors at once.
    working = 3 * n * i * a + 2 * n * h * f
    if plan.gradient_checkpointing:
        return shape.num_layers * n * h * a + layer + shared, layer, working
    return shape.num_layers * layer + shared, layer, working


def _weight_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    a = DTYPE_BYTES[plan.dtype]
    if plan.method == "qlora":
        linear = shape.linear_params()
        return int(linear * NF4_BYTES_PER_WEIGHT + (shape.params - linear) * a)
    return shape.params * a


def adapter_params(shape: ModelShape, plan: TrainPlan) -> int:
    """How many weights the LoRA adapters add (0 for full fine-tuning)."""
    dims = shape.linears()
    per_layer = sum(plan.lora_rank * sum(dims[t]) for t in plan.targets(shape))
    return shape.num_layers * per_layer


def _peak(shape: ModelShape, plan: TrainPlan) -> tuple[dict[str, int], str]:
    a = DTYPE_BYTES[plan.dtype]
    n = plan.batch_size * plan.seq_len
    if plan.method == "full":
        trainable, grad, states = 0, shape.params * a, 2 * shape.params * a
        largest = shape.vocab_size * shape.hidden_size * a  # the embedding
    else:
        adapters = adapter_params(shape, plan)
        trainable, grad, states = adapters * 4, adapters * 4, 2 * adapters * 4
        largest = max(plan.lora_rank * max(d) for d in shape.linears().values()) * 4
    # AdamW's step: on CPU a loop over tensors, whose `exp_avg_sq.sqrt() / c` holds two
    # temporaries the size of one weight; on CUDA the foreach version, one for all of them.
    step_temporary = grad if plan.device == "cuda" else 2 * largest
    activations, _, working = _activation_bytes(shape, plan)
    logits = 3 * n * shape.vocab_size * 4
    base = {"weights": _weight_bytes(shape, plan), "trainable_weights": trainable}
    # Gradients survive across micro-batches when accumulating; else zero_grad frees them.
    backward = {
        **base,
        "gradients": grad if plan.grad_accum > 1 else 0,
        "optimizer": states,
        "activations": activations + working,
        "logits": logits,
        "transient": 0,
    }
    step = {**base, "gradients": grad, "optimizer": states, "activations": 0, "logits": 0,
            "transient": step_temporary}  # fmt: skip
    if plan.method == "qlora":  # dequantized weight of the widest linear layer, in flight
        backward["transient"] = max(x * y for x, y in shape.linears().values()) * a
    runtime = RUNTIME_BYTES[plan.device]
    for phase in (backward, step):
        slack = CUDA_ALLOCATOR_SLACK * (phase["activations"] + phase["logits"])
        phase["overhead"] = runtime + int(slack if plan.device == "cuda" else 0)
    if sum(backward.values()) >= sum(step.values()):
        return backward, "backward"
    return step, "optimizer step"


def _available(plan: TrainPlan, hardware: HardwareInfo) -> int:
    if plan.device == "cuda":
        return int(hardware.gpus[0].memory_free_gb * GB) if hardware.gpus else 0
    return int(hardware.ram_available_gb * GB)


def _candidate_changes(plan: TrainPlan, hardware: HardwareInfo) -> list[tuple[dict, str]]:
    """Plan changes that lower memory, each with a sentence template ({saves}, {then})."""
    out: list[tuple[dict, str]] = []
    if not plan.gradient_checkpointing:
        out.append(
            (
                {"gradient_checkpointing": True},
                "Turn on gradient checkpointing: saves ~{saves} (about 30% slower){then}.",
            )
        )
    if plan.method == "full":
        out.append(
            ({"method": "lora"}, "Use LoRA instead of full fine-tuning: saves ~{saves}{then}.")
        )
    if plan.method != "qlora":
        out.append(({"method": "qlora"}, "Use QLoRA (4-bit base weights): saves ~{saves}{then}."))
    if plan.batch_size > 1:
        half = plan.batch_size // 2
        accum = plan.grad_accum * plan.batch_size // half
        out.append(
            (
                {"batch_size": half, "grad_accum": accum},
                f"Halve the batch to {half} (grad_accum {accum} keeps the effective batch of "
                f"{plan.batch_size * plan.grad_accum}): saves ~{{saves}}{{then}}.",
            )
        )
    if plan.seq_len >= 64:
        cut = plan.seq_len // 2
        out.append(
            (
                {"seq_len": cut},
                f"Cut the cutoff to {cut} tokens (longer examples are truncated): "
                "saves ~{saves}{then}.",
            )
        )
    bf16_here = hardware.cpu_bf16 if plan.device == "cpu" else bool(hardware.gpus)
    if plan.dtype == "float32" and bf16_here:
        out.append(({"dtype": "bfloat16"}, "Train in bfloat16: saves ~{saves}{then}."))
    return out  # fmt: skip


def estimate_memory(
    shape: ModelShape, plan: TrainPlan, hardware: HardwareInfo | None = None
) -> MemoryEstimate:
    """Peak memory of training `shape` with `plan`, and whether it fits on `hardware`.

    Raises:
        InvalidInput: for a plan this model cannot take (e.g. unknown LoRA targets).
    """
    hardware = hardware or detect_hardware()
    estimate = _estimate(shape, plan, hardware)
    if not estimate.fits:
        scored = []
        for change, sentence in _candidate_changes(plan, hardware):
            other = _estimate(shape, replace(plan, **change), hardware)
            saves = estimate.total - other.total
            if saves > 0.01 * estimate.total:
                scored.append((saves, change, sentence, other.fits))
        for saves, change, sentence, fits in sorted(scored, key=lambda s: -s[0]):
            text = sentence.format(saves=_size(saves), then=" - then it fits" if fits else "")
            estimate.suggestions.append(text)
            estimate.changes.append({"change": change, "saves_bytes": saves, "fits": fits})
        if plan.device == "cuda" and not hardware.gpus:
            estimate.suggestions.insert(0, "No CUDA GPU is usable here: train on the CPU.")
    return estimate


def _estimate(shape: ModelShape, plan: TrainPlan, hardware: HardwareInfo) -> MemoryEstimate:
    parts, peak_at = _peak(shape, plan)
    total = sum(parts.values())
    available = _available(plan, hardware)
    notes = []
    if plan.method == "qlora" and plan.device == "cpu":
        notes.append("QLoRA on CPU runs bitsandbytes' slow fallback (measured ~3 tokens/s for "
                     "SmolLM2-135M); the memory estimate assumes its 4-bit weights.")  # fmt: skip
    if plan.device == "cpu" and plan.dtype != "float32" and not hardware.cpu_bf16:
        notes.append("This CPU has no native bf16: bf16 matmuls are emulated and very slow.")
    return MemoryEstimate(
        parts=parts,
        total=total,
        available=available,
        fits=total <= (1 - SAFETY_MARGIN) * available,
        headroom=available - total,
        peak_at=peak_at,
        device=plan.device,
        notes=notes,
    )


@functools.lru_cache(maxsize=8)
def measure_matmul_flops(dtype: str = "float32", device: str = "cpu") -> float:
    """FLOP/s of a square matmul in `dtype` on `device`: the fastest of the calls made in ~0.2 s.

    Cached per process. On a CPU shared with other work the fastest call is the stable figure.
    """
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    kind = getattr(torch, dtype)

    def fastest_call(size: int, seconds: float) -> float:
        x = torch.randn(size, size, device=device).to(kind)
        y = torch.randn(size, size, device=device).to(kind)
        x @ y  # warm-up: library initialisation, kernel choice
        sync()
        fastest, started = float("inf"), time.perf_counter()
        while time.perf_counter() - started < seconds:
            tick = time.perf_counter()
            x @ y
            sync()
            fastest = min(fastest, time.perf_counter() - tick)
        return fastest

    # A probe picks the size: 1024 (CPU) / 4096 (GPU), smaller where one call would take more
    # than ~20 ms (emulated bf16 on CPU is ~50x slower than fp32).
    # fp32 on a CPU is never emulated: 1024 always (smaller matmuls measure thread start-up,
    # not the arithmetic, and would make a busy machine look 20x slower than it is).
    size = 1024 if device == "cpu" else 4096
    if not (device == "cpu" and dtype == "float32"):
        probe = 2 * 256**3 / fastest_call(256, 0.02)
        while size > 256 and 2 * size**3 / probe > 0.02:
            size //= 2
    fastest = fastest_call(size, 0.2)
    return 2 * size**3 / fastest  # the fastest call: the device's speed when not shared


def flops_per_token(shape: ModelShape, plan: TrainPlan) -> float:
    """Training FLOPs per token: matmuls forward (2N), backward (2N for inputs, +2N for weights
    when they train), attention (causal, forward 2·T·qd per layer), recompute with checkpointing."""
    matmul = shape.linear_params() + shape.vocab_size * shape.hidden_size  # + lm_head
    attention = 2 * plan.seq_len * shape.num_heads * shape.head_dim * shape.num_layers
    if plan.method == "full":
        total = 6 * matmul + 3 * attention
    else:  # the frozen base needs gradients for its inputs only
        total = 4 * matmul + 3 * attention + 6 * adapter_params(shape, plan)
    if plan.gradient_checkpointing:
        total += 2 * matmul + attention
    return float(total)


def estimate_time(
    shape: ModelShape,
    plan: TrainPlan,
    tokens: int,
    hardware: HardwareInfo | None = None,
    *,
    flops_per_second: float | None = None,
) -> dict:
    """Seconds to train on `tokens` tokens (padding included) with `plan`.

    Args:
        flops_per_second: the device's matmul speed; measured here (~0.2 s) when None.
    Returns:
        seconds, tokens_per_second, steps (optimizer steps), and how it was worked out.
    """
    if not isinstance(tokens, int) or tokens < 1:
        raise InvalidInput(
            f"tokens must be a positive whole number, got {tokens!r}.",
            where="tokens",
            fix="Pass the number of training tokens (examples × cutoff × epochs).",
        )
    device = plan.device
    if device == "cuda" and hardware is not None and not hardware.gpus:
        device = "cpu"
    matmul = flops_per_second or measure_matmul_flops(plan.dtype, device)
    per_token = flops_per_token(shape, plan)
    speed = matmul * EFFICIENCY[device] / per_token
    seconds = tokens / speed
    if plan.method == "qlora" and device == "cpu":
        seconds *= 20  # bitsandbytes' CPU fallback: measured ~20x slower than fp32 LoRA
    per_step = plan.batch_size * plan.seq_len * plan.grad_accum
    return {
        "seconds": float(f"{seconds:.3g}"),  # tiny models take milliseconds
        "tokens_per_second": round(tokens / seconds, 1),
        "steps": math.ceil(tokens / per_step),
        "flops_per_token": per_token,
        "matmul_flops_per_second": matmul,
        "efficiency": EFFICIENCY[device],
    }


def will_it_fit(
    model_folder: Path | str, plan: TrainPlan, tokens: int, hardware: HardwareInfo | None = None
) -> dict:
    """Memory and time of training the model in `model_folder` with `plan`, with a verdict."""
    shape = model_shape(model_folder)
    hardware = hardware or detect_hardware()
    memory = estimate_memory(shape, plan, hardware)
    timing = estimate_time(shape, plan, tokens, hardware)
    need, free = _size(memory.total), _size(memory.available)
    where = "GPU memory" if plan.device == "cuda" else "RAM"
    if memory.fits:
        verdict = f"Fits: needs ~{need} of {free} free {where}."
    else:
        first = f" Try: {memory.suggestions[0]}" if memory.suggestions else ""
        verdict = f"Does not fit: needs ~{need} but only {free} of {where} is free.{first}"
    return {
        "verdict": verdict,
        "fits": memory.fits,
        "memory": memory.to_dict(),
        "time": timing,
        "model": {**asdict(shape)},
        "plan": asdict(plan),
    }


def _size(n: float) -> str:
    return f"{n / GB:.1f} GB" if abs(n) >= 0.1 * GB else f"{n / 2**20:.0f} MB"
