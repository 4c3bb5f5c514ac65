"""The job system: a queue of long tasks, each run by its own worker process, with state on disk.

Training, quantization, evaluation, model preparation and batch generation never run inside the
Streamlit script. `submit` writes a run folder and a row in an SQLite queue, then starts
`python -m workbench.worker JOB_ID` in a new session; the worker runs the recipe's runner and
records the outcome. Everything lives in the workspace, so closing the browser or restarting the
app loses nothing, and any process (the app, the CLI, a worker) can look at or change the queue:

    jobs.db                 one row per job (SQLite, WAL mode, one short connection per call)
    runs/<job id>/
        recipe.yaml         the recipe, replayable with `workbench run recipe.yaml`
        events.jsonl        progress and status events, one JSON object a line (progress.py)
        log.txt             the worker's stdout and stderr (tracebacks land here)
        status.json         a copy of the job's row, for people and scripts
        cancel              present once a cancel was asked for

Jobs that need the GPU wait for a free slot instead of colliding: at most `WORKBENCH_GPU_SLOTS`
(default 1) "gpu" jobs and `WORKBENCH_CPU_SLOTS` (default 2) "cpu" jobs run at once, first come
first served. `reconcile` notices workers that died (killed, crashed, machine rebooted) and marks
their jobs failed with the end of their log; every listing calls it.

In classroom mode the queue is the class's (one jobs.db, rows owned by users, run folders in each
owner's workspace): one FIFO for everyone, a per-user limit on active jobs (`Limits`), and a user
sees, cancels and resumes only their own jobs — another user's job id reads as unknown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from workbench.errors import Forbidden, InvalidInput, NotFound
from workbench.limits import current_limits
from workbench.progress import EventLog
from workbench.recipes import RECIPES, dump_recipe, recipe_from_dict, recipe_to_dict
from workbench.workspace import CLASS_ROOT_VARIABLE, USER_VARIABLE, Workspace

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
RESOURCES = ("cpu", "gpu")
DEFAULT_SLOTS = {"gpu": 1, "cpu": 2}
SLOT_VARIABLES = {"gpu": "WORKBENCH_GPU_SLOTS", "cpu": "WORKBENCH_CPU_SLOTS"}
JOB_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[a-z][a-z0-9_]{0,39}-[0-9a-f]{6}$")
RESUMABLE_KINDS = ("train", "eval")  # runners that continue from what their run folder holds
TERM_TO_KILL_S = 3.0  # after SIGTERM, how long a worker gets before SIGKILL
LOG_LINES_IN_ERRORS = 20
EVENTS_FILE, LOG_FILE, RECIPE_FILE, STATUS_FILE, CANCEL_FILE = (
    "events.jsonl",
    "log.txt",
    "recipe.yaml",
    "status.json",
    "cancel",
)
DIED_MESSAGE = "The worker process ended unexpectedly (killed or crashed). Last lines of its log:"
LIST_FIX = "Run `workbench jobs list` to see the job ids."

_PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # so workers import this very package

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order: FIFO and newest-first
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    resource TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT '',
    started TEXT NOT NULL DEFAULT '',
    finished TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_created REAL,          -- the worker's process create time: a reused pid is not it
    error TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}',
    uses TEXT NOT NULL DEFAULT '[]',
    owner TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_at REAL,            -- when the cancel was asked for (epoch seconds)
    cancel_grace_s REAL,       -- how long the worker may take to stop by itself
    term_sent_at REAL          -- when reconcile sent SIGTERM after the grace period
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
"""


@dataclass
class Job:
    """One job as recorded in the queue.

    Attributes:
        id: `YYYYMMDD-HHMMSS-<kind>-<6 hex>` (UTC submission time).
        kind: the recipe kind (generate, lora, quantize...).
        title: a short label for lists.
        status: one of STATUSES.
        resource: "cpu" or "gpu": which queue it waits in.
        created, started, finished: ISO 8601 times (UTC), "" while not reached.
        pid: the worker's process id once started.
        run_dir: the job's run folder.
        error: for failed jobs, what went wrong and what to do (a WorkbenchError's text or
            "<Type>: <message>"); a short note for cancelled jobs that had to be killed.
        result: what the runner returned (a JSON-safe dict).
        uses: the artifacts the job reads; they cannot be deleted while it is active.
        owner: who submitted it (free text, e.g. a student's name in a classroom).
        cancel_requested: a cancel was asked for.
    """

    id: str
    kind: str
    title: str = ""
    status: str = "queued"
    resource: str = "cpu"
    created: str = ""
    started: str = ""
    finished: str = ""
    pid: int | None = None
    run_dir: Path = field(default_factory=Path)
    error: str = ""
    result: dict = field(default_factory=dict)
    uses: list[str] = field(default_factory=list)
    owner: str = ""
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        """Queued or running: not finished yet."""
        return self.status in ACTIVE_STATUSES

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish (or to now while running); None before it starts."""
        if not self.started:
            return None
        start = datetime.fromisoformat(self.started)
        end = datetime.fromisoformat(self.finished) if self.finished else datetime.now(timezone.utc)
        return max(0.0, (end - start).total_seconds())

    def to_dict(self) -> dict:
        """JSON-safe view (for `--json` output, status.json and the UI)."""
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["active"] = self.active
        data["duration_s"] = self.duration_s
        return data


# --- database --------------------------------------------------------------------------------

_SCHEMA_READY: set[str] = set()


def _connect(ws: Workspace) -> sqlite3.Connection:
    path = ws.db_path
    key = str(path)
    fresh = key not in _SCHEMA_READY or not path.exists()
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)  # explicit transactions
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fewer fsyncs per status change
    if fresh:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        _SCHEMA_READY.add(key)
    return conn


@contextmanager
def _db(ws: Workspace, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A short connection; with write=True one `BEGIN IMMEDIATE` transaction (a writer lock)."""
    conn = _connect(ws)
    try:
        if write:
            conn.execute("BEGIN IMMEDIATE")
        yield conn
        if write:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _job_from_row(ws: Workspace, row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        status=row["status"],
        resource=row["resource"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        pid=row["pid"],
        run_dir=_run_dir(ws, row),
        error=row["error"],
        result=json.loads(row["result"] or "{}"),
        uses=json.loads(row["uses"] or "[]"),
        owner=row["owner"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def _row(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def _run_dir(ws: Workspace, row: sqlite3.Row) -> Path:
    """A job's run folder: in its owner's workspace (the same one outside classroom mode)."""
    return ws.home_of(row["owner"]) / "runs" / row["id"]


def _update(
    conn: sqlite3.Connection,
    ws: Workspace,
    job_id: str,
    values: dict[str, Any],
    *,
    only_if: tuple[str, ...] = (),
) -> bool:
    """Set columns of one job (only while its status is in `only_if`, when given) and refresh
    its status.json. Returns whether the row changed."""
    sql = f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in values)} WHERE id = ?"
    params = [*values.values(), job_id]
    if only_if:
        sql += f" AND status IN ({', '.join('?' for _ in only_if)})"
        params.extend(only_if)
    changed = conn.execute(sql, params).rowcount > 0
    if changed:
        _mirror_status(conn, ws, job_id)
    return changed


def _mirror_status(conn: sqlite3.Connection, ws: Workspace, job_id: str) -> None:
    """Write status.json from the row; called inside the writer's transaction, so the file
    never goes back to an older state."""
    row = _row(conn, job_id)
    if row is None or not _run_dir(ws, row).is_dir():
        return
    run_dir = _run_dir(ws, row)
    data = _job_from_row(ws, row).to_dict()
    tmp = run_dir / f".{STATUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    os.replace(tmp, run_dir / STATUS_FILE)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- submitting and looking up ---------------------------------------------------------------


def submit(ws: Workspace, recipe: Any, *, title: str = "", owner: str = "") -> Job:
    """Queue a recipe as a job and start it as soon as a slot for its resource is free.

    Args:
        ws: the workspace whose queue and runs folder to use.
        recipe: a recipe object (recipes.py) or a dict with `kind` (checked the same way).
        title: a label for job lists; made from the kind and the artifacts used when empty.
        owner: who submitted it (in classroom mode always the workspace's user).

    Returns:
        The job, usually already "running" (or "queued" behind others).

    Raises:
        InvalidInput: the recipe is malformed, asks for a device this machine lacks, or a
            WORKBENCH_*_SLOTS variable is not a number.
        Forbidden: a limit of demo or classroom mode (read-only, active jobs, steps) refuses it.
    """
    _slots()  # a bad WORKBENCH_*_SLOTS value is reported before anything is written
    owner = ws.owner or owner
    if isinstance(recipe, dict):
        recipe = recipe_from_dict(recipe)
    elif not is_dataclass(recipe) or getattr(recipe, "kind", None) not in RECIPES:
        raise InvalidInput(
            f"Cannot submit {type(recipe).__name__!r}: it is not a recipe.",
            where="submit",
            fix=f"Pass a recipe object or a dict with `kind:` one of {', '.join(sorted(RECIPES))}.",
        )
    else:
        recipe = recipe_from_dict(recipe_to_dict(recipe))  # re-check fields changed after init
    _refuse_foreign_paths(ws, recipe)
    limits = current_limits(ws)
    limits.check_recipe(recipe)
    _refuse_over_job_limit(ws, owner, limits.max_active_jobs)
    resource = recipe.resource()
    if resource not in RESOURCES:
        raise ValueError(f"{type(recipe).__name__}.resource() returned {resource!r}")
    uses = [str(name) for name in recipe.uses()]
    kind_slug = re.sub(r"[^a-z0-9_]", "_", recipe.kind.lower())[:40] or "job"

    ws.ensure()
    while True:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        job_id = f"{stamp}-{kind_slug}-{uuid.uuid4().hex[:6]}"
        run_dir = ws.runs_dir / job_id
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    (run_dir / RECIPE_FILE).write_text(dump_recipe(recipe), "utf-8")
    (run_dir / EVENTS_FILE).touch()
    (run_dir / LOG_FILE).touch()
    with _db(ws, write=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, title, status, resource, created, uses, owner) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                job_id,
                recipe.kind,
                title or (f"{recipe.kind}: {', '.join(uses)}" if uses else recipe.kind),
                resource,
                _now(),
                json.dumps(uses),
                owner,
            ),
        )
        _mirror_status(conn, ws, job_id)
    reconcile(ws)  # frees slots held by dead workers, then dispatches
    return get_job(ws, job_id)


def _refuse_foreign_paths(ws: Workspace, recipe: Any) -> None:
    """In classroom mode, refuse a recipe that names a file or folder outside the user's own
    workspace and the catalogue (another user's data, /etc/passwd...)."""
    if ws.class_root is None:
        return
    for name, value in recipe_to_dict(recipe).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                ws.check_source(item, where=f"recipe field {name!r}")


def _refuse_over_job_limit(ws: Workspace, owner: str, limit: int | None) -> None:
    if limit is None or not ws.db_path.exists():
        return
    reconcile(ws)
    with _db(ws) as conn:
        active = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND owner = ?",
            (owner,),
        ).fetchone()[0]
    if active >= limit:
        raise Forbidden(
            f"You have {active} job(s) queued or running; the limit here is {limit} at a time.",
            where="job queue",
            fix="Wait for one to finish, or cancel one on the Jobs page, then start this again.",
        )


def get_job(ws: Workspace, job_id: str) -> Job:
    """The job with this id.

    Raises:
        InvalidInput: `job_id` is not shaped like a job id (nothing on disk is touched).
        NotFound: no such job in this workspace.
    """
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidInput(
            f"{job_id!r} is not a job id (they look like 20250101-120000-generate-1a2b3c).",
            where="job id",
            fix=LIST_FIX,
        )
    row = None
    if ws.db_path.exists():
        with _db(ws) as conn:
            row = _row(conn, job_id)
    if row is not None and ws.owner and row["owner"] != ws.owner:
        row = None  # another classroom user's job: as unknown as one that never existed
    if row is None:
        raise NotFound(f"No job {job_id!r} in this workspace.", where=str(ws.root), fix=LIST_FIX)
    return _job_from_row(ws, row)


def list_jobs(
    ws: Workspace,
    *,
    status: str | tuple[str, ...] | None = None,
    limit: int | None = 50,
    owner: str | None = None,
    everyone: bool = False,
) -> list[Job]:
    """Jobs, newest first (after `reconcile`, so dead workers show as failed).

    Args:
        status: only jobs with this status (or any of these statuses).
        limit: at most this many (None for all).
        owner: only jobs submitted by this owner. A classroom user's workspace lists only its
            user's jobs whatever this says, unless `everyone`.
        everyone: every user's jobs (the instructor view; the caller checks the role).
    """
    if ws.owner and not everyone:
        owner = ws.owner
    wanted = (status,) if isinstance(status, str) else tuple(status or ())
    for one in wanted:
        if one not in STATUSES:
            raise InvalidInput(
                f"Unknown job status {one!r}.",
                where="status",
                fix=f"Use one of: {', '.join(STATUSES)}.",
            )
    if not ws.db_path.exists():
        return []
    reconcile(ws)
    sql, params = "SELECT * FROM jobs WHERE 1 = 1", []
    if wanted:
        sql += f" AND status IN ({', '.join('?' for _ in wanted)})"
        params.extend(wanted)
    if owner is not None:
        sql += " AND owner = ?"
        params.append(owner)
    sql += " ORDER BY seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, int(limit)))
    with _db(ws) as conn:
        return [_job_from_row(ws, row) for row in conn.execute(sql, params).fetchall()]


def artifacts_in_use(ws: Workspace) -> dict[str, str]:
    """Artifact name -> id of the oldest queued or running job that uses it."""
    if not ws.db_path.exists():
        return {}
    reconcile(ws)
    sql, params = "SELECT id, uses FROM jobs WHERE status IN ('queued', 'running')", []
    if ws.class_root is not None:  # names are per user: only this user's jobs hold them
        sql, params = sql + " AND owner = ?", [ws.owner]
    with _db(ws) as conn:
        rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
    used: dict[str, str] = {}
    for row in rows:
        for name in json.loads(row["uses"] or "[]"):
            used.setdefault(name, row["id"])
    return used


# --- starting workers ------------------------------------------------------------------------


def _slots() -> dict[str, int]:
    slots = {}
    for resource, variable in SLOT_VARIABLES.items():
        raw = os.environ.get(variable, "").strip()
        if not raw:
            slots[resource] = DEFAULT_SLOTS[resource]
            continue
        try:
            slots[resource] = int(raw)
            if slots[resource] < 0:
                raise ValueError(raw)
        except ValueError as exc:
            raise InvalidInput(
                f"{variable}={raw!r} is not a number of job slots.",
                where=f"environment variable {variable}",
                fix=f"Set it to a whole number such as {DEFAULT_SLOTS[resource]}, or unset it.",
            ) from exc
    return slots


def dispatch(ws: Workspace) -> list[str]:
    """Start queued jobs for which a slot is free, oldest first. Returns the ids started.

    Claiming and starting happen in one writer transaction, so two processes dispatching at
    once never start the same job twice nor overfill a slot.
    """
    if not ws.db_path.exists():
        return []
    slots = _slots()
    started: list[str] = []
    with _db(ws) as conn:  # most calls find nothing that may start: no writer lock for them
        waiting = {
            row[0] for row in conn.execute("SELECT resource FROM jobs WHERE status = 'queued'")
        }
        busy = Counter(
            row[0] for row in conn.execute("SELECT resource FROM jobs WHERE status = 'running'")
        )
    if all(busy[resource] >= slots.get(resource, 1) for resource in waiting):
        return started  # also when nothing is queued; a worker that ends dispatches again
    with _db(ws, write=True) as conn:
        running = Counter(
            row["resource"]
            for row in conn.execute("SELECT resource FROM jobs WHERE status = 'running'")
        )
        queued = conn.execute(
            "SELECT id, resource, owner FROM jobs WHERE status = 'queued' ORDER BY seq"
        ).fetchall()
        for row in queued:
            resource = row["resource"]
            if running[resource] >= slots.get(resource, 1):
                continue
            try:
                pid, pid_created = _start_worker(ws, row)
            except OSError as exc:
                _update(
                    conn,
                    ws,
                    row["id"],
                    {
                        "status": "failed",
                        "finished": _now(),
                        "error": f"The worker process could not be started: {exc}",
                    },
                )
                continue
            _update(
                conn,
                ws,
                row["id"],
                {
                    "status": "running",
                    "pid": pid,
                    "pid_created": pid_created,
                    "started": _now(),
                },
            )
            running[resource] += 1
            started.append(row["id"])
    return started


def _start_worker(ws: Workspace, row: sqlite3.Row) -> tuple[int, float | None]:
    job_id, run_dir = row["id"], _run_dir(ws, row)
    env = dict(os.environ)
    env["WORKBENCH_HOME"] = str(ws.home_of(row["owner"]))
    for variable in (CLASS_ROOT_VARIABLE, USER_VARIABLE):
        env.pop(variable, None)
    if ws.class_root is not None:  # the worker opens its owner's workspace, not the starter's
        env[CLASS_ROOT_VARIABLE], env[USER_VARIABLE] = str(ws.class_root), row["owner"]
    env["PYTHONUNBUFFERED"] = "1"  # the log shows lines as they are printed
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH", ""), str(_PACKAGE_PARENT)) if p
    )
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.worker", job_id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cancel can stop all it started
            env=env,
        )
    # A long-lived app process must collect its finished children, or zombies pile up.
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    try:
        pid_created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        pid_created = None
    return proc.pid, pid_created


# --- watching workers ------------------------------------------------------------------------


def _alive(pid: int | None, pid_created: float | None) -> bool:
    """Whether the worker that was given `pid` still runs (not a zombie, not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return pid_created is None or abs(proc.create_time() - pid_created) < 1.0
    except psutil.Error:
        return False


def _signal_worker(pid: int | None, pid_created: float | None, sig: int) -> None:
    """Send `sig` to the worker's process group (so children it started go too)."""
    if not _alive(pid, pid_created):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:  # started by hand, not as a group leader: only the process itself
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _note(
    conn: sqlite3.Connection, ws: Workspace, job_id: str, status: str, error: str, log_line: str
) -> None:
    """Record an outcome decided outside the worker in the job's events and log."""
    run_dir = _run_dir(ws, _row(conn, job_id))
    if not run_dir.is_dir():
        return
    EventLog(run_dir / EVENTS_FILE).event({"status": status, "error": error})
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"[workbench] {log_line}\n")


def reconcile(ws: Workspace) -> None:
    """Bring the queue in line with reality, then start what may start.

    A "running" job whose worker is gone (pid missing, zombie, or reused) becomes failed with
    the end of its log, or cancelled if a cancel was asked for. A cancel whose grace period has
    passed gets SIGTERM, then SIGKILL `TERM_TO_KILL_S` later. Cheap enough to call on every
    page refresh: it takes the writer lock only when some running job needs one of these.
    """
    if not ws.db_path.exists():
        return
    with _db(ws) as conn:  # the usual case, nothing to do, takes no writer lock
        running = conn.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
        queued = conn.execute("SELECT 1 FROM jobs WHERE status = 'queued' LIMIT 1").fetchone()
    if not any(_due(row, time.time()) for row in running):
        if queued is not None:
            dispatch(ws)
        return
    now = time.time()
    with _db(ws, write=True) as conn:
        for row in conn.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall():
            job_id, pid, pid_created = row["id"], row["pid"], row["pid_created"]
            action = _due(row, now)
            if action == "gone":
                if row["cancel_requested"]:
                    status, error = "cancelled", ""
                    line = "the worker stopped after the cancel request"
                else:
                    status, error = "failed", _died_error(_run_dir(ws, row))
                    line = "the worker process is gone; job marked failed"
                _note(conn, ws, job_id, status, error, line)
                _update(
                    conn,
                    ws,
                    job_id,
                    {"status": status, "error": error, "finished": _now()},
                    only_if=("running",),
                )
            elif action == "term":
                _signal_worker(pid, pid_created, signal.SIGTERM)
                _update(conn, ws, job_id, {"term_sent_at": now})
            elif action == "kill":
                _signal_worker(pid, pid_created, signal.SIGKILL)
                _record_killed(conn, ws, job_id, row["cancel_grace_s"] or 0.0)
    dispatch(ws)


def _due(row: sqlite3.Row, now: float) -> str | None:
    """What `reconcile` must do about a running job: "gone" (its worker died), "term" or
    "kill" (a cancel's grace, or the time after SIGTERM, is over), or None."""
    if not _alive(row["pid"], row["pid_created"]):
        return "gone"
    if not row["cancel_requested"] or row["cancel_at"] is None:
        return None
    grace = row["cancel_grace_s"] or 0.0
    if row["term_sent_at"] is None and now >= row["cancel_at"] + grace:
        return "term"
    if row["term_sent_at"] is not None and now >= row["term_sent_at"] + TERM_TO_KILL_S:
        return "kill"
    return None


def _record_killed(conn: sqlite3.Connection, ws: Workspace, job_id: str, grace_s: float) -> None:
    """Mark a job that had to be killed after its cancel grace as cancelled, saying so."""
    error = _killed_note(grace_s)
    _note(conn, ws, job_id, "cancelled", error, error)
    _update(
        conn,
        ws,
        job_id,
        {"status": "cancelled", "error": error, "finished": _now()},
        only_if=("running",),
    )


def _died_error(run_dir: Path) -> str:
    tail = _tail_text(run_dir / LOG_FILE, LOG_LINES_IN_ERRORS).rstrip()
    return f"{DIED_MESSAGE}\n{tail or '(the log is empty)'}"


def _killed_note(grace_s: float) -> str:
    return f"Cancelled: the worker did not stop within {grace_s:g} s of the request and was killed."


# --- cancelling and waiting ------------------------------------------------------------------


def cancel(ws: Workspace, job_id: str, *, wait: bool = True, grace_s: float = 10.0) -> Job:
    """Cancel a job. A queued job is cancelled at once; a running one is asked to stop.

    Args:
        wait: wait up to `grace_s` for the worker to stop by itself, then SIGTERM and SIGKILL
            its process group. With wait=False return at once; `reconcile` kills the worker if
            it is still running `grace_s` after the request.
        grace_s: how long the worker may take to stop by itself.

    Returns:
        The job as it is now (already finished jobs are returned unchanged).
    """
    job = get_job(ws, job_id)
    if not job.active:
        return job
    with _db(ws, write=True) as conn:
        row = _row(conn, job_id)
        if row["status"] == "queued":
            _update(
                conn,
                ws,
                job_id,
                {
                    "status": "cancelled",
                    "cancel_requested": 1,
                    "cancel_at": time.time(),
                    "finished": _now(),
                },
            )
            _note(conn, ws, job_id, "cancelled", "", "cancelled before it started")
            return _job_from_row(ws, _row(conn, job_id))
        if row["status"] == "running" and not row["cancel_requested"]:
            _update(
                conn,
                ws,
                job_id,
                {"cancel_requested": 1, "cancel_at": time.time(), "cancel_grace_s": float(grace_s)},
            )
    # The worker's should_stop() sees the file at once; without a run folder, the database flag.
    with contextlib.suppress(OSError):
        (job.run_dir / CANCEL_FILE).touch()
    if not wait:
        return get_job(ws, job_id)

    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        job = get_job(ws, job_id)
        if not job.active:
            return job
        if not _alive(job.pid, _pid_created(ws, job_id)):
            reconcile(ws)
            continue
        time.sleep(0.1)
    return _kill(ws, job_id, grace_s)


def resume(ws: Workspace, job_id: str) -> Job:
    """Queue a cancelled or failed job again in its own run folder.

    The runner finds what the first attempt left there (a training job: its last checkpoint)
    and continues; events.jsonl keeps growing, so charts show one curve across attempts.

    Raises:
        Conflict: the job is still queued or running, or it succeeded.
        InvalidInput: its kind cannot resume (its runner does not read its run folder back).
    """
    from workbench.errors import Conflict

    job = get_job(ws, job_id)
    if job.status not in ("cancelled", "failed"):
        raise Conflict(
            f"Job {job_id} is {job.status}; only a cancelled or failed job can be resumed.",
            where=job_id,
            fix="Wait for it to end, or start a new job with `workbench run`.",
        )
    if job.kind not in RESUMABLE_KINDS:
        raise InvalidInput(
            f"A {job.kind!r} job cannot be resumed.",
            where=job_id,
            fix="Run its recipe again: `workbench run " + str(job.run_dir / RECIPE_FILE) + "`.",
        )
    with contextlib.suppress(FileNotFoundError):
        (job.run_dir / CANCEL_FILE).unlink()
    with _db(ws, write=True) as conn:
        _update(
            conn,
            ws,
            job_id,
            {
                "status": "queued",
                "pid": None,
                "pid_created": None,
                "finished": "",
                "error": "",
                "result": "{}",
                "cancel_requested": 0,
                "cancel_at": None,
                "cancel_grace_s": None,
                "term_sent_at": None,
            },
            only_if=("cancelled", "failed"),
        )
    EventLog(job.run_dir / EVENTS_FILE)(message="resumed: queued again", status="queued")
    reconcile(ws)
    return get_job(ws, job_id)


def _pid_created(ws: Workspace, job_id: str) -> float | None:
    with _db(ws) as conn:
        row = conn.execute("SELECT pid_created FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row["pid_created"] if row else None


def _kill(ws: Workspace, job_id: str, grace_s: float) -> Job:
    """SIGTERM the worker, SIGKILL it if it is still there after TERM_TO_KILL_S, record it."""
    job = get_job(ws, job_id)
    pid, pid_created = job.pid, _pid_created(ws, job_id)
    for sig, patience in ((signal.SIGTERM, TERM_TO_KILL_S), (signal.SIGKILL, 5.0)):
        _signal_worker(pid, pid_created, sig)
        deadline = time.monotonic() + patience
        while _alive(pid, pid_created) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not get_job(ws, job_id).active:  # it recorded its own end on SIGTERM
            break
    with _db(ws, write=True) as conn:
        if _row(conn, job_id)["status"] == "running":
            _record_killed(conn, ws, job_id, grace_s)
    dispatch(ws)
    return get_job(ws, job_id)


def wait(ws: Workspace, job_id: str, *, timeout: float | None = None, poll_s: float = 0.2) -> Job:
    """Block until the job ends (or `timeout` seconds pass) and return it.

    On timeout the job is returned still active; check `job.active`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    last_reconcile = time.monotonic()
    while True:
        job = get_job(ws, job_id)
        if not job.active:
            return job
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return job
        if now - last_reconcile >= 1.0:  # notices a dead worker instead of waiting forever
            reconcile(ws)
            last_reconcile = now
            continue
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - now)))


def cancel_requested_in_db(ws: Workspace, job_id: str) -> bool:
    """Whether a cancel was asked for (the worker's fallback when the cancel file is missing)."""
    with _db(ws) as conn:
        row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row["cancel_requested"])


# --- the worker's side -----------------------------------------------------------------------


def mark_running(ws: Workspace, job_id: str) -> Job | None:
    """Called by the worker as it starts: record this process as the job's worker.

    Returns the job, or None when the job may not run here (finished already, or running in
    another live worker).
    """
    pid = os.getpid()
    with _db(ws, write=True) as conn:
        row = _row(conn, job_id)
        if row is None:
            return None
        mine = row["status"] == "running" and row["pid"] == pid
        orphaned = row["status"] == "running" and not _alive(row["pid"], row["pid_created"])
        if not (row["status"] == "queued" or mine or orphaned):
            return None
        _update(
            conn,
            ws,
            job_id,
            {
                "status": "running",
                "pid": pid,
                "pid_created": psutil.Process(pid).create_time(),
                "started": _now(),
            },
        )
        return _job_from_row(ws, _row(conn, job_id))


def mark_finished(ws: Workspace, job_id: str, status: str, *, result: dict, error: str) -> bool:
    """Called by the worker at its end: record the outcome, unless someone else already did
    (a cancel that killed it). Returns whether this call recorded it."""
    if status not in STATUSES[2:]:
        raise ValueError(f"not a final status: {status!r}")
    with _db(ws, write=True) as conn:
        return _update(
            conn,
            ws,
            job_id,
            {
                "status": status,
                "finished": _now(),
                "result": json.dumps(result, ensure_ascii=False, default=str),
                "error": error,
            },
            only_if=("running",),
        )


# --- reading a run ---------------------------------------------------------------------------


def read_events(job: Job, offset: int = 0) -> tuple[list[dict], int]:
    """Events written since byte `offset` of events.jsonl, and the offset to ask from next.

    A last line still being written is left for the next call; unreadable lines are skipped.
    """
    path = Path(job.run_dir) / EVENTS_FILE
    try:
        with open(path, "rb") as handle:
            if offset > os.fstat(handle.fileno()).st_size:
                offset = 0  # the file was replaced: start over
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    return _parse_lines(data[:end]), offset + end + 1


def _parse_lines(data: bytes) -> list[dict]:
    events = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def follow(ws: Workspace, job_id: str, *, poll_s: float = 0.2) -> Iterator[dict]:
    """Yield the job's events from the first one, as they come, until the job ends."""
    offset = 0
    last_reconcile = time.monotonic()
    while True:
        job = get_job(ws, job_id)
        if job.active and time.monotonic() - last_reconcile >= 1.0:
            reconcile(ws)
            last_reconcile = time.monotonic()
            job = get_job(ws, job_id)
        events, offset = read_events(job, offset)
        yield from events
        if not job.active:
            return
        time.sleep(poll_s)


def _read_tail(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The last `max_bytes` of a file, and whether that is the whole file."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - max_bytes))
            return handle.read(), size <= max_bytes
    except FileNotFoundError:
        return b"", True


def _tail_text(path: Path, lines: int) -> str:
    data, whole = _read_tail(path, max(65536, lines * 400))
    text = data.decode("utf-8", errors="replace").splitlines()
    if not whole and text:
        text = text[1:]  # the first line is cut
    return "\n".join(text[-lines:]) if lines > 0 else ""


def tail_log(job: Job, lines: int = 40) -> str:
    """The last `lines` lines of the worker's log (stdout and stderr)."""
    return _tail_text(Path(job.run_dir) / LOG_FILE, lines)


def latest_progress(job: Job) -> dict:
    """What a progress bar needs, from the end of events.jsonl only (cheap to poll).

    Returns:
        {"step", "total", "fraction" (0..1 or None), "message", "metrics" (merged, latest
        value of each), "time" (of the last progress event or None), "status" (the job's)}.
    """
    data, whole = _read_tail(Path(job.run_dir) / EVENTS_FILE, 65536)
    if not whole:
        data = data[data.find(b"\n") + 1 :]
    progress: dict[str, Any] = {
        "step": None,
        "total": None,
        "fraction": None,
        "message": "",
        "metrics": {},
        "time": None,
        "status": job.status,
    }
    for event in _parse_lines(data[: data.rfind(b"\n") + 1]):
        if "status" in event:
            continue
        for key in ("step", "total"):
            if event.get(key) is not None:
                progress[key] = event[key]
        if event.get("message"):
            progress["message"] = event["message"]
        progress["metrics"].update(event.get("metrics") or {})
        progress["time"] = event.get("time")
    step, total = progress["step"], progress["total"]
    if step is not None and total:
        progress["fraction"] = min(1.0, max(0.0, step / total))
    return progress


def job_recipe(job: Job) -> Any:
    """The job's recipe, read back from its run folder (to show it, or to submit it again)."""
    from workbench.recipes import load_recipe

    return load_recipe(Path(job.run_dir) / RECIPE_FILE)
