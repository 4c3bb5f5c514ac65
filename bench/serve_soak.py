"""Reliability of `workbench serve` under load: 16 clients for a minute against a real server.

    python bench/serve_soak.py                       # embedded model, 16 clients, 60 s
    python bench/serve_soak.py --clients 16 --seconds 60 --model default

Starts the server as a subprocess on a free port of 127.0.0.1, learns each prompt's greedy
answer once, then has every client loop until time is up: mostly streaming requests (each
answer must equal its prompt's reference: nothing lost or mixed up), some non-streaming, some
bad requests (each must get its 4xx error object) and some clients that hang up mid-stream.
Prints the counts, then checks with /health that no stream is left open. "diverged" counts
answers that are neither their reference nor any other prompt's: with packed weights and bf16
activations a row's numbers depend a little on what it is batched with, so greedy answers can
part ways late; `--weights model` (float32) should give none.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
from openai import BadRequestError, OpenAI

PROMPTS = [
    f"In one sentence, what is {thing}?"
    for thing in (
        "a CPU",
        "a GPU",
        "Paris",
        "Python",
        "a neural network",
        "the moon",
        "music",
        "a river",
    )
]
MAX_TOKENS = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--weights", default="auto", help="the server's --weights")
    args = parser.parse_args()

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench",
            "serve",
            "--model",
            args.model,
            "--port",
            "0",
            "--json",
            "--slots",
            "8",
            "--weights",
            args.weights,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    url = json.loads(server.stdout.readline())["url"]
    client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)

    def ask(prompt: str, stream: bool) -> str:
        kwargs = {"model": args.model, "messages": [{"role": "user", "content": prompt}]}
        reply = client.chat.completions.create(**kwargs, max_tokens=MAX_TOKENS, stream=stream)
        if not stream:
            return reply.choices[0].message.content
        return "".join(c.choices[0].delta.content or "" for c in reply if c.choices)

    reference = {p: ask(p, False) for p in PROMPTS}
    counts = {"ok": 0, "diverged": 0, "mixed_up": 0, "errors": 0}
    counts.update(bad_requests_refused=0, hung_up=0)
    tokens = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def run(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            roll, prompt = rng.random(), rng.choice(PROMPTS)
            try:
                if roll < 0.1:
                    try:
                        client.chat.completions.create(model=args.model, messages=[], max_tokens=4)
                        count("errors")
                    except BadRequestError:
                        count("bad_requests_refused")
                elif roll < 0.2:
                    body = {
                        "model": args.model,
                        "stream": True,
                        "max_tokens": 400,
                        "messages": [{"role": "user", "content": prompt}],
                    }
                    with httpx.stream("POST", f"{url}/chat/completions", json=body) as r:
                        next(r.iter_lines())
                    count("hung_up")
                else:
                    text = ask(prompt, stream=roll < 0.8)
                    if text == reference[prompt]:
                        count("ok")
                    elif text in reference.values():  # another prompt's answer: a mix-up
                        count("mixed_up")
                    else:  # same prompt, other numbers in a different batch (bf16 kernels)
                        count("diverged")
                    with lock:
                        tokens[0] += MAX_TOKENS
            except Exception as exc:  # noqa: BLE001 - counted
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                count("errors")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    time.sleep(1.0)
    health = httpx.get(url.removesuffix("/v1") + "/health").json()
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
    answers = counts["ok"] + counts["diverged"] + counts["mixed_up"]
    print(f"{args.clients} clients for {took:.0f} s against {args.model}: {counts}")
    print(
        f"answers: {answers} ({answers / max(took, 1):.2f}/s); "
        f"open streams after: {health['active']}, engine active: {health['engine']['active']}; "
        f"server exit status {code}"
    )
    good = counts["mixed_up"] == 0 and counts["errors"] == 0 and health["engine"]["active"] == 0
    print("PASS" if good and code == 0 else "FAIL")


if __name__ == "__main__":
    main()
