"""The evaluation job: models x tasks, cached per sample, saved as an eval artifact.

`run_eval(recipe, ...)` is the job runner of `EvalRecipe` (the CLI, the Evaluate page and tests
all run it). For each model, for each task, it looks up every sample in the cache
(cache.py), scores only the missing ones in batches, and writes each batch to the cache as it
finishes — so a second run computes nothing new and a cancelled run resumes where it stopped.

Failures stay local: a model that cannot load or an endpoint that cannot be reached is reported
(which model, why) and the other models go on; a sample that fails is reported (which task,
which sample, why) and the rest of the task goes on; three failures in a row give up on that
model's task. Everything computed is kept.

The eval artifact (`evals/<name>/`) holds results.json (tasks, per-metric values with 95%
bootstrap intervals, errors, model facts) and samples.jsonl (every sample's output, answer and
scores per model); its parents are the evaluated workspace models, whose manifests get the
headline scores (`eval.<task>.<metric>`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError
from workbench.evaluate import cache
from workbench.evaluate.engines import EvalEngine, is_remote
from workbench.evaluate.suites import resolve_tasks
from workbench.evaluate.tasks import KINDS, RunContext, SampleResult, Task, headline_metric
from workbench.progress import null_progress
from workbench.workspace import Workspace

RESULTS_FILE, SAMPLES_FILE = "results.json", "samples.jsonl"
GIVE_UP_AFTER = 3  # failures in a row before a model's task is abandoned
LOGLIK_KINDS = ("multiple_choice", "perplexity", "preference")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, WorkbenchError):
        return exc.what + (f" ({exc.fix})" if exc.fix else "")
    return f"{type(exc).__name__}: {exc}"


def identity_from_lineage(ws: Workspace, models: list[str]) -> tuple[str, str]:
    """(name, author) of the first self-cognition dataset in the models' lineage, or ("", "")."""
    for model in models:
        if is_remote(model) or not ws.exists(model):
            continue
        for manifest in ws.lineage(model):
            recipe = manifest.recipe or {}
            if manifest.kind == "dataset" and recipe.get("kind") == "self_cognition":
                return str(recipe.get("name", "")), str(recipe.get("author", ""))
    return "", ""


def prepare_tasks(recipe: Any, ws: Workspace) -> list[Task]:
    """The recipe's tasks with its limit, judge and identity settings applied."""
    tasks = resolve_tasks(recipe.tasks, ws)
    name, author = recipe.identity_name, recipe.identity_author
    if not name and any(t.kind == "identity" for t in tasks):
        name, author = identity_from_lineage(ws, recipe.models)
        author = recipe.identity_author or author
    if not name and any(t.kind == "identity" for t in tasks):
        raise InvalidInput(
            "Identity tasks need the name the model should give itself.",
            where="field 'identity_name'",
            fix="Pass --identity-name (and --identity-author), or evaluate a model tuned on a "
            "self-cognition dataset made by Workbench (the name is read from its lineage).",
        )
    if not recipe.judge and any(t.kind == "judge" for t in tasks):
        raise InvalidInput(
            "Judge tasks need a judge model.",
            where="field 'judge'",
            fix="Pass --judge MODEL: any model name, or openai:URL#model for a remote one.",
        )
    for task in tasks:
        if recipe.limit and task.kind != "arena":
            task.samples = task.samples[: recipe.limit]
        if task.kind == "identity":
            task.options = {**task.options, "name": name, "author": author}
        if task.kind == "judge":
            task.options = {**task.options, "judge": recipe.judge}
    return tasks


def _model_facts(ws: Workspace, model: str, fingerprint: str) -> dict:
    facts: dict[str, Any] = {"fingerprint": fingerprint, "remote": is_remote(model)}
    if not facts["remote"] and ws.exists(model):
        manifest = ws.get(model)
        facts.update(
            kind=manifest.kind,
            variant=manifest.variant,
            parents=manifest.parents,
            size_mb=round(ws.size_bytes(model) / 2**20, 1),
            params_m=manifest.metrics.get("params_m"),
        )
    return facts


class _Run:
    """The state of one evaluation run (kept out of run_eval's loop for readability)."""

    def __init__(self, recipe: Any, ws: Workspace, progress: Callable, should_stop: Callable):
        self.recipe, self.ws = recipe, ws
        self.progress, self.should_stop = progress, should_stop
        self.tasks = prepare_tasks(recipe, ws)
        self.results: dict[tuple[str, str], dict[str, SampleResult]] = {}
        self.errors: list[dict] = []
        self.timing: dict[tuple[str, str], dict] = {}
        self.facts: dict[str, dict] = {}
        self.total = len(recipe.models) * sum(len(t.samples) for t in self.tasks)
        self.done = self.computed = self.reused = 0
        self.baseline_answers: dict[str, dict[str, str]] = {}
        self.judge: EvalEngine | None = None

    def tick(self, model: str, task: Task, count: int = 1) -> None:
        self.done += count
        self.progress(
            step=self.done, total=self.total, message=f"{model} · {task.name}",
            computed=self.computed, cached=self.reused,
        )  # fmt: skip

    def judge_engine(self) -> EvalEngine | None:
        if self.judge is None and self.recipe.judge:
            self.judge = EvalEngine(self.recipe.judge, self.ws, device=self.recipe.device)
        return self.judge

    def samples_for(self, model: str, task: Task) -> list[dict]:
        """The task's samples; judge samples get the opponent's answer as `reference`."""
        if task.kind != "judge":
            return task.samples
        baseline = self.recipe.models[0]
        answers = self.baseline_answers.get(task.name, {})
        out, missing = [], []
        for sample in task.samples:
            if sample.get("reference") is None and model != baseline:
                if str(sample["id"]) not in answers:
                    missing.append(str(sample["id"]))  # the baseline could not answer it
                    continue
                sample = {**sample, "reference": answers[str(sample["id"])], "reference_from": baseline}  # fmt: skip
            out.append(sample)
        if missing:
            self.errors.append({
                "model": model, "task": task.name,
                "error": f"{len(missing)} samples have no answer from the baseline {baseline!r} "
                "to compare with (see its errors), and no `reference` answer",
            })  # fmt: skip
        return out

    def run_model(self, model: str) -> None:
        tasks = self.tasks
        try:
            fingerprint = cache.model_fingerprint(model, self.ws)
        except WorkbenchError as exc:
            self.errors.append({"model": model, "error": _error_text(exc)})
            # Arena votes need no model at hand: score those under the name alone.
            tasks = [t for t in self.tasks if not KINDS[t.kind].needs_engine]
            self.tick(
                model, self.tasks[0], sum(len(t.samples) for t in self.tasks if t not in tasks)
            )
            if not tasks:
                return
            fingerprint = "name-" + model
        self.facts[model] = _model_facts(self.ws, model, fingerprint)
        engine = EvalEngine(
            model, self.ws, device=self.recipe.device, dtype=self.recipe.dtype,
            batch_size=self.recipe.batch_size,
        )  # fmt: skip
        try:
            for index, task in enumerate(tasks):
                if self.should_stop():
                    return
                if not self.run_task(model, fingerprint, task, engine):
                    rest = sum(len(t.samples) for t in tasks[index + 1 :])
                    self.tick(model, task, rest)
                    return  # the model cannot run at all: skip its other tasks
        finally:
            engine.close()

    def run_task(self, model: str, fingerprint: str, task: Task, engine: EvalEngine) -> bool:
        """Score one task for one model; False when the model itself failed to open."""
        kind = KINDS[task.kind]
        samples = self.samples_for(model, task)
        keys = {task.sample_key(s): s for s in samples}
        found = cache.lookup(self.ws, fingerprint, task.version, keys)
        mine = self.results.setdefault((model, task.name), {})
        for key, result in found.items():
            mine[str(keys[key]["id"])] = result
        self.reused += len(found)
        self.tick(model, task, len(found) + len(task.samples) - len(samples))
        pending = [s for k, s in keys.items() if k not in found]
        started, computed = time.perf_counter(), 0
        if pending and kind.needs_engine:
            try:
                engine.prepare(chat=task.kind not in LOGLIK_KINDS, score=task.kind in LOGLIK_KINDS)
            except Exception as exc:  # noqa: BLE001 - reported per model, the run goes on
                self.errors.append({"model": model, "error": _error_text(exc)})
                self.tick(model, task, len(pending))
                return False
        ctx = RunContext(
            batch_size=self.recipe.batch_size, should_stop=self.should_stop, model=model,
            extra={"judge_engine": self.judge_engine() if task.kind == "judge" else None},
        )  # fmt: skip
        failures_in_row = 0
        while pending and not self.should_stop():
            by_id = {str(s["id"]): s for s in pending}
            fresh: dict[str, SampleResult] = {}
            try:
                for result in kind.score(task, pending, engine, ctx):
                    mine[result.id] = result
                    fresh[task.sample_key(by_id[result.id])] = result
                    failures_in_row = 0
                    self.computed += 1
                    computed += 1
                    self.tick(model, task)
                    if len(fresh) >= max(1, self.recipe.batch_size // 4):
                        cache.store(self.ws, fingerprint, task.version, task.name, fresh)
                        fresh = {}
                    if self.should_stop():
                        break
                pending = []
            except Exception as exc:  # noqa: BLE001 - one bad sample must not sink the run
                pending = [s for s in pending if str(s["id"]) not in mine]
                culprit = self._find_culprit(task, pending, engine, ctx, mine, fresh)
                self.errors.append(
                    {
                        "model": model,
                        "task": task.name,
                        "sample": culprit,
                        "error": _error_text(exc),
                    }
                )
                pending = [s for s in pending if str(s["id"]) not in mine and str(s["id"]) != culprit]  # fmt: skip
                self.tick(model, task)
                failures_in_row += 1
                if failures_in_row >= GIVE_UP_AFTER:
                    self.errors.append({
                        "model": model, "task": task.name,
                        "error": f"gave up after {GIVE_UP_AFTER} failures in a row; "
                        f"{len(pending)} samples not scored",
                    })  # fmt: skip
                    self.tick(model, task, len(pending))
                    pending = []
            finally:
                cache.store(self.ws, fingerprint, task.version, task.name, fresh)
        if task.kind == "judge" and model == self.recipe.models[0]:
            self.baseline_answers[task.name] = {i: r.output for i, r in mine.items()}
        self.timing[(model, task.name)] = {
            "computed": computed,
            "seconds": round(time.perf_counter() - started, 3),
        }
        return True

    def _find_culprit(
        self, task: Task, pending: list[dict], engine: Any, ctx: RunContext, mine: dict, fresh: dict
    ) -> str:
        """Which sample broke a batch: the first pending one that fails on its own. Those that
        pass on the way are kept (in `mine`, and in `fresh` for the cache)."""
        if not pending:
            return ""
        one = RunContext(
            batch_size=1, should_stop=ctx.should_stop, model=ctx.model, extra=ctx.extra
        )
        for sample in pending[: max(1, self.recipe.batch_size)]:
            try:
                for result in KINDS[task.kind].score(task, [sample], engine, one):
                    mine[result.id] = result
                    fresh[task.sample_key(sample)] = result
                    self.computed += 1
            except Exception:  # noqa: BLE001 - this is the one
                return str(sample["id"])
        return str(pending[0]["id"])


def metric_rows(run: _Run) -> list[dict]:
    """One row per (model, task, metric): value, 95% interval, samples scored and in the task."""
    rows = []
    for model in run.recipe.models:
        for task in run.tasks:
            results = list(run.results.get((model, task.name), {}).values())
            if not results:
                continue
            kind = KINDS[task.kind]
            headline = headline_metric(task)
            for metric, estimate in kind.aggregate(task, results, run.recipe.seed).items():
                if estimate.n == 0:
                    continue
                rows.append(
                    {
                        "model": model,
                        "task": task.name,
                        "kind": task.kind,
                        "capability": task.capability,
                        "language": task.language,
                        "metric": metric,
                        "headline": metric == headline,
                        "lower_is_better": metric in kind.lower_is_better,
                        **estimate.to_dict(),
                        "samples": len(task.samples),
                    }
                )
    return rows


def task_rows(tasks: list[Task]) -> list[dict]:
    rows = []
    for task in tasks:
        example = KINDS[task.kind].prompt(task, task.samples[0]) if task.samples else ""
        rows.append(
            {
                "name": task.name, "kind": task.kind, "version": task.version,
                "capability": task.capability, "language": task.language,
                "samples": len(task.samples), "metric": headline_metric(task),
                "description": task.description, "source": task.source,
                "prompt_example": example,
            }
        )  # fmt: skip
    return rows


def _sample_lines(run: _Run) -> list[dict]:
    lines = []
    for task in run.tasks:
        questions = {
            str(s["id"]): s.get("question") or s.get("text", "")[:200] for s in task.samples
        }
        for model in run.recipe.models:
            for sample_id, result in run.results.get((model, task.name), {}).items():
                lines.append(
                    {"model": model, "task": task.name, "question": questions.get(sample_id, ""), **result.to_dict()}
                )  # fmt: skip
    return lines


def _artifact_name(recipe: Any, ws: Workspace, job_id: str) -> str:
    if recipe.name:
        return recipe.name
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"eval-{stamp}" + (f"-{job_id[-6:]}" if job_id else "")
    name, n = base, 1
    while ws.exists(name):
        n += 1
        name = f"{base}-{n}"
    return name


def run_eval(
    recipe: Any,
    *,
    workspace: Workspace | None = None,
    progress: Callable[..., None] = null_progress,
    should_stop: Callable[[], bool] = lambda: False,
    run_dir: Path | str | None = None,
    job_id: str = "",
) -> dict:
    """Job runner for `EvalRecipe`: evaluate, cache, and save an eval artifact.

    Returns:
        {"artifact", "metrics": [rows], "errors": [...], "computed", "cached"}, plus
        "stopped": True when cancelled (the cache keeps what was computed; resume the job or run
        it again to finish).

    Raises:
        WorkbenchError: a task or task file is wrong (before anything runs); nothing at all
            could be computed (the errors say why for each model).
    """
    from workbench.recipes import recipe_to_dict

    ws = workspace or Workspace()
    ws.ensure()
    if recipe.name:
        ws.refuse_taken(recipe.name)
    run = _Run(recipe, ws, progress, should_stop)
    run.progress(step=0, total=run.total, message="starting")
    try:
        for model in recipe.models:
            if should_stop():
                break
            run.run_model(model)
    finally:
        if run.judge is not None:
            run.judge.close()
    rows = metric_rows(run)
    summary = {
        "metrics": rows,
        "errors": run.errors,
        "computed": run.computed,
        "cached": run.reused,
    }
    if should_stop():
        return {**summary, "artifact": "", "stopped": True}
    if not rows:
        details = "; ".join(
            f"{e.get('model')}{' / ' + e['task'] if e.get('task') else ''}: {e['error']}"
            for e in run.errors[:5]
        )
        raise WorkbenchError(
            "Nothing could be evaluated" + (f": {details}" if details else "."),
            where=f"models {', '.join(recipe.models)}; tasks {', '.join(recipe.tasks)}",
            fix="Check the model names (`workbench models list`) and task names "
            "(`workbench eval --list`).",
        )
    name = _artifact_name(recipe, ws, job_id)
    timing = [{"model": m, "task": t, **v} for (m, t), v in run.timing.items()]
    document = {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": recipe.models,
        "model_facts": run.facts,
        "tasks": task_rows(run.tasks),
        "metrics": rows,
        "errors": run.errors,
        "timing": timing,
        "judge": recipe.judge,
    }
    parents = [m for m in recipe.models if not is_remote(m) and ws.exists(m)]
    headline = {
        f"{r['model']}/{r['task']}/{r['metric']}": r["value"] for r in rows if r["headline"]
    }
    with ws.create(
        "eval", name, parents=parents, recipe=recipe_to_dict(recipe), job=job_id,
        metrics=headline, description=recipe.description,
    ) as staging:  # fmt: skip
        (staging / RESULTS_FILE).write_text(
            json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8"
        )
        with open(staging / SAMPLES_FILE, "w", encoding="utf-8") as handle:
            for line in _sample_lines(run):
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    for model in parents:
        scores = {
            f"eval.{r['task']}.{r['metric']}": r["value"]
            for r in rows
            if r["model"] == model and r["headline"]
        }
        ws.update_metrics(model, scores)
    return {**summary, "artifact": name}
