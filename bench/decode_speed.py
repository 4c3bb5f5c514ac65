"""Decode speed of Workbench's local engine against transformers' `generate`, measured in one run.

    python bench/decode_speed.py                      # the embedded model, weights=auto
    python bench/decode_speed.py --weights model int8 int4 --tokens 64 --repeats 3
    python bench/decode_speed.py --threads 1          # on a busy machine (see README)

For the same model, prompt and number of new tokens it measures (medians of --repeats runs):
- `generate` (greedy, the model as `load_model` gives it): decode tokens/s, from the time of N
  new tokens minus the time of 1 (so the prompt's cost is not counted);
- the engine, single stream: decode tokens/s and time to first token for a short prompt;
- the engine, 8 concurrent requests: total tokens/s, and whether any request failed;
and prints each ratio to `generate` (and 8-stream total to single stream). Also how often the
engine's greedy tokens equal `generate`'s (the packed formats may differ in a few tokens).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from workbench.engine.local import LocalEngine  # noqa: E402
from workbench.generate import GenerationSettings  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402

PROMPT = "Write a short story about a robot who learns to paint."
CONCURRENT_PROMPTS = [
    "Explain what a neural network is.",
    "Write a poem about the sea.",
    "What is the capital of France?",
    "Give me three tips for learning Python.",
    "Describe a sunset in the mountains.",
    "What is machine learning used for?",
    "Tell me a joke about computers.",
    "How do airplanes fly?",
]


def messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def time_generate(loaded, ids: list[int], new_tokens: int) -> float:
    tokens = torch.tensor([ids])
    started = time.perf_counter()
    with torch.inference_mode():
        loaded.model.generate(
            tokens,
            attention_mask=torch.ones_like(tokens),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return time.perf_counter() - started


def generate_speed(loaded, ids: list[int], new_tokens: int, repeats: int) -> float:
    time_generate(loaded, ids, 2)  # warm-up
    rates = []
    for _ in range(repeats):
        full = time_generate(loaded, ids, new_tokens)
        first = time_generate(loaded, ids, 1)
        rates.append((new_tokens - 1) / max(full - first, 1e-9))
    return statistics.median(rates)


def engine_single(engine, new_tokens: int, repeats: int) -> tuple[float, float]:
    settings = GenerationSettings(max_new_tokens=new_tokens)
    engine.chat(messages("Hi"), GenerationSettings(max_new_tokens=4)).text()  # warm-up
    rates, firsts = [], []
    for _ in range(repeats):
        short = engine.chat(messages("Hi"), GenerationSettings(max_new_tokens=2))
        short.text()
        firsts.append(short.first_token_s)
        stream = engine.chat(messages(PROMPT), settings)
        stream.text()
        rates.append(stream.tokens_per_s)
    return statistics.median(rates), statistics.median(firsts)


def engine_concurrent(engine, new_tokens: int, repeats: int) -> tuple[float, int]:
    settings = GenerationSettings(max_new_tokens=new_tokens)
    totals, failures = [], 0
    for _ in range(repeats):
        counts = [0] * len(CONCURRENT_PROMPTS)
        errors: list[BaseException] = []

        def ask(i: int, counts=counts, errors=errors) -> None:
            try:
                stream = engine.chat(messages(CONCURRENT_PROMPTS[i]), settings)
                stream.text()
                counts[i] = stream.completion_tokens
            except BaseException as exc:  # noqa: BLE001 - counted as a failure
                errors.append(exc)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(counts))]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        totals.append(sum(counts) / (time.perf_counter() - started))
        failures += len(errors)
    return statistics.median(totals), failures


def agreement(engine, loaded, new_tokens: int) -> float:
    """Share of greedy tokens equal to generate's, over the concurrent prompts."""
    same = total = 0
    for prompt in CONCURRENT_PROMPTS[:4]:
        stream = engine.chat(messages(prompt), GenerationSettings(max_new_tokens=new_tokens))
        stream.text()
        ids = engine.encode_chat(messages(prompt))
        with torch.inference_mode():
            out = loaded.model.generate(
                torch.tensor([ids]),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=engine.end_ids,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        reference = [t for t in out[0, len(ids) :].tolist() if t not in engine.end_ids]
        mine = stream.token_ids
        prefix = next(
            (i for i, (a, b) in enumerate(zip(mine, reference, strict=False)) if a != b),
            min(len(mine), len(reference)),
        )
        same += prefix
        total += max(len(reference), 1)
    return same / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--weights", nargs="+", default=["auto"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ws = Workspace()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}")
    reference = load_model(args.model, ws, device="cpu")
    ids = reference.tokenizer.apply_chat_template(
        messages(PROMPT), add_generation_prompt=True, tokenize=False
    )
    ids = reference.tokenizer(ids, add_special_tokens=False)["input_ids"]
    hf = generate_speed(reference, ids, args.tokens, args.repeats)
    print(f"transformers generate ({reference.dtype}): {hf:.1f} tokens/s")
    for weights in args.weights:
        loaded = load_model(args.model, ws, device="cpu", dtype="float32")
        engine = LocalEngine(args.model, loaded, weights=weights, slots=8)
        try:
            single, first = engine_single(engine, args.tokens, args.repeats)
            together, failed = engine_concurrent(engine, args.tokens, args.repeats)
            same = agreement(engine, reference, 32)
        finally:
            engine.close()
        print(
            f"engine weights={weights} ({engine.path}, activations {engine.dtype}):\n"
            f"  single stream {single:.1f} tokens/s = {single / hf:.2f}x generate; "
            f"first token {first * 1000:.0f} ms\n"
            f"  8 concurrent  {together:.1f} tokens/s total = {together / single:.2f}x single, "
            f"{failed} failed\n"
            f"  greedy tokens equal to generate's (prefix): {same:.0%}"
        )


if __name__ == "__main__":
    main()
