"""Decode speed of Workbench's local engine against transformers' `generate`, measured in one run.

    python bench/decode_speed.py                      # the embedded model, weights=auto
    python bench/decode_speed.py --weights model int8 int4 --tokens 64 --repeats 3
    python bench/decode_speed.py --threads 1          # on a busy machine (see README)

For the same model, prompt and number of new tokens it measures (medians of --repeats runs):
- `generate` (greedy, the model as `load_model` gives it): decode tokens/s, from the time of N
  new tokens minus the time of 1 (so the prompt's cost is not counted);
- the engine, single stream: decode tokens/s and time to first token for a short prompt;
- the engine, 8 concurrent requests: total tokens/s, and whether any request failed;
and prints each ratio to `generate` (and 8-stream total to single stream). The three run one
after another in each round, and each ratio is the median of the rounds' ratios. Also how often the
engine's greedy tokens equal `generate`'s (the packed formats may differ in a few tokens).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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


def generate_rate(loaded, ids: list[int], new_tokens: int) -> float:
    """One measurement of `generate`'s decode tokens/s (N new tokens minus 1, so no prompt)."""
    full = time_generate(loaded, ids, new_tokens)
    first = time_generate(loaded, ids, 1)
    return (new_tokens - 1) / max(full - first, 1e-9)


def engine_single(engine, new_tokens: int) -> tuple[float, float]:
    """One single-stream measurement: (decode tokens/s, seconds to the first token of "Hi")."""
    short = engine.chat(messages("Hi"), GenerationSettings(max_new_tokens=2))
    short.text()
    stream = engine.chat(messages(PROMPT), GenerationSettings(max_new_tokens=new_tokens))
    stream.text()
    return stream.tokens_per_s, short.first_token_s


def engine_concurrent(engine, new_tokens: int) -> tuple[float, int]:
    """One round of 8 concurrent requests: (total tokens/s, failed requests)."""
    settings = GenerationSettings(max_new_tokens=new_tokens)
    counts = [0] * len(CONCURRENT_PROMPTS)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
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
    return sum(counts) / (time.perf_counter() - started), len(errors)


class GenerateWorker:
    """`generate` in a process of its own (this script with --generate-worker): an engine in
    the same process leaves threads behind (its decode loop's OpenMP team), and with more OpenMP
    threads than cores every parallel region of `generate` waits for a sleeping thread to wake
    (measured: 17–38 tokens/s from one run to the next). Each `rate()` is one measurement, made
    while this process waits."""

    def __init__(self, model: str, new_tokens: int, threads: int) -> None:
        command = [sys.executable, __file__, "--generate-worker", "--model", model]
        command += ["--tokens", str(new_tokens), "--threads", str(threads)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.dtype = self._read()

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the generate worker ended; see its error above")
        return line.strip()

    def rate(self) -> float:
        self.process.stdin.write("rate\n")
        self.process.stdin.flush()
        return float(self._read())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def serve_generate(model: str, new_tokens: int) -> None:
    """The worker's side: load the model as `load_model` gives it, answer each 'rate' line."""
    reference = load_model(model, Workspace(), device="cpu")
    ids = prompt_ids(reference.tokenizer)
    time_generate(reference, ids, 2)  # warm-up
    print(reference.dtype, flush=True)
    for _ in sys.stdin:
        print(generate_rate(reference, ids, new_tokens), flush=True)


def prompt_ids(tokenizer) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages(PROMPT), add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def paired_rounds(baseline: GenerateWorker, engine, new_tokens: int, repeats: int) -> dict:
    """`repeats` rounds of generate, the engine's single stream and its 8 concurrent requests,
    one after another in each round, so that each ratio compares runs made moments apart (on a
    shared machine the speed of the same run drifts by tens of percent over minutes)."""
    engine.chat(messages("Hi"), GenerationSettings(max_new_tokens=4)).text()  # warm-up
    rounds = []
    for _ in range(repeats):
        hf = baseline.rate()
        single, first = engine_single(engine, new_tokens)
        together, failed = engine_concurrent(engine, new_tokens)
        rounds.append(
            {"hf": hf, "single": single, "first": first, "together": together, "failed": failed}
        )
    median = {
        k: statistics.median(r[k] for r in rounds) for k in ("hf", "single", "first", "together")
    }
    median["vs_generate"] = statistics.median(r["single"] / r["hf"] for r in rounds)
    median["vs_single"] = statistics.median(r["together"] / r["single"] for r in rounds)
    median["failed"] = sum(r["failed"] for r in rounds)
    return median


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
    parser.add_argument("--generate-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.generate_worker:
        serve_generate(args.model, args.tokens)
        return

    ws = Workspace()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}")
    baseline = GenerateWorker(args.model, args.tokens, args.threads)
    print(f"transformers generate: {baseline.dtype}, in its own process")
    for weights in args.weights:
        loaded = load_model(args.model, ws, device="cpu", dtype="float32")
        engine = LocalEngine(args.model, loaded, weights=weights, slots=8)
        try:
            m = paired_rounds(baseline, engine, args.tokens, args.repeats)
            same = agreement(engine, loaded, 32)
        finally:
            engine.close()
        print(
            f"engine weights={weights} ({engine.path}, activations {engine.dtype}), medians of "
            f"{args.repeats} rounds:\n"
            f"  generate      {m['hf']:.1f} tokens/s\n"
            f"  single stream {m['single']:.1f} tokens/s = {m['vs_generate']:.2f}x generate "
            f"(median of the rounds' ratios); first token {m['first'] * 1000:.0f} ms\n"
            f"  8 concurrent  {m['together']:.1f} tokens/s total = {m['vs_single']:.2f}x single, "
            f"{m['failed']} failed\n"
            f"  greedy tokens equal to generate's (prefix): {same:.0%}"
        )


if __name__ == "__main__":
    main()
