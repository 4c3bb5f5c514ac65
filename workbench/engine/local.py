"""The local engine: a model from the workspace (base, adapter, merged, quantized) on this machine.

`open_local` loads the model with `load_model`, picks a runner and starts the decode loop:

- the lean runner (lean.py) for Llama-family models: fused matmuls, preallocated cache, per-step
  batching of concurrent requests, and on CPU packed weights. `weights="auto"` picks, on CPU,
  int4 for layers whose weights lose nothing in int4 (a model that came from a 4-bit GGUF file,
  like the embedded one; the output head ranks in int4 and its best 64 are rescored with the
  dense weights), else bf16 where the CPU has native
  bf16, else the model's dtype; on a GPU the model's dtype. Packed weights run with bf16
  activations (torch's int8/int4 CPU kernels are fast only with bf16 inputs);
- the plain runner (runners.py) for everything else (an adapter is merged into a copy first).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from workbench.engine.batching import DONE, DecodeLoop, Request
from workbench.engine.stream import TextStream
from workbench.errors import InvalidInput, WorkbenchError
from workbench.generate import GenerationSettings
from workbench.workspace import Workspace

DEFAULT_SLOTS = 8
DEFAULT_MAX_LEN = 4096
SCORE_BATCH_TOKENS = 4096  # rows per scoring batch are chosen to stay under this many tokens


def open_local(
    name: str,
    ws: Workspace | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    weights: str = "auto",
    slots: int = DEFAULT_SLOTS,
    max_len: int = 0,
    trust_remote_code: bool = False,
    runner: str = "auto",
    threads: int = 0,
    loaded: Any = None,
) -> LocalEngine:
    """Load `name` and start serving it.

    Args:
        device, dtype: as for `load_model` ("auto" chooses).
        weights: auto | model | bfloat16 | int8 | int4 (the last two on CPU only).
        slots: requests decoded together at most; more wait their turn.
        max_len: tokens per request (prompt + answer); 0 means min(4096, the model's context).
        runner: auto (lean where the model allows it), lean, or plain (transformers' forward).
        threads: torch threads for this process (0: WORKBENCH_ENGINE_THREADS, else torch's
            default). On a machine busy with other work, 1 thread can be much faster for
            batched decoding: multi-threaded matmuls stall when their threads wait for a core.
        loaded: an already loaded model (`LoadedModel`) to use instead of loading `name`.

    Raises:
        WorkbenchError: what `load_model` raises; a weights format this device cannot run.
    """
    from workbench.hardware import resolve_device
    from workbench.models import load_model

    if weights not in ("auto", "model", "bfloat16", "int8", "int4"):
        raise InvalidInput(
            f"Unknown weights format {weights!r}.",
            where="weights",
            fix="Use auto, model, bfloat16, int8 or int4.",
        )
    if slots < 1 or slots > 256:
        raise InvalidInput(f"slots is {slots}; use 1 to 256.", where="slots", fix="Use 8.")
    threads = threads or int(os.environ.get("WORKBENCH_ENGINE_THREADS", "0") or 0)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    device = resolve_device(device)
    if weights in ("int8", "int4") and device != "cpu":
        raise InvalidInput(
            f"weights={weights} runs on the CPU only (its kernels are CPU kernels).",
            where="weights",
            fix="Use weights=auto on a GPU, or a quantized model from the Quantize step.",
        )
    if loaded is None:
        # On CPU with weights=auto, load in float32 so that lossless int4 can be recognised
        # (bf16 rounding would move the weights off their 4-bit grid).
        load_dtype = (
            "float32" if device == "cpu" and weights == "auto" and dtype == "auto" else dtype
        )
        loaded = load_model(
            name, ws, device=device, dtype=load_dtype, trust_remote_code=trust_remote_code
        )
    return LocalEngine(
        name, loaded, weights=weights, slots=slots, max_len=max_len, dtype=dtype, runner=runner
    )


def _choose_weights(model: Any, weights: str, device: str, dtype: str) -> str:
    from workbench.engine.lean import int4_is_lossless, is_quantized
    from workbench.hardware import cpu_supports_bf16

    if is_quantized(model):  # a model from the Quantize step decodes with its own codes
        if weights not in ("auto", "model"):
            raise InvalidInput(
                f"The model is already quantized; weights={weights} would quantize it again.",
                where="weights",
                fix="Use weights=auto (its own int8/int4 layers), or pick its float source.",
            )
        return "model"
    if weights != "auto":
        return weights
    if device != "cpu":
        return "model"
    import torch

    param_dtype = next(model.parameters()).dtype
    layers = model.model.layers
    # A model whose layers sit on a 4-bit grid (one dequantized from a Q4 GGUF, like the
    # embedded model) loses nothing in int4, and int4 reads a quarter of the bytes of bf16.
    if param_dtype == torch.float32 and all(
        int4_is_lossless(layer.mlp.down_proj.weight)
        and int4_is_lossless(layer.self_attn.q_proj.weight)
        for layer in (layers[0], layers[len(layers) // 2], layers[-1])
    ):
        return "int4"
    if dtype == "auto" and param_dtype == torch.float32 and cpu_supports_bf16():
        return "bfloat16"
    return "model"


class LocalEngine:
    """A loaded model behind the Engine protocol (see workbench.engine)."""

    backend = "local"

    def __init__(
        self,
        name: str,
        loaded: Any,
        *,
        weights: str = "auto",
        slots: int = DEFAULT_SLOTS,
        max_len: int = 0,
        dtype: str = "auto",
        runner: str = "auto",
    ) -> None:

        from workbench import cpu_gemv
        from workbench.engine.lean import LeanModel, supports
        from workbench.engine.runners import HFRunner

        self.name = name
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        model = loaded.model
        config = model.config
        context = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LEN
        self.max_len = min(max_len or DEFAULT_MAX_LEN, context)
        self.end_ids = _end_ids(model, self.tokenizer)
        if type(model).__name__.startswith("Peft"):
            model = model.merge_and_unload()  # the adapter's effect, at the base model's speed
        why_not = supports(model) if runner != "plain" else "asked for"
        if why_not and runner == "lean":
            raise InvalidInput(
                f"The lean decode loop cannot run {name!r}: {why_not}.",
                where="runner",
                fix="Use runner auto (it falls back to the plain transformers forward).",
            )
        if why_not:
            self.runner: Any = HFRunner(model, slots=slots, max_len=self.max_len)
            self.path = f"plain transformers forward ({why_not})"
        else:
            chosen = _choose_weights(model, weights, loaded.device, dtype)
            head = chosen  # a packed head's best candidates are rescored densely (lean.py)
            self.runner = LeanModel(
                model, slots=slots, max_len=self.max_len, weights=chosen, head=head
            )
            self.path = f"lean decode loop, weights {chosen}, head {head}"
            if self.runner.stack is not None:
                isa = "AVX-512" if cpu_gemv.uses_avx512() else "AVX2"
                self.path += f", fused C++ decoder ({isa} kernels)"
                if self.runner.torch_prompts:
                    self.path += ", prompts on torch's bf16 kernels"
            elif chosen in ("int8", "int4"):
                why = cpu_gemv.why_unavailable()
                self.path += f", torch's kernels ({why})" if why else ", AVX2 kernels"
            del model  # the lean model holds (or shares) every weight it needs
        self.weights = self.runner.weights
        self.dtype = str(getattr(self.runner, "act", loaded.dtype)).replace("torch.", "")
        self.loop = DecodeLoop(self.runner, name=f"decode-{name}")

    # --- the protocol ------------------------------------------------------------------------

    def chat(self, messages: list[dict], settings: GenerationSettings) -> TextStream:
        """Stream the answer to chat `messages` (the model's chat template makes the prompt)."""
        return self._generate(self.encode_chat(messages), settings)

    def complete(self, prompt: str, settings: GenerationSettings) -> TextStream:
        """Stream the continuation of plain text `prompt` (no chat template)."""
        if not prompt:
            raise InvalidInput("The prompt is empty.", where="prompt", fix="Give some text.")
        return self._generate(self.tokenizer(prompt)["input_ids"], settings)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each continuation after its context, and whether greedy
        decoding would produce exactly that continuation. Scored in batches.

        Raises:
            InvalidInput: an empty continuation, or a pair longer than the engine's max_len.
        """
        rows, starts = [], []
        for i, (context, continuation) in enumerate(requests):
            context_ids, continuation_ids = self.split_tokens(context, continuation)
            if not continuation_ids:
                raise InvalidInput(
                    f"Request {i} has an empty continuation.",
                    where=f"loglikelihood request {i}",
                    fix="Each request is (context, continuation) with some continuation text.",
                )
            row = context_ids + continuation_ids
            if len(row) > self.max_len:
                raise InvalidInput(
                    f"Request {i} is {len(row)} tokens; this engine reads at most {self.max_len}.",
                    where=f"loglikelihood request {i}",
                    fix="Shorten the context (fewer few-shot examples).",
                )
            rows.append(row)
            starts.append(len(context_ids))
        scored = self._score_rows(rows, starts)
        return [
            (float(sum(value.logprobs)), value.greedy_ids == row[start:])
            for value, row, start in zip(scored, rows, starts, strict=True)
        ]

    def prompt_logprobs(self, prompt: str) -> dict:
        """Each token of `prompt` with its log-probability given those before (None for the
        first), the most likely token there, and its character offset: what an OpenAI
        `/v1/completions` call with echo and logprobs returns."""
        encoded = self.tokenizer(prompt, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], [start for start, _ in encoded["offset_mapping"]]
        self.check_length(len(ids))
        tokens = [self.tokenizer.decode([i]) for i in ids]
        result = {"tokens": tokens, "token_logprobs": [None], "top_logprobs": [None]}
        result["text_offset"] = offsets
        if len(ids) > 1:
            (value,) = self._score_rows([ids], [1])
            result["token_logprobs"] += value.logprobs
            result["top_logprobs"] += [
                {self.tokenizer.decode([g]): lp}
                for g, lp in zip(value.greedy_ids, value.greedy_logprobs, strict=True)
            ]
        return result

    def _score_rows(self, rows: list[list[int]], starts: list[int]) -> list[Any]:
        """runner.score over rows in batches of similar length (longest first)."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: list[Any] = [None] * len(rows)
        batch: list[int] = []
        for i in [*order, None]:
            full = batch and len(rows[batch[0]]) * (len(batch) + 1) > SCORE_BATCH_TOKENS
            if batch and (i is None or full):
                with self.loop.lock:
                    scored = self.runner.score([rows[j] for j in batch], [starts[j] for j in batch])
                for j, value in zip(batch, scored, strict=True):
                    results[j] = value
                batch = []
            if i is not None:
                batch.append(i)
        return results

    def close(self) -> None:
        self.loop.close()

    # --- helpers -----------------------------------------------------------------------------

    def stats(self) -> dict:
        """Requests and tokens so far, and what runs now (the server's /health shows it)."""
        return {
            "requests_total": self.loop.requests_total,
            "tokens_total": self.loop.tokens_total,
            "active": self.loop.active,
            "waiting": self.loop.waiting,
            "slots": self.runner.slots,
            "path": self.path,
        }

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Prompt ids for chat messages, through the model's chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise WorkbenchError(
                f"The tokenizer of {self.name!r} has no chat template, so chat messages cannot be "
                "turned into a prompt.",
                where=f"model {self.name!r} (tokenizer_config.json / chat_template.jinja)",
                fix="Use an instruct/chat model, use plain completion instead, or give this model "
                "a chat template when fine-tuning it.",
            )
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def split_tokens(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of context and continuation as the model sees them together.

        The pair is tokenized as one text (as the model reads it); the continuation's tokens
        are those after the context's own tokens, which keeps a leading space attached to the
        continuation's first word the way the tokenizer merges it.
        """
        whole = self.tokenizer(context + continuation)["input_ids"]
        context_ids = self.tokenizer(context)["input_ids"] if context else []
        if whole[: len(context_ids)] == context_ids:
            return context_ids, whole[len(context_ids) :]
        continuation_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        return context_ids, continuation_ids

    def check_length(self, prompt_tokens: int) -> None:
        if prompt_tokens >= self.max_len:
            raise InvalidInput(
                f"The prompt is {prompt_tokens} tokens long, but this engine reads at most "
                f"{self.max_len} tokens (prompt and answer together).",
                where=f"model {self.name!r}: context length",
                fix="Shorten the prompt or the system prompt, clear the chat history, or serve "
                "the model with a larger max_len.",
            )

    def time_decode(self, ids: list[int], new_tokens: int) -> tuple[int, float]:
        """Greedy-decode exactly `new_tokens` after prompt `ids` (end tokens do not stop it):
        (tokens produced, seconds from the first token to the last), what a speed test needs.
        """
        self.check_length(len(ids) + new_tokens)
        request = self.loop.submit(Request(ids=list(ids), max_new_tokens=new_tokens))
        count, first = 0, 0.0
        while request.out.get() is not DONE:
            count += 1
            if count == 1:
                first = time.perf_counter()
        if request.error is not None:
            raise _generation_error(self.name, request.error) from request.error
        return count, time.perf_counter() - first if count else 0.0

    def _generate(self, ids: list[int], settings: GenerationSettings) -> TextStream:
        self.check_length(len(ids))
        request = Request(
            ids=list(ids),
            max_new_tokens=min(settings.max_new_tokens, self.max_len - len(ids)),
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
            end_ids=tuple(self.end_ids),
            logits_processor=(
                settings.constraint.processor(self.tokenizer, self.end_ids)
                if settings.constraint is not None
                else None
            ),
        )

        def pieces(stream: TextStream) -> Iterator[str]:
            self.loop.submit(request)
            emitted = ""
            try:
                while True:
                    item = request.out.get()
                    if item is DONE:
                        break
                    stream.token_ids.append(item)
                    stream.completion_tokens = len(stream.token_ids)
                    text = self.tokenizer.decode(stream.token_ids, skip_special_tokens=True)
                    if text.endswith("\ufffd"):
                        continue  # half of a multi-byte character: wait for the rest
                    if text.startswith(emitted):
                        piece, emitted = text[len(emitted) :], text
                        if piece:
                            yield piece
                if request.error is not None:
                    raise _generation_error(self.name, request.error) from request.error
                stream.set_finish(request.finish_reason)
            finally:
                request.cancel()  # a reader that left early frees the slot at the next step

        return TextStream(
            pieces, stop=settings.stop, on_abort=request.cancel, prompt_tokens=len(ids)
        )


def _end_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([] if ids is None else [ids])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _generation_error(name: str, error: BaseException) -> WorkbenchError:
    if type(error).__name__ in ("OutOfMemoryError", "MemoryError"):
        return WorkbenchError(
            f"Out of memory while generating with {name!r}.",
            where=f"model {name!r}",
            fix="Lower max_new_tokens or the number of slots, use a shorter prompt, close other "
            "jobs, or use a smaller or quantized model.",
        )
    return WorkbenchError(
        f"Generation with {name!r} failed: {type(error).__name__}: {error}",
        where=f"model {name!r}",
        fix="This is probably a bug in Workbench; the server log has the traceback.",
    )
