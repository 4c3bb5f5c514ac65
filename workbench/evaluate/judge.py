"""Preference task kinds: a pairwise LLM-as-judge, and win rates from the chat page's arena votes.

Pairwise judge. Each model answers the question (the generation prompt: the question alone as a
user turn, greedy). The judge — any engine: a local model, or a remote one such as
`openai:http://host:8000/v1#gpt-4o` — compares it with the opponent's answer: the sample's
`reference` answer, or else the first model of the run (the baseline). The judge is asked twice
with the answers swapped, since judges favour one position; a win counts 1, a tie 0.5, and the
sample's score is the mean of the two verdicts. The judge's prompt (JUDGE_PROMPT) asks for
[[A]], [[B]] or [[C]] (a tie); a reply without a verdict counts as a tie and is flagged.

Arena. The chat page's side-by-side votes (read with `workbench.chat_store.read_votes`): per
model, the share of its duels it won (ties 0.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from workbench.errors import InvalidInput
from workbench.evaluate.tasks import (
    KINDS,
    RunContext,
    SampleResult,
    Task,
    bad_sample,
    chat_messages,
    generate,
    mean_metrics,
    render_messages,
)

JUDGE_PROMPT = {
    "en": (
        "You are an impartial judge. Two assistants answered the same question. Decide which "
        "answer is more helpful, correct and clear; ignore length and the order of the answers.\n"
        "Reply with your verdict only: [[A]] if answer A is better, [[B]] if answer B is better, "
        "[[C]] for a tie.\n\n[Question]\n{question}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
        "Verdict:"
    ),
    "zh": (
        "你是一名公正的评审。两个助手回答了同一个问题。请判断哪个回答更有帮助、更正确、更清楚；"
        "不要受回答长度和先后顺序的影响。\n只回复结论：回答 A 更好写 [[A]]，回答 B 更好写 [[B]]，"
        "不分上下写 [[C]]。\n\n[问题]\n{question}\n\n[回答 A]\n{a}\n\n[回答 B]\n{b}\n\n结论："
    ),
}
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
LOOSE_VERDICT = re.compile(r"^\W*(A|B|C|tie)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """ "A", "B" or "C" (tie) from a judge's reply; None when it gave no verdict."""
    found = VERDICT.search(text)
    if found:
        return found.group(1)
    loose = LOOSE_VERDICT.search(text.strip())
    if loose:
        return "C" if loose.group(1).lower() == "tie" else loose.group(1).upper()
    return None


def judge_prompt(task: Task, question: str, a: str, b: str) -> str:
    template = JUDGE_PROMPT.get(task.language, JUDGE_PROMPT["en"])
    return template.format(question=question, a=a, b=b)


class PairwiseJudge:
    name = "judge"
    version = 1
    metrics = ("win_rate",)
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    def check(self, task: Task) -> None:
        for sample in task.samples:
            if not str(sample.get("question", "")).strip():
                raise bad_sample(task, sample, "has no `question`.", "Give each sample a question.")

    def prompt(self, task: Task, sample: dict) -> str:
        asked = render_messages(chat_messages(task, sample["question"]))
        judged = judge_prompt(task, sample["question"], "<the model's answer>", "<the opponent's>")
        return f"{asked}\n\n--- then the judge sees (and again with A and B swapped) ---\n{judged}"

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        judge = ctx.extra.get("judge_engine")
        for sample in samples:
            if ctx.should_stop():
                return
            answer = generate(engine, chat_messages(task, sample["question"]), task.max_new_tokens)
            opponent = sample.get("reference")
            if opponent is None:  # the baseline itself: an even match by definition
                yield SampleResult(
                    str(sample["id"]), {"win_rate": 0.5}, answer, "", {"baseline": True}
                )
                continue
            if judge is None:
                raise InvalidInput(
                    f"Task {task.name!r} needs a judge model.",
                    where=f"task {task.name}: option 'judge'",
                    fix="Pass --judge MODEL (any model name, or openai:URL#model for a remote one).",
                )
            verdicts = [
                parse_verdict(generate(judge, self._ask(task, sample, a, b), 16))
                for a, b in ((answer, opponent), (opponent, answer))
            ]
            # First round the model is A, second round it is B.
            points = [
                {"A": 1.0, "B": 0.0}.get(verdicts[0] or "C", 0.5),
                {"A": 0.0, "B": 1.0}.get(verdicts[1] or "C", 0.5),
            ]
            yield SampleResult(
                id=str(sample["id"]),
                scores={"win_rate": sum(points) / 2},
                output=answer,
                target=str(opponent),
                details={"verdicts": verdicts, "unparsed": verdicts.count(None)},
            )

    def _ask(self, task: Task, sample: dict, a: str, b: str) -> list[dict]:
        return [{"role": "user", "content": judge_prompt(task, sample["question"], a, b)}]

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


def vote_points(vote: dict, model: str) -> float | None:
    """1 / 0.5 / 0 for `model` in one arena vote; None when it did not take part."""
    a, b = vote.get("model_a"), vote.get("model_b")
    if model not in (a, b):
        return None
    winner = str(vote.get("winner", "")).strip()
    if winner in ("a", "model_a", a) and winner:
        return 1.0 if model == a else 0.0
    if winner in ("b", "model_b", b) and winner:
        return 1.0 if model == b else 0.0
    return 0.5  # tie, both good or both bad


class Arena:
    name = "arena"
    version = 1
    metrics = ("win_rate",)
    lower_is_better: tuple[str, ...] = ()
    needs_engine = False

    def check(self, task: Task) -> None:
        for sample in task.samples:
            if not sample.get("model_a") or not sample.get("model_b"):
                raise bad_sample(
                    task, sample, "needs `model_a` and `model_b`.", "Votes name both models."
                )

    def prompt(self, task: Task, sample: dict) -> str:
        return (
            f"{sample.get('prompt', '')}\n\n--- {sample['model_a']} vs {sample['model_b']}: "
            f"winner {sample.get('winner', '?')} (a person's vote on the chat page) ---"
        )

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        for vote in samples:
            points = vote_points(vote, ctx.model)
            if points is None:
                continue
            other = vote["model_b"] if ctx.model == vote["model_a"] else vote["model_a"]
            yield SampleResult(
                id=str(vote["id"]),
                scores={"win_rate": points},
                output=str(vote.get("winner", "")),
                target=other,
                details={"prompt": str(vote.get("prompt", ""))[:200]},
            )

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


KINDS.update(judge=PairwiseJudge(), arena=Arena())
