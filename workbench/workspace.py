"""The workspace: artifacts on disk, each a folder with a manifest that records its lineage.

Layout under `WORKBENCH_HOME` (default `./workspace`):

    models/<name>/     base, merged and quantized models (manifest.json + HF files)
    adapters/<name>/   LoRA adapters
    datasets/<name>/   datasets
    evals/<name>/      evaluation results
    runs/<job id>/     one folder per job (see jobs.py)
    jobs.db            the job queue (SQLite)
    .staging/          artifacts being written; moved into place only when complete
    .locks/            advisory file locks

Artifact names are unique across kinds, so a name alone finds an artifact.

Classroom mode (classroom.py) gives every user a workspace of their own under one class folder,
shares one job queue between them and lends everyone the instructor's read-only catalogue:

    <class>/users/<user>/    a user's workspace (the layout above, without jobs.db)
    <class>/catalogue/       models (and datasets) every user can read, none can change
    <class>/jobs.db          one queue for the class: every row has its owner

`Workspace.for_user(class_root, user)` opens such a workspace; a worker finds it again from the
WORKBENCH_CLASS_ROOT and WORKBENCH_USER variables its job starts it with.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import Conflict, Forbidden, InvalidInput, NotFound

KIND_FOLDERS = {"model": "models", "adapter": "adapters", "dataset": "datasets", "eval": "evals"}
MODEL_VARIANTS = ("base", "finetuned", "merged", "quantized")
MANIFEST_FILE = "manifest.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # used with fullmatch
CLASS_ROOT_VARIABLE, USER_VARIABLE = "WORKBENCH_CLASS_ROOT", "WORKBENCH_USER"
USERS_FOLDER, CATALOGUE_FOLDER, CLASS_DB = "users", "catalogue", "jobs.db"
BUNDLED_ASSETS = Path(__file__).resolve().parents[1] / "assets"  # data and suites we ship


@dataclass
class Manifest:
    """What an artifact is and where it came from.

    Attributes:
        name: unique name in the workspace.
        kind: model | adapter | dataset | eval.
        variant: for models, base | finetuned | merged | quantized; "" otherwise.
        parents: names of the artifacts it was made from (its lineage).
        recipe: the recipe (as a dict) of the job that made it.
        created: ISO 8601 time, UTC.
        metrics: scores and facts gathered about it (size, perplexity, accuracy...).
        source: where the bytes came from for imported artifacts (hub id, folder, package).
        job: id of the job that made it ("" when made outside a job).
        description: free text.
    """

    name: str
    kind: str
    variant: str = ""
    parents: list[str] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    created: str = ""
    metrics: dict = field(default_factory=dict)
    source: str = ""
    job: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def validate_name(name: str, what: str = "artifact name") -> str:
    """Return `name` if it is a safe artifact name, else raise InvalidInput.

    Safe means: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 80
    characters, and no '..' — so a name can never climb out of its folder.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"Invalid {what} {name!r}: use letters, digits, '.', '_' and '-', start with a "
            "letter or digit, at most 80 characters, and no '..'.",
            where=what,
            fix="Choose a name like 'smollm2-lora-v1'.",
        )
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Workspace:
    """A folder of artifacts and job runs. Cheap to construct; holds no open handles.

    Attributes:
        root: the folder.
        owner: the classroom user it belongs to ("" outside classroom mode).
        class_root: the class folder in classroom mode, else None.
        catalogue: the class's read-only catalogue in classroom mode, else None.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.owner = ""
        self.class_root: Path | None = None
        self.catalogue: Workspace | None = None
        class_root, user = os.environ.get(CLASS_ROOT_VARIABLE), os.environ.get(USER_VARIABLE)
        if root is None and class_root and user:  # a worker of a classroom job
            self._join_class(Path(class_root), user)
            return
        root = root or os.environ.get("WORKBENCH_HOME") or "workspace"
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def for_user(cls, class_root: str | os.PathLike, user: str) -> Workspace:
        """The workspace of classroom user `user` under `class_root`."""
        ws = cls.__new__(cls)
        ws.catalogue = None
        ws._join_class(Path(class_root), user)
        return ws

    def _join_class(self, class_root: Path, user: str) -> None:
        validate_name(user, "user name")
        self.class_root = class_root.expanduser().resolve()
        self.owner = user
        self.root = self.class_root / USERS_FOLDER / user
        self.catalogue = Workspace(self.class_root / CATALOGUE_FOLDER)

    def __repr__(self) -> str:
        if self.owner:
            return f"Workspace.for_user({str(self.class_root)!r}, {self.owner!r})"
        return f"Workspace({str(self.root)!r})"

    # --- paths -------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def db_path(self) -> Path:
        """The job queue: this workspace's own, or the class's shared one."""
        return self.class_root / CLASS_DB if self.class_root else self.root / "jobs.db"

    def home_of(self, owner: str) -> Path:
        """The workspace folder of the jobs `owner` submits (this one outside classroom mode)."""
        if self.class_root is None or not owner:
            return self.root
        return self.class_root / USERS_FOLDER / validate_name(owner, "user name")

    def may_read(self, path: str | os.PathLike) -> bool:
        """Whether this workspace's user may open a file or folder by path.

        Outside classroom mode anything the process can read; in classroom mode only what lies
        inside the user's own workspace, the class catalogue or the data Workbench ships in
        assets/ (symlinks resolved).
        """
        if self.class_root is None:
            return True
        resolved = Path(path).expanduser().resolve()
        allowed = [self.root, BUNDLED_ASSETS, *([self.catalogue.root] if self.catalogue else [])]
        return any(resolved == root or resolved.is_relative_to(root) for root in allowed)

    def check_readable(self, path: str | os.PathLike, where: str) -> Path:
        """`path`, resolved, if `may_read` allows it; else Forbidden that says what to do."""
        if not self.may_read(path):
            raise Forbidden(
                "In classroom mode you can open files only from your own workspace or the class "
                "catalogue.",
                where=where,
                fix="Upload the file instead, or pick a dataset or model from the lists.",
            )
        return Path(path).expanduser().resolve()

    def check_source(self, source: str, where: str) -> None:
        """`check_readable` for a value that may be a path, a name or a hub id: only what is
        written like a path ('/', '~' or '.' first) and exists is checked."""
        text = str(source).strip()
        looks_like_path = os.sep in text or text.startswith(("~", "."))
        if looks_like_path and Path(text).expanduser().exists():
            self.check_readable(text, where)

    def in_catalogue(self, name: str) -> bool:
        """Whether `name` is lent by the class catalogue (read-only) rather than owned."""
        own = Workspace._own_path_of(self, name)
        return own is None and self.catalogue is not None and self.catalogue.exists(name)

    def kind_dir(self, kind: str) -> Path:
        if kind not in KIND_FOLDERS:
            raise InvalidInput(
                f"Unknown artifact kind {kind!r}.",
                where="artifact kind",
                fix=f"Use one of: {', '.join(KIND_FOLDERS)}.",
            )
        return self.root / KIND_FOLDERS[kind]

    def ensure(self) -> Workspace:
        """Create the workspace folders if they are missing, and return self."""
        for sub in [*KIND_FOLDERS.values(), "runs", ".staging", ".locks"]:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    # --- lookup ------------------------------------------------------------------------------
    def path_of(self, name: str) -> Path | None:
        """Folder of the artifact called `name` (own, else the catalogue's), or None."""
        own = self._own_path_of(name)
        if own is None and self.catalogue is not None:
            return self.catalogue.path_of(name)
        return own

    def _own_path_of(self, name: str) -> Path | None:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
            return None
        for folder in KIND_FOLDERS.values():
            candidate = self.root / folder / name
            if (candidate / MANIFEST_FILE).is_file():
                return candidate
        return None

    def exists(self, name: str) -> bool:
        return self.path_of(name) is not None

    def get(self, name: str) -> Manifest:
        """The manifest of artifact `name`. Raises NotFound with the known names."""
        path = self.path_of(name)
        if path is None:
            known = ", ".join(m.name for m in self.list()) or "none yet"
            raise NotFound(
                f"No artifact called {name!r} in the workspace.",
                where=str(self.root),
                fix=f"Known artifacts: {known}. Run `workbench models list` to see them.",
            )
        return self._read_manifest(path)

    def _read_manifest(self, path: Path) -> Manifest:
        try:
            return Manifest.from_dict(json.loads((path / MANIFEST_FILE).read_text("utf-8")))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"The manifest of {path.name!r} cannot be read ({exc}).",
                where=str(path / MANIFEST_FILE),
                fix="Restore the file from a backup, or delete the folder if the artifact is lost.",
            ) from exc

    def list(self, kind: str | None = None, variant: str | None = None) -> list[Manifest]:
        """All artifacts, newest first; optionally only one kind and/or model variant.

        A folder whose manifest is unreadable is skipped here (and reported by `get`).
        """
        kinds = [kind] if kind else list(KIND_FOLDERS)
        found = self.catalogue.list(kind, variant) if self.catalogue is not None else []
        for k in kinds:
            folder = self.kind_dir(k)
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if not (path / MANIFEST_FILE).is_file():
                    continue
                try:
                    manifest = self._read_manifest(path)
                except InvalidInput:
                    continue
                if variant is None or manifest.variant == variant:
                    found.append(manifest)
        return sorted(found, key=lambda m: (m.created, m.name), reverse=True)

    # --- lineage -----------------------------------------------------------------------------
    def lineage(self, name: str) -> list[Manifest]:
        """Ancestors of `name` and the artifact itself, oldest first.

        A parent that was deleted appears as a stub manifest with kind "missing".
        """
        ordered: list[Manifest] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            try:
                manifest = self.get(n)
            except NotFound:
                ordered.append(Manifest(name=n, kind="missing"))
                return
            for parent in manifest.parents:
                visit(parent)
            ordered.append(manifest)

        visit(name)
        return ordered

    def children(self, name: str) -> list[Manifest]:
        """Artifacts that list `name` among their parents."""
        return [m for m in self.list() if name in m.parents]

    def graph(self) -> tuple[list[Manifest], list[tuple[str, str]]]:
        """Every artifact and every (parent, child) edge, for drawing the lineage."""
        nodes = self.list()
        edges = [(p, m.name) for m in nodes for p in m.parents]
        return nodes, edges

    # --- changes -----------------------------------------------------------------------------
    @contextmanager
    def create(
        self,
        kind: str,
        name: str,
        *,
        parents: list[str] | tuple[str, ...] = (),
        recipe: dict | None = None,
        variant: str = "",
        source: str = "",
        job: str = "",
        metrics: dict | None = None,
        description: str = "",
    ) -> Iterator[Path]:
        """Write a new artifact atomically.

        Yields an empty staging folder to fill. When the block ends without an exception the
        manifest is written and the folder moved into place in one rename; on an exception the
        staging folder is removed and nothing in the workspace changes.

        Raises:
            InvalidInput: bad name, kind or variant.
            Conflict: an artifact with this name exists already (nothing is overwritten).
        """
        validate_name(name)
        target = self.kind_dir(kind) / name
        if kind == "model" and variant not in MODEL_VARIANTS:
            raise InvalidInput(
                f"A model artifact needs a variant, got {variant!r}.",
                where=f"artifact {name!r}",
                fix=f"Use one of: {', '.join(MODEL_VARIANTS)}.",
            )
        self.refuse_taken(name)
        self.ensure()
        staging = self.root / ".staging" / f"{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            yield staging
            manifest = Manifest(
                name=name,
                kind=kind,
                variant=variant,
                parents=list(parents),
                recipe=recipe or {},
                created=_now(),
                metrics=metrics or {},
                source=source,
                job=job,
                description=description,
            )
            _write_json(staging / MANIFEST_FILE, asdict(manifest))
            with self.lock(name):
                self.refuse_taken(name)  # someone may have finished first while we worked
                os.rename(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def refuse_taken(self, name: str) -> None:
        """Raise Conflict if an artifact called `name` exists (call it before long work)."""
        existing = self.path_of(name)
        if existing is not None:
            raise Conflict(
                f"An artifact called {name!r} exists already; it is not overwritten.",
                where=str(existing),
                fix="Choose another name, or delete the old one first (`workbench models list`).",
            )

    def update_metrics(self, name: str, metrics: dict) -> Manifest:
        """Merge `metrics` into the manifest of `name` (e.g. eval scores) and return it.

        A catalogue artifact is not changed: its scores stay in the user's own eval artifacts.
        """
        path = self.path_of(name)
        manifest = self.get(name)
        if self.in_catalogue(name):
            return manifest
        with self.lock(name):
            manifest = self._read_manifest(path)
            manifest.metrics.update(metrics)
            _write_json(path / MANIFEST_FILE, asdict(manifest))
        return manifest

    def delete(self, name: str, *, force: bool = False) -> None:
        """Delete artifact `name`.

        Raises:
            NotFound: no such artifact.
            Conflict: a queued or running job uses it, or (unless `force`) other artifacts were
                made from it.
        """
        from workbench.jobs import artifacts_in_use  # jobs imports this module

        self.get(name)  # NotFound, with the known names, before anything else
        if self.in_catalogue(name):
            raise Forbidden(
                f"{name!r} belongs to the class catalogue, which only the instructor changes.",
                where=f"artifact {name!r}",
                fix="Use it as it is, or make your own copy under another name.",
            )
        users = artifacts_in_use(self).get(name)
        if users:
            raise Conflict(
                f"{name!r} is used by job {users}, which is queued or running.",
                where=f"artifact {name!r}",
                fix=f"Wait for the job to end or cancel it (`workbench jobs cancel {users}`).",
            )
        kids = [m.name for m in self.children(name)]
        if kids and not force:
            raise Conflict(
                f"{name!r} is the parent of {', '.join(kids)}; deleting it breaks their lineage.",
                where=f"artifact {name!r}",
                fix="Delete the children first, or delete with force to keep them anyway.",
            )
        path = self.path_of(name)
        trash = self.root / ".staging" / f"deleted-{name}-{uuid.uuid4().hex[:8]}"
        self.ensure()
        os.rename(path, trash)  # one atomic step: the artifact is gone or still whole
        shutil.rmtree(trash, ignore_errors=True)

    def size_bytes(self, name: str) -> int:
        """Total size on disk of the artifact's files."""
        path = self.path_of(name)
        if path is None:
            return 0
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive advisory lock shared by every process using this workspace."""
        validate_name(key, "lock name")
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        with open(self.root / ".locks" / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, path)
