"""How long inspecting a dataset takes: read + validate, statistics, and exact tokenization.

    python bench/data_inspect.py [--rows 100000] [--cutoff 256] [--json]

Writes a seeded, realistic OpenAI-messages JSONL to a temporary folder: 1-3 turns, English,
Chinese and mixed text, ~5% exact repeats (some with other case or spacing), ~3% near repeats
(a few words changed), ~1% bad rows (malformed JSON, an empty answer, wrong role order). Then,
in one process (transformers imported and the tokenizer loaded before any timing):
  read       load_data(path): read, detect the format, validate every row;
  stats      stats.compute(samples, <default model's tokenizer>, cutoff): what dataset_stats
             does (token lengths, exact up to 20k rows and estimated above; turns, roles,
             languages, exact and near repeats) plus the per-row metrics the browser uses;
             wall and CPU time (all threads), since a busy machine stretches the wall time;
  exact      the baseline: render every row with the chat template and tokenize it all,
             so the estimate's error and speed-up are measured against it in the same run;
  browse     the Explore page's work per interaction, once the table is built (built once
             per dataset and cached): filter_rows with a search word, validity, a token range
             and turns, then page_of a 50-row page; median of a few queries.
Uses the default model's tokenizer from WORKBENCH_HOME (preparing it once if needed, ~40 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

EN_TEXT = (
    "the model data train learning rate batch size token text answer question code python "
    "function value list file error result test memory speed layer weight bias loss step "
    "epoch good simple fast small large new first last each every many some other people "
    "time year way day thing world life hand part child eye woman place work week case point "
    "government company number group problem fact be have do say get make go know take see "
    "come think look want give use find tell ask work seem feel try leave call good great "
    "high different important long little own right early young bad able city country river "
    "mountain computer network server client database query table index user account price "
    "market energy water food health school student teacher book story music film game team"
)
EN_WORDS = EN_TEXT.split()
ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
    "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点"
    "从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原"
    "又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革"
    "位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强"
    "放决西被干做必战先回则任取据处理模型数据训练学习率批量文本答案问题代码函数值列表文件错误结果测试内存"
)
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in short paragraphs.",
    "你是一个乐于助人的助手。",
    "You are an expert Python programmer.",
)


def _en_sentence(rng: random.Random, question: bool = False) -> str:
    words = [rng.choice(EN_WORDS) for _ in range(rng.randint(5, 18))]
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words)), str(rng.randint(1, 5000)))
    text = " ".join(words)
    return text[0].upper() + text[1:] + ("?" if question else rng.choice(".....!"))


def _zh_sentence(rng: random.Random, question: bool = False) -> str:
    parts = ["".join(rng.choices(ZH_CHARS, k=rng.randint(4, 14))) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.15:  # an English term inside Chinese text
        parts[-1] += " " + rng.choice(EN_WORDS) + " "
    return "，".join(parts) + ("？" if question else "。")


def _paragraphs(rng: random.Random, language: str, sentences: int, question: bool) -> str:
    make = _zh_sentence if language == "zh" else _en_sentence
    if language == "mixed":
        make = rng.choice((_zh_sentence, _en_sentence))
    out = [make(rng, question and i == sentences - 1) for i in range(sentences)]
    if not question and rng.random() < 0.08:
        out.append("```python\ndef f(x):\n    return x * " + str(rng.randint(2, 99)) + "\n```")
    return "\n\n".join(" ".join(out[i : i + 4]) for i in range(0, len(out), 4))


def _conversation(rng: random.Random) -> list[dict]:
    language = rng.choices(("en", "zh", "mixed"), weights=(0.6, 0.3, 0.1))[0]
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    for _ in range(rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]):
        question = _paragraphs(rng, language, rng.randint(1, 3), True)
        answer_sentences = max(1, min(40, int(rng.lognormvariate(1.5, 0.8))))
        answer = _paragraphs(rng, language, answer_sentences, False)
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return messages


def _near_copy(rng: random.Random, messages: list[dict]) -> list[dict]:
    """The same conversation with one to three words (or a few Chinese characters) changed."""
    messages = [dict(m) for m in messages]
    target = max(messages, key=lambda m: len(m["content"]))
    words = target["content"].split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        if words[i] and "\u4e00" <= words[i][0] <= "\u9fff":
            chars = list(words[i])
            for _ in range(min(3, len(chars))):
                chars[rng.randrange(len(chars))] = rng.choice(ZH_CHARS)
            words[i] = "".join(chars)
        else:
            words[i] = rng.choice(EN_WORDS)
    target["content"] = " ".join(words)
    return messages


def write_dataset(path: Path, rows: int, seed: int = 0) -> dict:
    """Write the bench JSONL; returns how many rows of each kind were planted."""
    rng = random.Random(seed)
    planted = {"exact": 0, "near": 0, "bad": 0}
    kept: list[list[dict]] = []
    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            roll = rng.random()
            if roll < 0.05 and kept:
                messages = [dict(m) for m in rng.choice(kept)]
                if rng.random() < 0.3:  # the same text up to case and spacing
                    messages[-1]["content"] = "  " + messages[-1]["content"].upper() + " "
                planted["exact"] += 1
            elif roll < 0.08 and kept:
                messages = _near_copy(rng, rng.choice(kept))
                planted["near"] += 1
            elif roll < 0.09:
                planted["bad"] += 1
                messages = _conversation(rng)
                kind = rng.randrange(3)
                if kind == 0:
                    out.write(json.dumps({"messages": messages}, ensure_ascii=False)[:-7] + "\n")
                    continue
                if kind == 1:
                    messages[-1]["content"] = ""
                else:
                    messages = [m for m in messages if m["role"] != "system"]
                    messages[0], messages[1] = messages[1], messages[0]
            else:
                messages = _conversation(rng)
                if len(kept) < 20_000:
                    kept.append(messages)
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return planted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated file")
    parser.add_argument("--cutoff", type=int, default=256, help="token cutoff to count rows over")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()

    import numpy as np
    import transformers

    from workbench.data.loading import load_data
    from workbench.data.stats import compute, token_lengths
    from workbench.models import ensure_default_model
    from workbench.workspace import Workspace

    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(ensure_default_model(Workspace()))

    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as folder:
        path = Path(folder) / "chat.jsonl"
        planted = write_dataset(path, args.rows, args.seed)
        size_mb = path.stat().st_size / 1e6

        started = time.perf_counter()
        loaded = load_data(path)
        read_s = time.perf_counter() - started

    samples = loaded.samples
    started, cpu = time.perf_counter(), time.process_time()
    stats, metrics = compute(samples, tokenizer, cutoff=args.cutoff, seed=args.seed)
    stats_s, stats_cpu = time.perf_counter() - started, time.process_time() - cpu

    from workbench.data.browse import browse_table, filter_rows, page_of

    started = time.perf_counter()
    table = browse_table(loaded, metrics)
    table_s = time.perf_counter() - started
    page_times = []
    for query, page in (("paris", 1), ("the model", 3), ("函数", 2), ("", 40), ("12", 1)):
        started = time.perf_counter()
        shown = filter_rows(table, query=query, validity="valid", max_tokens=200, turns=(1, 3))
        page_of(shown, page, 50)
        page_times.append(time.perf_counter() - started)
    page_s = statistics.median(page_times)

    started = time.perf_counter()
    exact = token_lengths(samples, tokenizer, exact_limit=len(samples)).values
    exact_s = time.perf_counter() - started

    if stats["tokens"]["exact"]:  # a small --rows run: force the estimate to measure its error
        lengths = token_lengths(samples, tokenizer, exact_limit=0, sample_size=len(samples) // 4)
        estimated, sampled, reported = lengths.values, lengths.sampled, lengths.relative_error
    else:
        estimated = metrics["tokens"].to_numpy(dtype=np.int64)
        sampled, reported = stats["tokens"]["sampled"], stats["tokens"]["relative_error"]
    # Over all rows as delivered: the sampled rows (4% of 100k) carry their exact count.
    error = np.abs(estimated - exact) / np.maximum(exact, 1)
    chars = sum(len(m["content"]) for s in samples for m in s["messages"])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "valid": len(samples),
        "invalid": len(loaded.errors),
        "planted": planted,
        "chars_per_row": round(chars / max(len(samples), 1)),
        "tokens_per_row": round(float(exact.mean()), 1),
        "read_validate_s": round(read_s, 2),
        "stats_s": round(stats_s, 2),
        "stats_cpu_s": round(stats_cpu, 2),
        "inspect_total_s": round(read_s + stats_s, 2),
        "browse_table_s": round(table_s, 2),
        "browse_page_median_s": round(page_s, 3),
        "browse_page_max_s": round(max(page_times), 3),
        "exact_tokenize_s": round(exact_s, 2),
        "stats_over_exact_tokenize": round(stats_s / exact_s, 3),
        "tokens_exact_in_stats": stats["tokens"]["exact"],
        "sampled": sampled,
        "estimate_reported_error": round(reported, 4),
        "estimate_median_error": round(float(np.median(error)), 4),
        "estimate_p95_error": round(float(np.percentile(error, 95)), 4),
        "over_cutoff_exact": int((exact > args.cutoff).sum()),
        "over_cutoff_estimated": int((estimated > args.cutoff).sum()),
        "cutoff": args.cutoff,
        "duplicates_found": {k: stats["duplicates"][k] for k in ("exact", "near")},
        "language": stats["language"],
    }
    if not args.json:
        print(f"machine: {result['machine']}; transformers {transformers.__version__}")
        print(
            f"{args.rows} rows, {size_mb:.1f} MB, {result['chars_per_row']} chars and "
            f"{result['tokens_per_row']} tokens per row; planted {planted}"
        )
        table = [
            ("read + validate (load_data)", read_s),
            ("statistics: stats.compute (tokens, repeats, ...)", stats_s),
            ("  the same, CPU time of all threads", stats_cpu),
            ("inspect total", read_s + stats_s),
            ("browse table, built once per dataset", table_s),
            ("a browse page: filters + page of 50, median", page_s),
            ("exact tokenization of every row (baseline)", exact_s),
        ]
        for name, seconds in table:
            print(f"  {name:<46} {seconds:7.2f} s")
        print(f"  statistics / exact tokenization: {result['stats_over_exact_tokenize']:.2f}")
        print(
            f"  token estimate from {sampled} tokenized rows, error over all rows as delivered: "
            f"median {result['estimate_median_error']:.1%}, p95 "
            f"{result['estimate_p95_error']:.1%} (the stats report {reported:.1%})"
        )
        print(
            f"  rows over {args.cutoff} tokens: exact {result['over_cutoff_exact']}, "
            f"estimated {result['over_cutoff_estimated']}"
        )
        print(f"  repeats found {result['duplicates_found']}; language {stats['language']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
