"""Task kinds: how a task turns its samples into prompts, asks an engine, and scores the answers.

A `Task` is data (samples, template, few-shot examples, metric); its `kind` names the code that
runs it (KINDS, a name -> object table). Each kind has the same small interface:

    check(task)                          raise InvalidInput naming the bad sample and field
    prompt(task, sample) -> str          the exact text the model sees (shown in the UI)
    score(task, samples, engine, ctx)    yield one SampleResult per sample, batched inside
    aggregate(task, results, seed)       {metric: Estimate} with bootstrap intervals

The prompts each kind builds (also in PROMPT_DOCS, shown on the Evaluate page):

multiple_choice  log-likelihood of each choice after the context, no chat template:
                 context = few-shot blocks + template.format(question=...)
                 (default "Question: {question}\\nAnswer:", Chinese "问题：{question}\\n答案：");
                 continuation = delimiter (" " for English, "" for Chinese) + the choice text,
                 or " A", " B"... with `choice_style: letters` (then {choices} lists them).
                 A few-shot block is context + delimiter + the right choice + "\\n\\n".
                 acc: the choice with the highest log-likelihood is right; acc_norm: the same
                 with the log-likelihood divided by the choice's length in characters (what
                 lm-evaluation-harness calls acc_norm).
generation       chat messages through the model's chat template: the system prompt if any,
                 each few-shot example as a user turn and an assistant turn, then the user turn
                 template.format(question=...) (default "{question}"); greedy decoding; the
                 answer is read by the metric: numeric (the number after "Answer:"/"答案：",
                 else the last number), exact (the text after the marker, else the first line,
                 compared without case, spaces and punctuation), contains, or instructions
                 (every check of the sample's `checks` list must pass).
perplexity       log-likelihood of the text after the BOS token; bits per byte over
                 the whole set (lower is better; comparable across tokenizers).
identity         the held-out question alone as a user turn; counts answers that say the
                 expected name (and, separately, the author).
judge, arena     see judge.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from workbench.errors import InvalidInput
from workbench.evaluate import checks as chk
from workbench.evaluate.stats import Estimate, mean_ci, ratio_ci

KIND_NAMES = (
    "multiple_choice",
    "generation",
    "perplexity",
    "identity",
    "judge",
    "arena",
    "preference",
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_MC_TEMPLATE = {"en": "Question: {question}\nAnswer:", "zh": "问题：{question}\n答案："}
DEFAULT_DELIMITER = {"en": " ", "zh": ""}
GENERATION_METRICS = ("numeric", "exact", "contains", "instructions")


@dataclass
class Task:
    """A named set of samples and how to ask and score them.

    Attributes:
        name: unique name ("mc-en", or the file's stem for a task file).
        kind: one of KIND_NAMES.
        samples: dicts, each with an "id"; the fields a kind needs (question, choices, answer,
            text, checks...).
        language: "en" or "zh" (picks default templates; also shown in tables).
        capability: what it measures (knowledge, reasoning, math, instructions, identity,
            language, preference) — the radar chart's axes.
        template: prompt template with {question} (and {choices} for multiple choice).
        fewshot: solved examples put before each question.
        metric: generation: numeric | exact | contains | instructions.
        system: system prompt for chat kinds ("" keeps the model's own).
        delimiter: multiple choice: text between the context and each choice.
        choice_style: multiple choice: "text" (score the choice text) or "letters".
        max_new_tokens: generation limit for chat kinds.
        description, source: shown with the task.
        options: kind-specific settings (identity: name, author; judge: judge, reference).
    """

    name: str
    kind: str
    samples: list[dict]
    language: str = "en"
    capability: str = "general"
    template: str = ""
    fewshot: list[dict] = field(default_factory=list)
    metric: str = ""
    system: str = ""
    delimiter: str | None = None
    choice_style: str = "text"
    max_new_tokens: int = 128
    description: str = ""
    source: str = ""
    options: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Hash of everything but the samples that changes what a sample's score means."""
        spec = {
            k: v for k, v in asdict(self).items() if k not in ("samples", "description", "source")
        }
        spec["kind_version"] = KINDS[self.kind].version if self.kind in KINDS else 0
        return _digest(spec)[:16]

    def sample_key(self, sample: dict) -> str:
        """The sample's id plus a hash of its content: an edited sample is scored again."""
        return f"{sample['id']}:{_digest(sample)[:12]}"

    def mc_template(self) -> str:
        return self.template or DEFAULT_MC_TEMPLATE.get(self.language, DEFAULT_MC_TEMPLATE["en"])

    def mc_delimiter(self) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return DEFAULT_DELIMITER.get(self.language, " ")


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class SampleResult:
    """One sample scored for one model: its scores, the model's output and the right answer."""

    id: str
    scores: dict[str, float]
    output: str = ""
    target: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SampleResult:
        return cls(**{k: data[k] for k in ("id", "scores", "output", "target", "details")})


@dataclass
class RunContext:
    """What a kind may need beyond the task and the engine."""

    batch_size: int = 16
    should_stop: Callable[[], bool] = lambda: False
    model: str = ""
    extra: dict = field(default_factory=dict)  # judge engine, baseline answers, votes...


class TaskKind(Protocol):
    name: str
    version: int
    metrics: tuple[str, ...]  # the first is the headline metric
    lower_is_better: tuple[str, ...]
    needs_engine: bool

    def check(self, task: Task) -> None: ...

    def prompt(self, task: Task, sample: dict) -> str: ...

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]: ...

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict: ...


def bad_sample(task: Task, sample: dict, what: str, fix: str) -> InvalidInput:
    """An InvalidInput that names the task, the sample (its id, or its line) and the problem."""
    return InvalidInput(
        f"Task {task.name!r}, sample {sample.get('id')!r}: {what}",
        where=f"{task.source or task.name}: sample {sample.get('id')}",
        fix=fix,
    )


def mean_metrics(metrics: tuple[str, ...], results: list[SampleResult], seed: int) -> dict:
    """{metric: Estimate} as the mean of each per-sample score (samples without it are skipped)."""
    out = {}
    for metric in metrics:
        values = [r.scores[metric] for r in results if r.scores.get(metric) is not None]
        out[metric] = mean_ci(values, seed=seed)
    return out


def render_messages(messages: list[dict]) -> str:
    """Chat messages as readable text (the model's chat template wraps them the same way)."""
    return "\n".join(f"<{m['role']}>\n{m['content']}" for m in messages)


def collect(pieces: Iterator[str]) -> str:
    return "".join(pieces)


# --- multiple choice -----------------------------------------------------------------------


class MultipleChoice:
    name = "multiple_choice"
    version = 1
    metrics = ("acc", "acc_norm")
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    def check(self, task: Task) -> None:
        if task.choice_style not in ("text", "letters"):
            raise InvalidInput(
                f"Task {task.name!r}: choice_style is {task.choice_style!r}.",
                where=task.source or task.name,
                fix="Use 'text' (score each choice's text) or 'letters' (score A, B, C...).",
            )
        for sample in [*task.samples, *task.fewshot]:
            choices = sample.get("choices")
            if not isinstance(choices, list) or len(choices) < 2:
                raise bad_sample(
                    task, sample, "needs `choices`, a list of at least two answers.",
                    'Write e.g. "choices": ["Paris", "Lyon", "Nice"].',
                )  # fmt: skip
            if not all(isinstance(c, str) and c.strip() for c in choices):
                raise bad_sample(
                    task, sample, "a choice is empty or not text.", "Give each choice text."
                )
            answer = sample.get("answer")
            if not isinstance(answer, int) or isinstance(answer, bool):
                raise bad_sample(
                    task, sample, f"`answer` is {answer!r}, not a choice index.",
                    "Use a 0-based index or a letter (A = first choice).",
                )  # fmt: skip
            if not 0 <= answer < len(choices):
                raise bad_sample(
                    task, sample,
                    f"`answer` {answer} is out of range: there are {len(choices)} choices "
                    f"(0 to {len(choices) - 1}, or A to {LETTERS[len(choices) - 1]}).",
                    "Point `answer` at one of the choices (0-based index or letter).",
                )  # fmt: skip

    def _context(self, task: Task, sample: dict) -> str:
        listing = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(sample["choices"]))
        return task.mc_template().format(question=sample.get("question", ""), choices=listing)

    def continuations(self, task: Task, sample: dict) -> list[str]:
        delimiter = task.mc_delimiter()
        if task.choice_style == "letters":
            return [delimiter + LETTERS[i] for i in range(len(sample["choices"]))]
        return [delimiter + c for c in sample["choices"]]

    def context(self, task: Task, sample: dict) -> str:
        shots = "".join(
            self._context(task, s) + self.continuations(task, s)[s["answer"]] + "\n\n"
            for s in task.fewshot
        )
        return shots + self._context(task, sample)

    def prompt(self, task: Task, sample: dict) -> str:
        context = self.context(task, sample)
        return "\n".join(
            [context + "⟦" + c + "⟧" for c in self.continuations(task, sample)]
        )  # one line per scored choice: the bracketed part is what is scored

    def requests(self, task: Task, sample: dict) -> list[tuple[str, str]]:
        context = self.context(task, sample)
        return [(context, c) for c in self.continuations(task, sample)]

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        per_batch = max(1, ctx.batch_size // 4)
        for start in range(0, len(samples), per_batch):
            if ctx.should_stop():
                return
            batch = samples[start : start + per_batch]
            requests = [r for s in batch for r in self.requests(task, s)]
            scored = engine.loglikelihood(requests)
            offset = 0
            for sample in batch:
                n = len(sample["choices"])
                logliks = [ll for ll, _ in scored[offset : offset + n]]
                offset += n
                yield self.result(task, sample, logliks)

    def result(self, task: Task, sample: dict, logliks: list[float]) -> SampleResult:
        lengths = [len(c) for c in sample["choices"]]
        if task.choice_style == "letters":
            lengths = [1] * len(lengths)
        pick = max(range(len(logliks)), key=lambda i: logliks[i])
        pick_norm = max(range(len(logliks)), key=lambda i: logliks[i] / lengths[i])
        return SampleResult(
            id=str(sample["id"]),
            scores={"acc": float(pick == sample["answer"]), "acc_norm": float(pick_norm == sample["answer"])},
            output=sample["choices"][pick],
            target=sample["choices"][sample["answer"]],
            details={"logliks": [round(x, 4) for x in logliks], "pick_norm": pick_norm},
        )  # fmt: skip

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


# --- generation ----------------------------------------------------------------------------


def chat_messages(task: Task, question: str) -> list[dict]:
    """The messages a generation task sends: system, few-shot turns, then the question."""
    template = task.template or "{question}"
    messages = [{"role": "system", "content": task.system}] if task.system else []
    for shot in task.fewshot:
        answer = shot.get("output") or shot.get("answer", "")
        messages += [
            {"role": "user", "content": template.format(question=shot.get("question", ""))},
            {"role": "assistant", "content": str(answer)},
        ]
    messages.append({"role": "user", "content": template.format(question=question)})
    return messages


def generate(engine: Any, messages: list[dict], max_new_tokens: int) -> str:
    from workbench.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    return collect(engine.chat(messages, settings)).strip()


def generate_all(
    engine: Any,
    conversations: list[list[dict]],
    max_new_tokens: int,
    *,
    window: int = 8,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    """Greedy answers to `conversations`, in order, with up to `window` requests in flight.

    Each request is read by its own thread; a local engine decodes the requests it holds in one
    batched step, so several in flight make generation several times faster. Answers still come
    back in order; a request that fails raises when its turn comes, after the answers before it.
    """
    import threading

    from workbench.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    results: dict[int, Any] = {}  # index -> answer text, or the exception that ended it
    streams: dict[int, Any] = {}
    threads: dict[int, threading.Thread] = {}

    def read(index: int) -> None:
        try:
            streams[index] = engine.chat(conversations[index], settings)
            results[index] = collect(streams[index]).strip()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in its turn
            results[index] = exc

    started = 0
    try:
        for index in range(len(conversations)):
            while started < len(conversations) and started < index + max(1, window):
                threads[started] = threading.Thread(
                    target=read, args=(started,), name=f"eval-generate-{started}", daemon=True
                )
                threads[started].start()
                started += 1
            threads[index].join()
            outcome = results.pop(index)
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome
            if should_stop():
                return
    finally:  # stopped or failed: let the requests still running go
        for index, thread in threads.items():
            abort = getattr(streams.get(index), "abort", None)
            if thread.is_alive() and abort is not None:
                abort()
        for thread in threads.values():
            thread.join(timeout=60)


def answers_of(sample: dict) -> list[str]:
    answer = sample.get("answer")
    return [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]


class Generation:
    name = "generation"
    version = 1
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("accuracy", "check_rate")

    def metrics_for(self, task: Task) -> tuple[str, ...]:
        return ("accuracy", "check_rate") if task.metric == "instructions" else ("accuracy",)

    def check(self, task: Task) -> None:
        if task.metric not in GENERATION_METRICS:
            raise InvalidInput(
                f"Task {task.name!r}: metric {task.metric!r} is not a generation metric.",
                where=task.source or task.name,
                fix=f"Use one of: {', '.join(GENERATION_METRICS)}.",
            )
        for sample in task.samples:
            if not str(sample.get("question", "")).strip():
                raise bad_sample(task, sample, "has no `question`.", "Give each sample a question.")
            if task.metric == "instructions":
                self._check_checks(task, sample)
            elif sample.get("answer") in (None, "", []):
                raise bad_sample(
                    task, sample, "has no `answer`.",
                    "Give the expected answer (a list gives several accepted answers).",
                )  # fmt: skip

    def _check_checks(self, task: Task, sample: dict) -> None:
        items = sample.get("checks")
        if not isinstance(items, list) or not items:
            raise bad_sample(
                task, sample, "needs `checks`, a list like [{\"type\": \"lowercase\"}].",
                f"Check types: {', '.join(chk.CHECKS)}.",
            )  # fmt: skip
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in chk.CHECKS:
                raise bad_sample(
                    task,
                    sample,
                    f"unknown check {kind!r}.",
                    f"Use one of: {', '.join(chk.CHECKS)}.",
                )
            if kind in chk.CHECKS_WITH_VALUE and item.get("value") in (None, ""):
                raise bad_sample(task, sample, f"check {kind!r} needs a `value`.", "Add one.")

    def prompt(self, task: Task, sample: dict) -> str:
        return render_messages(chat_messages(task, str(sample.get("question", ""))))

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        conversations = [chat_messages(task, str(s["question"])) for s in samples]
        outputs = generate_all(
            engine, conversations, task.max_new_tokens,
            window=max(1, ctx.batch_size // 4), should_stop=ctx.should_stop,
        )  # fmt: skip
        for sample, output in zip(samples, outputs, strict=False):
            yield self.judge_output(task, sample, output)

    def judge_output(self, task: Task, sample: dict, output: str) -> SampleResult:
        """Score one generated output (also used on its own in tests and reports)."""
        if task.metric == "instructions":
            passed = chk.run_checks(output, sample["checks"])
            failed = [c["type"] for c, ok in zip(sample["checks"], passed, strict=True) if not ok]
            return SampleResult(
                id=str(sample["id"]),
                scores={"accuracy": float(all(passed)), "check_rate": sum(passed) / len(passed)},
                output=output,
                target=", ".join(c["type"] for c in sample["checks"]),
                details={"failed_checks": failed},
            )
        ok, extracted = chk.MATCHERS[task.metric](output, answers_of(sample))
        return SampleResult(
            id=str(sample["id"]),
            scores={"accuracy": float(ok)},
            output=output,
            target=" | ".join(answers_of(sample)),
            details={"extracted": extracted},
        )

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics_for(task), results, seed)


# --- perplexity ----------------------------------------------------------------------------


class Perplexity:
    name = "perplexity"
    version = 1
    metrics = ("bits_per_byte", "byte_perplexity")
    lower_is_better = ("bits_per_byte", "byte_perplexity")
    needs_engine = True

    def check(self, task: Task) -> None:
        for sample in task.samples:
            if not str(sample.get("text", "")).strip():
                raise bad_sample(task, sample, "has no `text`.", "Give each sample some text.")

    def prompt(self, task: Task, sample: dict) -> str:
        return "<bos>" + "⟦" + sample["text"] + "⟧"

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        per_batch = max(1, ctx.batch_size // 4)
        for start in range(0, len(samples), per_batch):
            batch = samples[start : start + per_batch]
            scored = engine.loglikelihood([("", s["text"]) for s in batch])
            for sample, (loglik, _) in zip(batch, scored, strict=True):
                nbytes = len(sample["text"].encode("utf-8"))
                bits = -loglik / math.log(2) / nbytes
                yield SampleResult(
                    id=str(sample["id"]),
                    scores={"bits_per_byte": bits, "byte_perplexity": 2**bits},
                    output="",
                    target=sample["text"][:80],
                    details={"loglik": round(loglik, 4), "bytes": nbytes},
                )

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        nats = [-r.details["loglik"] / math.log(2) for r in results]
        sizes = [r.details["bytes"] for r in results]
        bpb = ratio_ci(nats, sizes, seed=seed)
        return {
            "bits_per_byte": bpb,
            "byte_perplexity": Estimate(2**bpb.value, 2**bpb.low, 2**bpb.high, bpb.n),
        }


# --- identity ------------------------------------------------------------------------------


class Identity:
    name = "identity"
    version = 1
    metrics = ("name_rate", "author_rate")
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    def check(self, task: Task) -> None:
        for sample in task.samples:
            if not str(sample.get("question", "")).strip():
                raise bad_sample(task, sample, "has no `question`.", "Give each probe a question.")

    def prompt(self, task: Task, sample: dict) -> str:
        return render_messages(chat_messages(task, sample["question"]))

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        name = (task.options.get("name") or "").strip()
        author = (task.options.get("author") or "").strip()
        if not name:
            raise InvalidInput(
                f"Task {task.name!r} needs the name the model should give itself.",
                where=f"task {task.name}: option 'name'",
                fix="Pass --identity-name (and --identity-author), or evaluate a model tuned on a "
                "self-cognition dataset made by Workbench (its name is read from the lineage).",
            )
        conversations = [chat_messages(task, s["question"]) for s in samples]
        outputs = generate_all(
            engine, conversations, task.max_new_tokens,
            window=max(1, ctx.batch_size // 4), should_stop=ctx.should_stop,
        )  # fmt: skip
        for sample, output in zip(samples, outputs, strict=False):
            folded = output.casefold()
            scores = {"name_rate": float(name.casefold() in folded)}
            if author:
                scores["author_rate"] = float(author.casefold() in folded)
            yield SampleResult(
                id=str(sample["id"]),
                scores=scores,
                output=output,
                target=f"{name} / {author}" if author else name,
            )

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


KINDS: dict[str, Any] = {
    "multiple_choice": MultipleChoice(),
    "generation": Generation(),
    "perplexity": Perplexity(),
    "identity": Identity(),
}
# judge.py adds "judge" and "arena" to KINDS; importing it here makes the table complete.
from workbench.agent import eval_kind as _agent  # noqa: E402, F401
from workbench.evaluate import judge as _judge  # noqa: E402, F401
from workbench.evaluate import preference as _preference  # noqa: E402, F401


def headline_metric(task: Task) -> str:
    """The metric a leaderboard shows for `task`."""
    kind = KINDS[task.kind]
    return kind.metrics_for(task)[0] if hasattr(kind, "metrics_for") else kind.metrics[0]


def check_task(task: Task) -> Task:
    """Raise InvalidInput unless the task is well formed; returns it."""
    if task.kind not in KINDS:
        raise InvalidInput(
            f"Task {task.name!r} has an unknown kind {task.kind!r}.",
            where=task.source or task.name,
            fix=f"Use one of: {', '.join(KINDS)}.",
        )
    seen: set[str] = set()
    for sample in task.samples:
        key = str(sample.get("id"))
        if key in seen:
            raise bad_sample(
                task, sample, "has the same id as an earlier sample.", "Make ids unique."
            )
        seen.add(key)
    KINDS[task.kind].check(task)
    return task
