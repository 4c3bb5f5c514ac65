"""The same multiple-choice task through lm-evaluation-harness, the reference the field trusts.

`lm_eval_multiple_choice(task, model, tokenizer)` writes the task's samples to a JSONL file and
an lm-eval task config with the same prompt — `doc_to_text` is the task's template, each choice
follows `target_delimiter` — and runs `lm_eval.simple_evaluate` with its Hugging Face model class
on the same loaded model. It returns lm-eval's acc and acc_norm and its per-sample
log-likelihoods, which the agreement test and bench/eval_speed.py compare with ours.

lm-eval is a development dependency (requirements-dev.txt); nothing in the app needs it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import InvalidInput
from workbench.evaluate.tasks import Task


def _jinja(template: str) -> str:
    if "{choices}" in template:
        raise InvalidInput(
            "The lm-eval comparison supports templates with {question} only.",
            where="template",
            fix="Use a task whose template lists no choices.",
        )
    return template.replace("{question}", "{{question}}")


def lm_eval_multiple_choice(
    task: Task, model: Any, tokenizer: Any, *, batch_size: int = 1, limit: int | None = None
) -> dict:
    """Score `task` (multiple choice, choice_style "text", no few-shot) with lm-eval.

    Returns:
        {"acc", "acc_norm", "logliks": [[per choice] per sample], "seconds" (all of
        simple_evaluate), "scoring_seconds" (its log-likelihood requests only)}.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if task.kind != "multiple_choice" or task.choice_style != "text" or task.fewshot:
        raise InvalidInput(
            "Only zero-shot multiple-choice tasks that score the choice text can be compared.",
            where=task.name,
            fix="Pick a task like knowledge-en.",
        )
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    samples = task.samples[:limit] if limit else task.samples
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.jsonl"
        rows = [
            {"question": s["question"], "choices": s["choices"], "answer": s["answer"]}
            for s in samples
        ]
        data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
        name = "workbench_" + task.name.replace("-", "_")
        config = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": _jinja(task.mc_template()),
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "target_delimiter": task.mc_delimiter(),
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        }
        (Path(folder) / f"{name}.yaml").write_text(
            yaml.safe_dump(config, allow_unicode=True), "utf-8"
        )
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        scoring = {"seconds": 0.0}
        score = lm.loglikelihood

        def timed(requests: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return score(requests, *args, **kwargs)
            finally:
                scoring["seconds"] += time.perf_counter() - began

        lm.loglikelihood = timed  # the scoring itself, apart from lm-eval's set-up
        started = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[name],
            task_manager=TaskManager(include_path=folder, include_defaults=False),
            bootstrap_iters=0,
            log_samples=True,
            verbosity="ERROR",
        )
        seconds = time.perf_counter() - started
    metrics = out["results"][name]
    ordered = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    logliks = [[float(r[0][0]) for r in s["resps"]] for s in ordered]
    return {
        "acc": float(metrics["acc,none"]),
        "acc_norm": float(metrics["acc_norm,none"]),
        "logliks": logliks,
        "seconds": seconds,
        "scoring_seconds": scoring["seconds"],
    }
