"""Classroom mode: many users on one server, each with their own workspace and jobs.

Off by default. `workbench class init FOLDER` turns a folder into a class; the app started with
WORKBENCH_HOME=FOLDER then asks everyone to sign in first:

    FOLDER/classroom.json     settings and users (salted scrypt password hashes, roles)
    FOLDER/users/<name>/      each user's workspace (workspace.py)
    FOLDER/catalogue/         the shared read-only catalogue; fill it as a plain workspace,
                              e.g. `WORKBENCH_HOME=FOLDER/catalogue workbench models prepare`
    FOLDER/jobs.db            one job queue for the class (jobs.py), with a per-user limit

Two ways to sign in: "password" (the instructor adds every user with a password) and "token"
(one class token; a student's first sign-in with it picks their name and password, later ones
need that password). Instructors see everyone's jobs and results; nobody else sees another
user's work: workspaces are separate folders, job lookups are filtered by owner, and paths
outside one's own workspace and the catalogue are refused (`Workspace.check_readable`).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import Conflict, Forbidden, InvalidInput, NotFound
from workbench.workspace import CATALOGUE_FOLDER, USERS_FOLDER, Workspace, validate_name

SETTINGS_FILE = "classroom.json"
SIGN_IN_MODES = ("password", "token")
ROLES = ("student", "instructor")
MIN_PASSWORD = 6
DEFAULT_JOBS_PER_USER = 2
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
SIGN_IN_FAILED = "The name or the password is wrong."


@dataclass
class User:
    """One member of the class (the hash never leaves this module)."""

    name: str
    role: str = "student"
    created: str = ""
    salt: str = field(default="", repr=False)
    hash: str = field(default="", repr=False)

    @property
    def instructor(self) -> bool:
        return self.role == "instructor"


@dataclass
class ClassSettings:
    """How users sign in and what each may run.

    Attributes:
        sign_in: "password" (users added by the instructor) or "token" (self sign-up with the
            class token).
        max_jobs_per_user: jobs one user may have queued or running at once.
        token_salt, token_hash: the class token, hashed (token mode only).
        users: name -> User.
    """

    sign_in: str = "password"
    max_jobs_per_user: int = DEFAULT_JOBS_PER_USER
    token_salt: str = ""
    token_hash: str = ""
    users: dict[str, User] = field(default_factory=dict)


def is_classroom(root: str | os.PathLike) -> bool:
    """Whether `root` is a class folder (made by `init_class`)."""
    return (Path(root).expanduser() / SETTINGS_FILE).is_file()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hash(secret: str, salt: str) -> str:
    return hashlib.scrypt(secret.encode("utf-8"), salt=bytes.fromhex(salt), **_SCRYPT).hex()


def _new_hash(secret: str) -> tuple[str, str]:
    salt = secrets.token_hex(16)
    return salt, _hash(secret, salt)


def _matches(secret: str, salt: str, expected: str) -> bool:
    return bool(salt and expected) and hmac.compare_digest(_hash(secret, salt), expected)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"A password needs at least {MIN_PASSWORD} characters.",
            where="password",
            fix="Choose a longer password.",
        )


def load_settings(root: str | os.PathLike) -> ClassSettings:
    """The class settings. Raises NotFound if `root` is not a class folder."""
    path = Path(root).expanduser() / SETTINGS_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise NotFound(
            f"{Path(root)} is not a class folder (it has no {SETTINGS_FILE}).",
            where=str(root),
            fix="Create the class with `workbench class init FOLDER`.",
        ) from exc
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"The class settings cannot be read ({exc}).",
            where=str(path),
            fix="Restore the file from a backup, or create the class again.",
        ) from exc
    users = {name: User(**{"name": name, **entry}) for name, entry in data.pop("users", {}).items()}
    known = set(ClassSettings.__dataclass_fields__) - {"users"}
    return ClassSettings(**{k: v for k, v in data.items() if k in known}, users=users)


def _save(root: Path, settings: ClassSettings) -> None:
    data = asdict(settings)
    data["users"] = {
        name: {k: v for k, v in entry.items() if k != "name"}
        for name, entry in data["users"].items()
    }
    path = root / SETTINGS_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.chmod(tmp, 0o600)  # hashes are not for other accounts on the server
    os.replace(tmp, path)


@contextmanager
def _changing(root: str | os.PathLike) -> Iterator[ClassSettings]:
    """The settings under an exclusive lock, saved when the block ends without an error."""
    root = Path(root).expanduser().resolve()
    with open(root / f".{SETTINGS_FILE}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            settings = load_settings(root)
            yield settings
            _save(root, settings)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def init_class(
    root: str | os.PathLike,
    *,
    sign_in: str = "password",
    token: str = "",
    max_jobs_per_user: int = DEFAULT_JOBS_PER_USER,
) -> ClassSettings:
    """Turn `root` into a class folder (its catalogue and users folders included).

    Raises:
        InvalidInput: unknown sign-in mode, a token mode without a token, a bad job limit.
        Conflict: `root` is a class already, or holds a plain workspace's artifacts.
    """
    root = Path(root).expanduser().resolve()
    if sign_in not in SIGN_IN_MODES:
        raise InvalidInput(
            f"Unknown sign-in mode {sign_in!r}.",
            where="sign_in",
            fix=f"Use one of: {', '.join(SIGN_IN_MODES)}.",
        )
    if sign_in == "token" and len(token) < MIN_PASSWORD:
        raise InvalidInput(
            f"A class token needs at least {MIN_PASSWORD} characters.",
            where="token",
            fix="Pass --token with a longer secret, and give it to the students.",
        )
    if not isinstance(max_jobs_per_user, int) or max_jobs_per_user < 1:
        raise InvalidInput(
            f"max_jobs_per_user is {max_jobs_per_user!r}; it must be 1 or more.",
            where="max_jobs_per_user",
            fix="Use a small whole number such as 2.",
        )
    if is_classroom(root):
        raise Conflict(
            f"{root} is a class already.",
            where=str(root),
            fix="Add users with `workbench class add-user`, or pick another folder.",
        )
    if Workspace(root).list():
        raise Conflict(
            f"{root} holds a workspace's artifacts; a class needs a folder of its own.",
            where=str(root),
            fix="Pick an empty or new folder for the class.",
        )
    (root / USERS_FOLDER).mkdir(parents=True, exist_ok=True)
    Workspace(root / CATALOGUE_FOLDER).ensure()
    settings = ClassSettings(sign_in=sign_in, max_jobs_per_user=max_jobs_per_user)
    if sign_in == "token":
        settings.token_salt, settings.token_hash = _new_hash(token)
    _save(root, settings)
    return settings


def add_user(root: str | os.PathLike, name: str, password: str, *, role: str = "student") -> User:
    """Add a user (instructors run this). Raises Conflict if the name is taken."""
    validate_name(name, "user name")
    _check_password(password)
    if role not in ROLES:
        raise InvalidInput(
            f"Unknown role {role!r}.", where="role", fix=f"Use one of: {', '.join(ROLES)}."
        )
    with _changing(root) as settings:
        if name in settings.users:
            raise Conflict(
                f"There is a user called {name!r} already.",
                where="user name",
                fix="Choose another name, or set a new password with `workbench class passwd`.",
            )
        salt, digest = _new_hash(password)
        user = User(name=name, role=role, created=_now(), salt=salt, hash=digest)
        settings.users[name] = user
    Workspace.for_user(root, name).ensure()
    return user


def set_password(root: str | os.PathLike, name: str, password: str) -> None:
    """Give user `name` a new password."""
    _check_password(password)
    with _changing(root) as settings:
        user = settings.users.get(name)
        if user is None:
            raise NotFound(
                f"No user called {name!r}.", where="user name", fix="See `workbench class users`."
            )
        user.salt, user.hash = _new_hash(password)


def list_users(root: str | os.PathLike) -> list[User]:
    return sorted(
        load_settings(root).users.values(), key=lambda u: (u.role != "instructor", u.name)
    )


def sign_in(root: str | os.PathLike, name: str, password: str, token: str = "") -> User:
    """Check a sign-in and return the user.

    In token mode a name seen for the first time (with the right class token) becomes a new
    student with this password. The same message answers a wrong name and a wrong password.

    Raises:
        Forbidden: wrong name, password or class token.
        InvalidInput: a new user's name or password is not acceptable.
    """
    name = (name or "").strip()
    settings = load_settings(root)
    user = settings.users.get(name)
    if settings.sign_in == "token" and not _matches(
        token or "", settings.token_salt, settings.token_hash
    ):
        raise Forbidden(
            "The class token is wrong.",
            where="class token",
            fix="Ask your instructor for the class token.",
        )
    if user is None and settings.sign_in == "token":
        try:
            return add_user(root, name, password)
        except Conflict:  # signed up a moment ago in another tab: check the password below
            user = load_settings(root).users[name]
    if user is None or not _matches(password or "", user.salt, user.hash):
        raise Forbidden(
            SIGN_IN_FAILED,
            where="sign-in",
            fix="Check both and try again; your instructor can set a new password.",
        )
    return user


def user_workspace(root: str | os.PathLike, user: User) -> Workspace:
    """The workspace `user` works in (created on first use)."""
    return Workspace.for_user(root, user.name).ensure()


def overview(root: str | os.PathLike) -> list[dict]:
    """One row per user for the instructor: artifacts, jobs, and the latest scores."""
    from workbench.jobs import list_jobs  # jobs imports limits, which imports this module

    root = Path(root).expanduser().resolve()
    users = list_users(root)
    jobs = (
        list_jobs(Workspace.for_user(root, users[0].name), everyone=True, limit=None)
        if users
        else []
    )
    rows = []
    for user in users:
        ws = Workspace.for_user(root, user.name)
        own = [m for m in ws.list() if not ws.in_catalogue(m.name)]
        mine = [job for job in jobs if job.owner == user.name]
        evals = [m for m in own if m.kind == "eval"]
        rows.append(
            {
                "user": user.name,
                "role": user.role,
                "models": sum(m.kind in ("model", "adapter") for m in own),
                "datasets": sum(m.kind == "dataset" for m in own),
                "evals": len(evals),
                "jobs": len(mine),
                "running": sum(job.status == "running" for job in mine),
                "queued": sum(job.status == "queued" for job in mine),
                "failed": sum(job.status == "failed" for job in mine),
                "last_job": mine[0].created if mine else "",
            }
        )
    return rows


def class_jobs(root: str | os.PathLike, viewer: User, *, limit: int | None = 200) -> list:
    """Every user's jobs, newest first: the instructor view. Refused for students."""
    from workbench.jobs import list_jobs

    if not viewer.instructor:
        raise Forbidden(
            "Only an instructor sees everyone's jobs.",
            where="class view",
            fix="Your own jobs are on the Jobs page.",
        )
    return list_jobs(Workspace.for_user(root, viewer.name), everyone=True, limit=limit)


def class_results(root: str | os.PathLike, viewer: User) -> list[dict]:
    """Every user's evaluation artifacts with their scores (instructor only)."""
    if not viewer.instructor:
        raise Forbidden(
            "Only an instructor sees everyone's results.",
            where="class view",
            fix="Your own results are on the Evaluate › Results page.",
        )
    rows = []
    for user in list_users(root):
        ws = Workspace.for_user(root, user.name)
        for manifest in ws.list(kind="eval"):
            if ws.in_catalogue(manifest.name):
                continue
            scores = {k: v for k, v in manifest.metrics.items() if isinstance(v, (int, float))}
            rows.append(
                {
                    "user": user.name,
                    "eval": manifest.name,
                    "of": ", ".join(manifest.parents),
                    "created": manifest.created,
                    **scores,
                }
            )
    return rows


def classroom_root() -> Path | None:
    """The class folder when WORKBENCH_HOME is one (classroom mode on), else None."""
    home = Path(os.environ.get("WORKBENCH_HOME") or "workspace").expanduser()
    return home.resolve() if is_classroom(home) else None
