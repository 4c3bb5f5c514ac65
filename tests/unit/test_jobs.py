"""The job queue with real worker processes, real SQLite and the real `generate` runner.

Jobs answer prompts with the tiny random Llama (artifact "tiny"). A "long" job samples many long
answers (the random model rarely ends early), so it runs far longer than any test waits; tests
stop, kill or cancel it once it is under way. Each worker spends a few seconds importing torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from workbench import jobs
from workbench.errors import Conflict, InvalidInput, NotFound
from workbench.progress import EventLog, describe_event, null_progress
from workbench.recipes import GenerateRecipe, load_recipe
from workbench.worker import _describe

SHORT = {"prompts": ["Hello!", "What is the capital of France?"], "max_new_tokens": 8}
LONG = {
    "prompts": [f"Tell me story number {i}." for i in range(200)],
    "max_new_tokens": 64,
    "temperature": 1.0,
    "seed": 1,
}
TIMEOUT_S = 120


def generate(model: str = "tiny", **fields) -> GenerateRecipe:
    return GenerateRecipe(model=model, device="cpu", **fields)


def wait_until(check, what: str, timeout: float = TIMEOUT_S, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def wait_generating(ws, job_id: str) -> jobs.Job:
    """Wait until the job has answered its first prompt (the model is loaded and decoding)."""

    def answered() -> jobs.Job | None:
        job = jobs.get_job(ws, job_id)
        assert job.active, f"job ended early: {job.status}\n{job.error}\n{jobs.tail_log(job)}"
        return job if (jobs.latest_progress(job)["step"] or 0) >= 1 else None

    return wait_until(answered, "the first answer")


def statuses(job: jobs.Job) -> list[str]:
    events, _ = jobs.read_events(job)
    return [e["status"] for e in events if "status" in e]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(autouse=True)
def default_slots_and_no_leftover_workers(workspace, monkeypatch):
    """Default slot counts whatever the shell says, and no worker outlives its test."""
    monkeypatch.delenv("WORKBENCH_CPU_SLOTS", raising=False)
    monkeypatch.delenv("WORKBENCH_GPU_SLOTS", raising=False)
    yield
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")  # nothing new starts while cleaning up
    for job in jobs.list_jobs(workspace, limit=None):
        if job.active:
            jobs.cancel(workspace, job.id, wait=True, grace_s=1.0)


# --- whole jobs ------------------------------------------------------------------------------


def test_a_job_runs_in_its_own_worker_and_succeeds(workspace, tiny_artifact):
    recipe = generate(**SHORT)
    job = jobs.submit(workspace, recipe, title="two answers", owner="alice")

    assert jobs.JOB_ID_PATTERN.match(job.id) and "-generate-" in job.id
    assert job.active and job.status == "running" and job.pid != os.getpid()
    assert load_recipe(job.run_dir / "recipe.yaml") == recipe
    followed = list(jobs.follow(workspace, job.id, poll_s=0.1))  # live, until the job ends

    done = jobs.wait(workspace, job.id, timeout=5)
    assert done.status == "succeeded", f"{done.error}\n{jobs.tail_log(done)}"
    assert done.error == "" and done.started and done.finished and done.duration_s > 0
    assert done.result["answers"] == 2
    answers = [json.loads(line) for line in (done.run_dir / "outputs.jsonl").open()]
    assert [a["prompt"] for a in answers] == SHORT["prompts"]

    events, offset = jobs.read_events(done)
    assert events == followed
    assert statuses(done) == ["running", "succeeded"]
    steps = [(e["step"], e["total"]) for e in events if e.get("step") is not None]
    assert steps == [(0, 2), (1, 2), (2, 2)]
    assert jobs.read_events(done, offset) == ([], offset)
    progress = jobs.latest_progress(done)
    assert (progress["step"], progress["total"], progress["fraction"]) == (2, 2, 1.0)
    assert progress["metrics"]["tokens_per_s"] > 0

    mirror = json.loads((done.run_dir / "status.json").read_text())
    assert mirror["status"] == "succeeded" and mirror["result"] == done.result
    [listed] = jobs.list_jobs(workspace)
    assert (listed.id, listed.title, listed.owner) == (job.id, "two answers", "alice")
    assert f"job {job.id} succeeded" in jobs.tail_log(done)

    # Starting a worker by hand for a finished job changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "workbench.worker", job.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "nothing to do" in again.stderr
    assert jobs.get_job(workspace, job.id) == done


def test_a_killed_worker_shows_as_failed_with_its_log_after_a_restart(workspace, tiny_artifact):
    job = jobs.submit(workspace, generate(**LONG))
    running = wait_generating(workspace, job.id)

    os.killpg(running.pid, signal.SIGKILL)
    wait_until(lambda: gone(running.pid), "the worker to die")

    # A new process (a restarted app, the CLI) opens the same workspace and looks at the jobs.
    code = (
        "import json; from workbench.workspace import Workspace; "
        "from workbench.jobs import list_jobs; "
        "print(json.dumps([j.to_dict() for j in list_jobs(Workspace())]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    [seen] = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["id"] == job.id and seen["status"] == "failed"
    assert seen["error"].startswith(jobs.DIED_MESSAGE)
    assert f"[workbench worker] job {job.id} (generate) started" in seen["error"]

    failed = jobs.get_job(workspace, job.id)
    assert failed.status == "failed" and failed.error == seen["error"] and failed.finished
    assert [j.id for j in jobs.list_jobs(workspace, status="failed")] == [job.id]
    assert json.loads((job.run_dir / "status.json").read_text())["status"] == "failed"
    assert statuses(failed) == ["running", "failed"]
    assert jobs.artifacts_in_use(workspace) == {}


def test_cancel_stops_a_running_job_gracefully_and_frees_its_model(workspace, tiny_artifact):
    job = jobs.submit(workspace, generate(**LONG))
    wait_generating(workspace, job.id)

    assert jobs.artifacts_in_use(workspace) == {"tiny": job.id}
    with pytest.raises(Conflict) as refused:
        workspace.delete("tiny")
    assert job.id in str(refused.value) and workspace.exists("tiny")

    started = time.monotonic()
    cancelled = jobs.cancel(workspace, job.id, wait=True, grace_s=30)
    took = time.monotonic() - started
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    assert took < 10, f"cancelling took {took:.1f} s"
    # It stopped by itself between two tokens, kept what it had, and was not killed.
    assert cancelled.error == "" and cancelled.result["stopped"] is True
    answers = (job.run_dir / "outputs.jsonl").read_text().splitlines()
    assert 1 <= len(answers) < len(LONG["prompts"])
    assert f"job {job.id} cancelled after" in jobs.tail_log(cancelled)
    assert statuses(cancelled) == ["running", "cancelled"]
    wait_until(lambda: gone(cancelled.pid), "the worker to exit", timeout=10)

    assert jobs.artifacts_in_use(workspace) == {}
    workspace.delete("tiny")
    assert not workspace.exists("tiny")


def test_an_unresponsive_worker_is_killed_by_reconcile_after_the_grace(workspace, tiny_artifact):
    job = jobs.submit(workspace, generate(**LONG))
    running = wait_generating(workspace, job.id)
    os.kill(running.pid, signal.SIGSTOP)  # frozen: it can no longer notice the cancel

    started = time.monotonic()
    asked = jobs.cancel(workspace, job.id, wait=False, grace_s=0.5)
    assert time.monotonic() - started < 2
    assert asked.status == "running" and asked.cancel_requested
    assert (job.run_dir / "cancel").exists()
    jobs.reconcile(workspace)  # within the grace period nothing happens
    assert jobs.get_job(workspace, job.id).status == "running"

    def reconciled_to_an_end() -> jobs.Job | None:
        jobs.reconcile(workspace)
        current = jobs.get_job(workspace, job.id)
        return None if current.active else current

    ended = wait_until(
        reconciled_to_an_end, "the kill", timeout=0.5 + jobs.TERM_TO_KILL_S + 10, poll_s=0.2
    )
    assert ended.status == "cancelled" and "was killed" in ended.error
    wait_until(lambda: gone(running.pid), "the worker to die", timeout=10)
    assert "was killed" in jobs.tail_log(ended)


def test_one_cpu_slot_runs_jobs_one_after_another_in_order(workspace, monkeypatch):
    # Jobs whose model does not exist still start a worker and import torch, then fail: enough
    # to watch the queue, and quicker than answering prompts. The queue treats every end alike.
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "1")
    first, second, third = (
        jobs.submit(workspace, generate(model=f"missing-{i}", prompts=["Hi"])) for i in range(3)
    )
    assert (first.status, second.status, third.status) == ("running", "queued", "queued")
    jobs.reconcile(workspace)
    if jobs.get_job(workspace, first.id).active:  # its worker needs seconds to import torch
        assert jobs.get_job(workspace, second.id).status == "queued"
    assert jobs.cancel(workspace, third.id).status == "cancelled"

    # Nobody dispatches from here on: the first worker starts the next job as it exits.
    def second_started() -> jobs.Job | None:
        job = jobs.get_job(workspace, second.id)
        return None if job.status == "queued" else job

    second = wait_until(second_started, "the second job to start")
    first = jobs.get_job(workspace, first.id)
    assert first.status == "failed" and second.started >= first.finished
    second = jobs.wait(workspace, second.id, timeout=TIMEOUT_S)
    assert second.status == "failed" and "missing-1" in second.error
    third = jobs.get_job(workspace, third.id)
    assert third.status == "cancelled" and third.started == "" and third.pid is None
    assert [j.id for j in jobs.list_jobs(workspace)] == [third.id, second.id, first.id]


def test_a_failing_runner_ends_failed_with_what_where_and_fix(workspace):
    job = jobs.submit(workspace, generate(model="no-such-model", prompts=["Hi"]))
    done = jobs.wait(workspace, job.id, timeout=TIMEOUT_S)

    assert done.status == "failed"
    assert done.error.startswith("No model called 'no-such-model'")
    assert "\n  where: " in done.error and "\n  fix:   " in done.error
    assert "Traceback" not in done.error
    assert "No model called 'no-such-model'" in jobs.tail_log(done)
    assert statuses(done) == ["running", "failed"]
    assert json.loads((done.run_dir / "status.json").read_text())["error"] == done.error


# --- the queue without workers ---------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once_and_never_starts(workspace, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")  # no job may start
    job = jobs.submit(workspace, generate(**SHORT))
    assert job.status == "queued" and job.pid is None
    assert jobs.artifacts_in_use(workspace) == {"tiny": job.id}  # queued jobs hold it too

    started = time.monotonic()
    cancelled = jobs.cancel(workspace, job.id)
    assert time.monotonic() - started < 2
    assert cancelled.status == "cancelled" and cancelled.finished and cancelled.started == ""

    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "2")
    jobs.reconcile(workspace)
    after = jobs.get_job(workspace, job.id)
    assert after.status == "cancelled" and after.pid is None
    assert jobs.artifacts_in_use(workspace) == {}
    assert statuses(after) == ["cancelled"]
    assert jobs.cancel(workspace, job.id) == after  # cancelling again changes nothing


def test_list_jobs_filters_by_one_status_or_several(workspace, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")  # no job may start
    first = jobs.submit(workspace, generate(**SHORT))
    second = jobs.submit(workspace, generate(**SHORT))
    jobs.cancel(workspace, first.id)

    def ids(**kwargs):
        return [j.id for j in jobs.list_jobs(workspace, **kwargs)]

    assert ids(status="queued") == [second.id]
    assert ids(status="cancelled") == [first.id]
    assert ids(status=jobs.ACTIVE_STATUSES) == [second.id]
    assert ids(status=("queued", "cancelled")) == [second.id, first.id]
    with pytest.raises(InvalidInput):
        jobs.list_jobs(workspace, status=("queued", "paused"))


def test_a_queued_job_blocks_deleting_its_model(workspace, tiny_artifact, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")
    job = jobs.submit(workspace, generate(**SHORT))
    with pytest.raises(Conflict) as refused:
        workspace.delete("tiny")
    assert f"workbench jobs cancel {job.id}" in refused.value.fix
    jobs.cancel(workspace, job.id)
    workspace.delete("tiny")
    assert not workspace.exists("tiny")


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "..",
        "",
        "x" * 200,
        "20250101-120000-generate-1A2B3C",
        "20250101-120000-generate-1a2b3c/../../etc",
        "20250101-120000-generate-1a2b3c\n",
    ],
)
def test_malformed_job_ids_are_refused_before_touching_disk(workspace, bad):
    before = sorted(p.name for p in workspace.root.iterdir())
    for call in (jobs.get_job, jobs.cancel, jobs.wait):
        with pytest.raises(InvalidInput) as refused:
            call(workspace, bad)
        assert "workbench jobs list" in refused.value.fix
    assert sorted(p.name for p in workspace.root.iterdir()) == before


def test_an_unknown_job_id_is_not_found(workspace):
    with pytest.raises(NotFound) as missing:
        jobs.get_job(workspace, "20250101-120000-generate-1a2b3c")
    assert "workbench jobs list" in missing.value.fix
    assert jobs.list_jobs(workspace) == [] and jobs.artifacts_in_use(workspace) == {}


def test_submit_refuses_bad_recipes_and_leaves_nothing_behind(workspace, monkeypatch):
    with pytest.raises(InvalidInput) as typo:
        jobs.submit(workspace, {"kind": "generate", "prompts": ["x"], "max_new_token": 5})
    assert "max_new_tokens" in typo.value.fix
    changed = generate(prompts=["x"])
    changed.max_new_tokens = 0  # set after the recipe's own checks ran
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        jobs.submit(workspace, changed)
    with pytest.raises(InvalidInput, match="not a recipe"):
        jobs.submit(workspace, "kind: generate")
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "two")
    with pytest.raises(InvalidInput) as slots:
        jobs.submit(workspace, generate(prompts=["x"]))
    assert "WORKBENCH_CPU_SLOTS" in slots.value.where

    assert list(workspace.runs_dir.iterdir()) == []
    monkeypatch.delenv("WORKBENCH_CPU_SLOTS")
    assert jobs.list_jobs(workspace) == []
    with pytest.raises(InvalidInput, match="Unknown job status"):
        jobs.list_jobs(workspace, status="done")


# --- progress and events ---------------------------------------------------------------------


def test_events_are_read_incrementally_and_a_half_written_line_waits(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    job = jobs.Job(id="20250101-120000-generate-1a2b3c", kind="generate", run_dir=tmp_path)
    assert jobs.read_events(job) == ([], 0)  # no file yet

    log(step=1, total=4, message="training", loss=1.5, lr=2e-4, bad=float("nan"))
    log.event({"status": "running"})
    events, offset = jobs.read_events(job)
    assert events[0]["step"] == 1 and events[0]["total"] == 4
    assert events[0]["metrics"] == {"loss": 1.5, "lr": 2e-4, "bad": None}
    assert events[1]["status"] == "running" and offset == path.stat().st_size

    with path.open("a") as handle:
        handle.write("not json\n")
        handle.write('{"step": 2, "to')
    events, offset2 = jobs.read_events(job, offset)
    assert events == [] and offset2 == path.stat().st_size - len('{"step": 2, "to')
    with path.open("a") as handle:
        handle.write('tal": 4, "metrics": {"acc": 0.5}}\n')
    events, offset3 = jobs.read_events(job, offset2)
    assert [e["step"] for e in events] == [2] and offset3 == path.stat().st_size

    progress = jobs.latest_progress(job)
    assert (progress["step"], progress["total"], progress["fraction"]) == (2, 4, 0.5)
    assert progress["message"] == "training"
    assert progress["metrics"] == {"loss": 1.5, "lr": 2e-4, "bad": None, "acc": 0.5}


def test_describe_event_and_null_progress():
    event = {
        "step": 3,
        "total": 10,
        "message": "training",
        "metrics": {"loss": 1.23456, "lr": 2e-4},
    }
    assert describe_event(event) == "[3/10] training loss=1.235 lr=0.0002"
    assert describe_event({"message": "saving"}) == "saving"
    assert describe_event({"status": "succeeded"}) == "status: succeeded"
    assert null_progress(step=1, total=2, message="x", loss=1.0) is None


def test_tail_log_and_unexpected_errors_read_well(tmp_path):
    job = jobs.Job(id="20250101-120000-generate-1a2b3c", kind="generate", run_dir=tmp_path)
    assert jobs.tail_log(job) == ""
    (tmp_path / "log.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    assert jobs.tail_log(job, lines=3) == "line 97\nline 98\nline 99"

    text = _describe(KeyError("weight"), job.id, Path("/runs/x/log.txt"))
    assert text.startswith("KeyError: 'weight'\n  where: job 20250101-120000-generate-1a2b3c")
    assert "/runs/x/log.txt" in text and "\n  fix:   " in text
