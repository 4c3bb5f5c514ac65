"""Streaming chat generation with a loaded model: the small, real engine behind `workbench chat`.

`stream_chat` yields text pieces as the model produces them (a chat widget or a terminal prints
them at once); `chat_once` collects a whole answer with token counts and speed; `run_generate` is
the job runner that answers a list of prompts into the run folder's outputs.jsonl.

Generation runs `model.generate` in a helper thread feeding a `TextIteratorStreamer`; the
caller's loop cuts stop strings and can stop the thread early through a StoppingCriteria.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError
from workbench.models import LoadedModel, load_model


@dataclass
class GenerationSettings:
    """How to decode: temperature 0 is greedy (the same answer every time).

    `constraint` (local engines only; others ignore it) shapes what may be generated: an object
    with `processor(tokenizer, end_ids)` returning `f(generated_ids, logits) -> logits` that the
    decode loop applies before choosing each token (workbench.agent.constrain builds them, so
    that a small model's tool calls always parse).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    constraint: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidInput(
                f"max_new_tokens is {self.max_new_tokens}; it must be at least 1.",
                where="max_new_tokens",
                fix="Use a value such as 256.",
            )
        if self.temperature < 0:
            raise InvalidInput(
                f"temperature is {self.temperature}; it cannot be negative.",
                where="temperature",
                fix="Use 0 for greedy decoding, or 0.7.",
            )
        if not 0 < self.top_p <= 1:
            raise InvalidInput(
                f"top_p is {self.top_p}; it must be in (0, 1].",
                where="top_p",
                fix="Use 1.0 to keep every token, or 0.9.",
            )


@dataclass
class ChatResult:
    """One complete answer.

    finish_reason is "stop" (end of turn or a stop string), "length" (max_new_tokens reached) or
    "cancelled" (should_stop asked for it).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    tokens_per_s: float
    finish_reason: str = "stop"


def build_messages(
    prompt: str,
    system: str = "",
    history: Sequence[dict | tuple[str, str]] = (),
) -> list[dict]:
    """Chat messages for one turn: optional system prompt, earlier turns, then the prompt.

    `history` holds message dicts ({"role", "content"}) or (user, assistant) pairs.
    """
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": system})
    for turn in history:
        if isinstance(turn, dict):
            messages.append({"role": turn["role"], "content": turn["content"]})
        else:
            user, assistant = turn
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
    messages.append({"role": "user", "content": prompt})
    return messages


def stream_chat(
    loaded: LoadedModel,
    messages: list[dict],
    settings: GenerationSettings | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Yield the answer to `messages` piece by piece.

    Raises:
        WorkbenchError: the tokenizer has no chat template; the prompt does not fit the model.
    """
    return _stream(loaded, messages, settings or GenerationSettings(), should_stop, {})


def chat_once(
    loaded: LoadedModel,
    messages: list[dict],
    settings: GenerationSettings | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> ChatResult:
    """The whole answer to `messages`, with token counts and speed."""
    stats: dict[str, Any] = {}
    text = "".join(_stream(loaded, messages, settings or GenerationSettings(), should_stop, stats))
    seconds = stats.get("seconds", 0.0)
    completion = stats.get("completion_tokens", 0)
    return ChatResult(
        text=text,
        prompt_tokens=stats.get("prompt_tokens", 0),
        completion_tokens=completion,
        seconds=round(seconds, 3),
        tokens_per_s=round(completion / seconds, 2) if seconds > 0 else 0.0,
        finish_reason=stats.get("finish_reason", "stop"),
    )


def _encode(loaded: LoadedModel, messages: list[dict]) -> dict:
    tokenizer = loaded.tokenizer
    folder = str(loaded.ref.path or loaded.ref.name)
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError(
            f"The tokenizer of {loaded.ref.name!r} has no chat template, so chat messages cannot "
            "be turned into a prompt.",
            where=f"{folder} (tokenizer_config.json / chat_template.jinja)",
            fix="Use an instruct/chat model, or give this model a chat template (e.g. ChatML) "
            "when fine-tuning it.",
        )
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    length = inputs["input_ids"].shape[1]
    if limit and length >= limit:
        raise WorkbenchError(
            f"The prompt is {length} tokens long, but {loaded.ref.name!r} reads at most {limit} "
            "(prompt and answer together).",
            where=f"model {loaded.ref.name!r}: max_position_embeddings",
            fix="Shorten the prompt or the system prompt, clear the chat history, or use a model "
            "with a longer context.",
        )
    return {k: v.to(loaded.model.device) for k, v in inputs.items()}


def _end_ids(loaded: LoadedModel) -> list[int]:
    """Every token that ends an answer: the generation config's eos ids and the tokenizer's."""
    ids = loaded.model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([] if ids is None else [ids])
    if loaded.tokenizer.eos_token_id is not None and loaded.tokenizer.eos_token_id not in ids:
        ids.append(loaded.tokenizer.eos_token_id)
    return ids


def _stream(
    loaded: LoadedModel,
    messages: list[dict],
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
    stats: dict[str, Any],
) -> Iterator[str]:
    """Check and encode the prompt now (so errors surface at the call), then stream."""
    inputs = _encode(loaded, messages)
    return _pieces(loaded, inputs, settings, should_stop, stats)


def _pieces(
    loaded: LoadedModel,
    inputs: dict,
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
    stats: dict[str, Any],
) -> Iterator[str]:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    prompt_len = inputs["input_ids"].shape[1]
    limit = getattr(loaded.model.config, "max_position_embeddings", None) or 10**9
    max_new = min(settings.max_new_tokens, limit - prompt_len)
    halt = threading.Event()  # set by this loop (stop string, consumer gone) or should_stop

    class _Halt(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            if should_stop is not None and should_stop():
                stats["cancelled"] = True
                halt.set()
            return halt.is_set()

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    end_ids = _end_ids(loaded)
    sampling = settings.temperature > 0
    kwargs: dict[str, Any] = dict(
        **inputs,
        streamer=streamer,
        max_new_tokens=max_new,
        do_sample=sampling,
        pad_token_id=loaded.tokenizer.pad_token_id,
        eos_token_id=end_ids,
        stopping_criteria=StoppingCriteriaList([_Halt()]),
    )
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:  # clear sampling knobs a model's generation_config may carry, to keep generate quiet
        kwargs.update(temperature=None, top_p=None, top_k=None)

    def work() -> None:
        try:
            with torch.inference_mode():
                output = loaded.model.generate(**kwargs)
            stats["new_ids"] = output[0, prompt_len:].tolist()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread below
            stats["error"] = exc
            streamer.end()  # unblock the consumer

    torch.manual_seed(settings.seed)  # sampling repeats for the same seed
    started = time.perf_counter()
    thread = threading.Thread(target=work, name="workbench-generate", daemon=True)
    thread.start()
    cut = _StopCutter(settings.stop)
    drained = False
    try:
        for piece in streamer:
            text = cut.feed(piece)
            if text:
                yield text
            if cut.hit:
                break
        else:
            drained = True
        tail = cut.flush()
        if tail:
            yield tail
    finally:
        halt.set()  # also reached when the consumer stops iterating early
        if not drained:
            for _ in streamer:  # wait for generate() to notice the halt and end the stream
                pass
        thread.join()
        stats["seconds"] = time.perf_counter() - started
    error = stats.get("error")
    if isinstance(error, torch.OutOfMemoryError):
        raise WorkbenchError(
            f"Out of memory while generating with {loaded.ref.name!r} on {loaded.device}.",
            where=f"model {loaded.ref.name!r}",
            fix="Lower max_new_tokens, shorten the prompt or history, close other jobs, or use a "
            "smaller or quantized model.",
        ) from error
    if error is not None:
        raise error
    new_ids = stats.get("new_ids", [])
    stats["prompt_tokens"] = prompt_len
    stats["completion_tokens"] = len(new_ids)
    if stats.get("cancelled"):
        stats["finish_reason"] = "cancelled"
    elif cut.hit or (new_ids and new_ids[-1] in end_ids):
        stats["finish_reason"] = "stop"
    else:
        stats["finish_reason"] = "length" if len(new_ids) >= max_new else "stop"


class _StopCutter:
    """Passes text through until a stop string appears; holds back a possible partial match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.pending += piece
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit = True
            out, self.pending = self.pending[: min(found)], ""
            return out
        # Everything but the last len(longest stop)-1 characters is safe to hand out now.
        split = max(len(self.pending) - self.keep, 0)
        out, self.pending = self.pending[:split], self.pending[split:]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.hit else self.pending), ""
        return out


def run_generate(
    recipe: Any,
    *,
    workspace: Any,
    progress: Callable[..., None],
    should_stop: Callable[[], bool],
    run_dir: Path | str,
    job_id: str = "",
) -> dict:
    """Job runner for `GenerateRecipe`: answer each prompt, one JSON line per answer.

    Lines go to `run_dir/outputs.jsonl` as {"prompt", "response", "completion_tokens",
    "seconds"}; an answer cut short by cancellation is kept too, marked "stopped": true.
    Returns {"answers", "outputs", "tokens_per_s"} ("stopped": True when cancelled).
    """
    outputs = Path(run_dir) / "outputs.jsonl"
    outputs.parent.mkdir(parents=True, exist_ok=True)
    total = len(recipe.prompts)
    progress(step=0, total=total, message=f"loading {recipe.model}")
    loaded = load_model(
        recipe.model,
        workspace,
        device=recipe.device,
        dtype=recipe.dtype,
        trust_remote_code=recipe.trust_remote_code,
    )
    settings = GenerationSettings(
        max_new_tokens=recipe.max_new_tokens,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        seed=recipe.seed,
    )
    done, tokens, seconds, stopped = 0, 0, 0.0, False
    for i, prompt in enumerate(recipe.prompts):
        if should_stop():
            stopped = True
            break
        result = chat_once(
            loaded, build_messages(prompt, system=recipe.system), settings, should_stop=should_stop
        )
        line = {
            "prompt": prompt,
            "response": result.text,
            "completion_tokens": result.completion_tokens,
            "seconds": result.seconds,
        }
        if result.finish_reason == "cancelled":
            line["stopped"] = True
        with open(outputs, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        if result.finish_reason == "cancelled":
            stopped = True
            break
        done += 1
        tokens += result.completion_tokens
        seconds += result.seconds
        progress(
            step=i + 1,
            total=total,
            message=f"answered prompt {i + 1} of {total}",
            tokens_per_s=result.tokens_per_s,
        )
    summary = {
        "answers": done,
        "outputs": str(outputs),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0,
        "device": loaded.device,
        "dtype": loaded.dtype,
    }
    if stopped:
        summary["stopped"] = True
    return summary
