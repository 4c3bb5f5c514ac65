"""Preference accuracy: how often a model gives the chosen answer of a pair a higher
log-probability than the rejected one — the check of a DPO/ORPO run, on the held-out pairs.

    workbench eval --models default,prefs-dpo --tasks prefs:prefs

The task `prefs:NAME` is the held-out split of preference dataset NAME. Each pair is rendered
through the model's chat template exactly as training renders it (prompt, then the answer and
its end-of-turn token; workbench.finetune.preference.score_pairs) and the answer tokens'
log-probabilities are summed. Metrics per pair: pref_acc (1 when the chosen answer is more
likely, 0.5 for a tie), pref_acc_norm (the same with the mean log-probability per answer token,
which takes length out) and margin (log p chosen - log p rejected). Local models only: a remote
endpoint returns no log-probabilities of chat-formatted answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError
from workbench.evaluate.tasks import (
    KINDS,
    RunContext,
    SampleResult,
    Task,
    bad_sample,
    mean_metrics,
    render_messages,
)

PREFIX = "prefs:"
CUTOFF = 1024


class PreferencePairs:
    name = "preference"
    version = 1
    metrics = ("pref_acc", "pref_acc_norm", "margin")
    lower_is_better: tuple[str, ...] = ()
    needs_engine = True

    def check(self, task: Task) -> None:
        for sample in task.samples:
            prompt = sample.get("prompt")
            if not isinstance(prompt, list) or not prompt:
                raise bad_sample(task, sample, "needs `prompt`, a list of messages.", "")
            for key in ("chosen", "rejected"):
                if not isinstance(sample.get(key), str) or not sample[key].strip():
                    raise bad_sample(task, sample, f"`{key}` is missing or empty.", "")

    def prompt(self, task: Task, sample: dict) -> str:
        context = render_messages(sample["prompt"]) + "\n<assistant>\n"
        return "\n".join(context + "⟦" + sample[k] + "⟧" for k in ("chosen", "rejected"))

    def score(
        self, task: Task, samples: list[dict], engine: Any, ctx: RunContext
    ) -> Iterator[SampleResult]:
        from workbench.finetune.preference import score_pairs

        if getattr(engine, "remote", False):
            raise WorkbenchError(
                f"Preference accuracy needs a local model; {engine.name!r} is remote.",
                where=f"task {task.name}",
                fix="Evaluate the local model (its workspace name or folder) on this task.",
            )
        loaded = engine.loaded()
        per_batch = max(1, ctx.batch_size // 4)
        for start in range(0, len(samples), per_batch):
            if ctx.should_stop():
                return
            batch = samples[start : start + per_batch]
            scores = score_pairs(
                loaded.model, loaded.tokenizer, batch, device=loaded.device, cutoff=CUTOFF,
                batch_size=per_batch,
            )  # fmt: skip
            if len(scores) != len(batch):
                raise bad_sample(
                    task, batch[0], "an answer lies wholly beyond the cutoff of 1024 tokens.",
                    "Shorten the prompts of this dataset.",
                )  # fmt: skip
            for sample, (chosen, rejected, n_chosen, n_rejected) in zip(batch, scores, strict=True):
                yield self.result(sample, chosen, rejected, n_chosen, n_rejected)

    def result(
        self, sample: dict, chosen: float, rejected: float, n_chosen: int, n_rejected: int
    ) -> SampleResult:
        def won(a: float, b: float) -> float:
            return 1.0 if a > b else 0.5 if a == b else 0.0

        norm = won(chosen / max(n_chosen, 1), rejected / max(n_rejected, 1))
        return SampleResult(
            id=str(sample["id"]),
            scores={"pref_acc": won(chosen, rejected), "pref_acc_norm": norm,
                    "margin": chosen - rejected},
            output=sample["chosen"] if chosen >= rejected else sample["rejected"],
            target=sample["chosen"],
            details={"logp_chosen": round(chosen, 4), "logp_rejected": round(rejected, 4)},
        )  # fmt: skip

    def aggregate(self, task: Task, results: list[SampleResult], seed: int) -> dict:
        return mean_metrics(self.metrics, results, seed)


KINDS["preference"] = PreferencePairs()


def preference_task(spec: str, ws: Any) -> Task:
    """The task `prefs:NAME`: the held-out pairs of preference dataset NAME."""
    from workbench.data.prefs import read_pairs

    name = spec[len(PREFIX) :].strip()
    if ws is None:
        raise InvalidInput(f"Task {spec!r} needs a workspace.", where="tasks", fix="")
    pairs = read_pairs(ws, name, "eval")
    if not pairs:
        raise InvalidInput(
            f"Preference dataset {name!r} has no held-out pairs to score.",
            where=f"dataset {name}",
            fix="Import it again with a held-out share (--eval-fraction 0.1).",
        )
    samples = [{**p, "id": str(p.get("row", i))} for i, p in enumerate(pairs, 1)]
    return Task(
        name=f"prefs-{name}",
        kind="preference",
        samples=samples,
        language="en",
        capability="preference",
        description=f"Held-out preference pairs of dataset {name}: how often the chosen answer "
        "is the more likely one.",
        source=f"dataset {name} (eval split)",
    )


def preference_task_names(ws: Any) -> list[str]:
    """`prefs:NAME` for every preference dataset with held-out pairs, newest first."""
    if ws is None:
        return []
    from workbench.data.prefs import PREFERENCE_KIND

    return [
        PREFIX + m.name
        for m in ws.list("dataset")
        if m.metrics.get("data_kind") == PREFERENCE_KIND and m.metrics.get("eval_rows")
    ]
