"""What quantization cost and bought: size, perplexity, decode speed, answers side by side.

    report = compare_models(source, quantized, source_dir=..., quantized_dir=...)

Perplexity is measured on the held-out text bundled with Workbench (assets/eval/heldout/,
English and Chinese, written for this project and never used for calibration), in windows of
`WINDOW` tokens, with float32 activations for both models so that the number isolates the
weight rounding. Decode speed is measured with the engine that chat and the server use
(workbench.engine.local: the lean decode loop where the model allows it), greedy, no stop, for
the quantized model with its own layers and for the source with its weights in the machine's
default dtype (and in bf16, the issue's yardstick), alternating between them a few rounds and
keeping each one's best round, so a busy neighbour on a shared CPU does not decide the ratio. The evaluation feature reuses `perplexity` and `heldout_texts`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]
HELDOUT_DIR = ROOT / "assets" / "eval" / "heldout"
HELDOUT_FILES = {"en": "heldout_text_en.txt", "zh": "heldout_text_zh.txt"}
WINDOW = 512
SPEED_PROMPT = "Explain in a few sentences why smaller weights make a language model faster."
SIDE_BY_SIDE_PROMPTS = (
    "What is the capital of France?",
    "Give three tips for writing clear code.",
    "用一句话解释什么是量化。",
)


def heldout_texts(languages: tuple[str, ...] = ("en", "zh")) -> dict[str, str]:
    """The bundled held-out texts by language.

    Raises:
        NotFound: a text file is missing from the installation.
    """
    texts = {}
    for lang in languages:
        path = HELDOUT_DIR / HELDOUT_FILES[lang]
        if not path.is_file():
            raise NotFound(
                f"The held-out text for {lang!r} is missing.",
                where=str(path),
                fix="Restore assets/eval/heldout/ from the Workbench repository.",
            )
        texts[lang] = path.read_text("utf-8")
    return texts


def perplexity(
    model: Any,
    tokenizer: Any,
    text: str,
    *,
    window: int = WINDOW,
    should_stop: Callable[[], bool] = lambda: False,
) -> float:
    """exp(mean negative log-likelihood) of `text`, in non-overlapping windows of `window` tokens.

    Each window starts fresh (no context carried over), so the first tokens of every window are
    predicted from little context; the number is comparable between models, not between window
    sizes.
    """
    import torch

    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    limit = getattr(model.config, "max_position_embeddings", window) or window
    window = min(window, limit)
    device = next(model.parameters()).device
    total_nll, counted = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            if should_stop():
                break
            chunk = ids[start : start + window].unsqueeze(0).to(device)
            if chunk.shape[1] < 2:
                continue
            logits = model(input_ids=chunk).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
            total_nll += float(nll)
            counted += chunk.shape[1] - 1
    return math.exp(total_nll / counted) if counted else float("nan")


def greedy_decode(
    model: Any,
    input_ids: Any,
    max_new_tokens: int,
    *,
    stop_ids: tuple[int, ...] = (),
) -> tuple[list[int], float]:
    """Greedy decoding with a KV cache; returns (new token ids, seconds spent after the prefill).

    With no `stop_ids` it always produces `max_new_tokens` tokens (what a speed test wants).
    """
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        next_id = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens: list[int] = []
        started = time.perf_counter()
        for _ in range(max_new_tokens):
            tokens.append(int(next_id))
            if tokens[-1] in stop_ids or len(tokens) == max_new_tokens:
                break
            out = model(input_ids=next_id, past_key_values=cache, use_cache=True)
            next_id = out.logits[:, -1].argmax(-1, keepdim=True)
        return tokens, time.perf_counter() - started


def chat_input(tokenizer: Any, prompt: str) -> Any:
    """Token ids of a one-turn chat (the tokenizer's template), or of the bare prompt."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    return tokenizer(prompt, return_tensors="pt")["input_ids"]


def decode_speeds(
    engines: dict[str, Any],
    *,
    new_tokens: int = 32,
    rounds: int = 3,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Decode tokens/s of each local engine {name: LocalEngine}, alternating, best round each."""
    best = dict.fromkeys(engines, 0.0)
    for _ in range(rounds):
        for name, engine in engines.items():
            if should_stop():
                return best
            ids = chat_input(engine.tokenizer, SPEED_PROMPT)[0].tolist()
            engine.time_decode(ids, 2)  # warm caches and lazily built kernel weights
            tokens, seconds = engine.time_decode(ids, new_tokens + 1)
            rate = (tokens - 1) / seconds if seconds > 0 else 0.0
            best[name] = max(best[name], rate)
    return {name: round(rate, 2) for name, rate in best.items()}


def answer(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 32) -> str:
    """The model's greedy answer to one chat prompt."""
    ids = chat_input(tokenizer, prompt).to(next(model.parameters()).device)
    stops = {tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)}
    flat: set[int] = set()
    for s in stops:
        flat.update(s if isinstance(s, list) else [s] if s is not None else [])
    tokens, _ = greedy_decode(model, ids, max_new_tokens, stop_ids=tuple(flat))
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def memory_bytes(model: Any) -> int:
    """Bytes the model's weights take in memory (parameters, buffers, kernel copies)."""
    seen: set[int] = set()
    total = 0
    tensors = list(model.parameters()) + list(model.buffers())
    for module in model.modules():
        for copy in (getattr(module, "_kernel", None), getattr(module, "_fast", None)):
            if copy:
                tensors.extend(copy)
    for tensor in tensors:
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def weight_bytes(folder: Path) -> int:
    """Bytes of the weight files alone (safetensors, bin, gguf): what quantization shrinks."""
    patterns = ("*.safetensors", "*.bin", "*.gguf")
    return sum(p.stat().st_size for pat in patterns for p in Path(folder).glob(pat))


def _cut(tokenizer: Any, text: str, tokens: int) -> str:
    """The start of `text` holding about `tokens` tokens (all of it for 0)."""
    if not tokens:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: tokens + 1]
    return tokenizer.decode(ids)


def compare_models(
    source: str,
    quantized: str,
    ws: Any,
    *,
    ppl_tokens: int = 2048,
    speed_tokens: int = 32,
    prompts: tuple[str, ...] = SIDE_BY_SIDE_PROMPTS,
    progress: Callable[..., None] = lambda **_: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict:
    """Load both models as chat and evaluation do, and measure them side by side.

    Returns a dict with ppl / source_ppl (geometric mean over the languages), ppl_by_language,
    ppl_change (relative), tokens_per_s / source_tokens_per_s / speedup (decode, in the machine's
    default dtype), source_bf16_tokens_per_s, memory_bytes / source_memory_bytes, answers
    [{prompt, source, quantized}], and the conditions (dtype, window, tokens, threads).
    """
    import torch

    from workbench.engine.local import LocalEngine
    from workbench.hardware import resolve_dtype
    from workbench.models import load_model

    texts = heldout_texts()
    report: dict[str, Any] = {"ppl_window": WINDOW, "ppl_dtype": "float32"}
    loaded = {}
    for role, name in (("source", source), ("quantized", quantized)):
        progress(message=f"perplexity of {name} on the held-out text")
        model = load_model(name, ws, device="cpu", dtype="float32")
        by_lang = {
            lang: round(
                perplexity(
                    model.model,
                    model.tokenizer,
                    _cut(model.tokenizer, text, ppl_tokens),
                    should_stop=should_stop,
                ),
                3,
            )
            for lang, text in texts.items()
        }
        report[f"{role}_ppl_by_language"] = by_lang
        report[f"{role}_ppl"] = round(
            math.exp(sum(math.log(v) for v in by_lang.values()) / len(by_lang)), 3
        )
        loaded[role] = model
    report["ppl"] = report.pop("quantized_ppl")
    report["ppl_by_language"] = report.pop("quantized_ppl_by_language")
    report["ppl_change"] = round(report["ppl"] / report["source_ppl"] - 1, 4)
    report["ppl_tokens_per_language"] = ppl_tokens or "all"

    dtype = resolve_dtype("auto", "cpu")
    report["decode_dtype"] = dtype
    # The source's float weights in the machine's default dtype, and in bf16 (the issue's
    # yardstick) where that differs; the quantized model with its own layers.
    source_weights = {"bfloat16": "bfloat16"}.get(dtype, "model")
    engines = {
        "quantized": LocalEngine(quantized, loaded["quantized"], weights="auto", slots=1),
        "source": LocalEngine(source, loaded["source"], weights=source_weights, slots=1),
    }
    if source_weights != "bfloat16":
        engines["source_bf16"] = LocalEngine(source, loaded["source"], weights="bfloat16", slots=1)
    report["decode_paths"] = {name: engine.path for name, engine in engines.items()}
    progress(message="decode speed of both models (alternating rounds)")
    try:
        speeds = decode_speeds(engines, new_tokens=speed_tokens, should_stop=should_stop)
    finally:
        for engine in engines.values():
            engine.close()
        del engines  # their packed weights
    models = {}
    for role, model in loaded.items():
        if not getattr(model.model, "is_quantized", False):  # bitsandbytes models keep theirs
            model.model.to(getattr(torch, dtype))
        models[role] = (model.model, model.tokenizer)
    report["tokens_per_s"] = speeds.get("quantized", 0.0)
    report["source_tokens_per_s"] = speeds.get("source", 0.0)
    report["source_bf16_tokens_per_s"] = speeds.get("source_bf16", speeds.get("source", 0.0))
    report["speedup"] = round(report["tokens_per_s"] / max(report["source_tokens_per_s"], 1e-9), 3)
    report["speedup_vs_bf16"] = round(
        report["tokens_per_s"] / max(report["source_bf16_tokens_per_s"], 1e-9), 3
    )
    report["threads"] = torch.get_num_threads()
    report["memory_bytes"] = memory_bytes(models["quantized"][0])
    report["source_memory_bytes"] = memory_bytes(models["source"][0])
    progress(message="answering the side-by-side prompts")
    report["answers"] = [
        {
            "prompt": prompt,
            "source": answer(*models["source"], prompt),
            "quantized": answer(*models["quantized"], prompt),
        }
        for prompt in prompts
        if not should_stop()
    ]
    return report
