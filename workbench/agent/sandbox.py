"""The Python code interpreter's sandbox: run untrusted code in a short-lived, limited process.

    result = run_python("print(sum(range(10)))")   # SandboxResult(stdout="45\\n", ...)

What each call gets:
- a fresh temporary folder as its working folder (deleted afterwards); code may read and write
  there, and read the Python installation (to import numpy, pandas, matplotlib), nothing else;
- a scrubbed environment (no API keys, tokens, WORKBENCH_HOME or proxy settings);
- resource limits: CPU seconds, address space (memory), bytes per written file (output too),
  open files, processes; and a wall-clock limit after which the whole process group is killed;
- as root: its own empty network namespace (no network at all) and user `nobody`;
- an audit hook (sys.addaudithook) inside the process that refuses: opening files outside the
  folder (reading outside it too, except the Python installation), sockets, starting programs
  (subprocess, os.system, exec, spawn), fork, signals, ctypes/cffi/mmap, gc introspection;
- output cut to `max_output` characters, figures that matplotlib left open returned as PNG.
Every process the call started is killed before it returns, also ones that left the process
group (found by a marker in their environment).

What it is NOT: a container or a VM. The audit hook runs inside the same interpreter as the
code, so a determined attacker who finds a way to corrupt the interpreter's memory (a bug in a
C extension, for example) could get past it; the kernel-level parts (limits, the network
namespace, user nobody, the kill) still hold then, but files that user nobody may read stay
readable. Without root there is no network namespace and no user change: the audit hook is
then the only thing between the code and the network and your files. Run agents on untrusted
input inside a container when that matters.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import InvalidInput

CHILD = Path(__file__).with_name("sandbox_child.py")
MARKER = "WORKBENCH_SANDBOX_ID"
SIGNAL_REASONS = {
    signal.SIGXCPU: "it used more CPU time than allowed ({cpu_s} s)",
    signal.SIGXFSZ: "it wrote more than {file_mb} MB (to its output or a file)",
    signal.SIGKILL: "it was killed (memory or CPU limit)",
    signal.SIGSEGV: "it crashed (segmentation fault; often memory running out)",
}


@dataclass
class SandboxLimits:
    """Limits for one run of the interpreter."""

    wall_s: float = 20.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 8
    nproc: int = 32
    max_output: int = 4000
    max_figures: int = 4

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "file_mb", "max_output"):
            if getattr(self, name) <= 0:
                raise InvalidInput(
                    f"Sandbox limit {name} is {getattr(self, name)}; it must be above 0.",
                    where=f"sandbox limits: {name}",
                    fix="Use the defaults (SandboxLimits()).",
                )


@dataclass
class SandboxResult:
    """What one run produced. `error` says in words why it failed ("" when it did not)."""

    stdout: str
    stderr: str
    returncode: int
    seconds: float
    error: str = ""
    timed_out: bool = False
    images: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and self.returncode == 0

    def observation(self) -> str:
        """The text an agent reads back: output, then errors and why the run stopped."""
        parts = []
        if self.stdout.strip():
            parts.append(self.stdout.rstrip())
        if self.stderr.strip():
            parts.append(self.stderr.rstrip())
        if self.error:
            parts.append(f"[sandbox] {self.error}")
        if self.images:
            parts.append(f"[{len(self.images)} figure(s) captured]")
        return "\n".join(parts) or "(no output)"

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("stdout", "stderr", "returncode", "seconds")}
        data.update(error=self.error, timed_out=self.timed_out, ok=self.ok)
        data["images"] = [base64.b64encode(i).decode("ascii") for i in self.images]
        return data


def read_roots() -> list[str]:
    """Folders the code may read: the Python installation (standard library, site-packages)
    and the system's time-zone and font data."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(sysconfig.get_paths().values())
    paths.update(site.getsitepackages())
    paths.update(("/usr/share/zoneinfo", "/usr/share/fonts", "/etc/fonts"))
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `code` in a new sandboxed Python process and return what it printed.

    Raises:
        InvalidInput: the code is empty or longer than 100 000 characters.
    """
    limits = limits or SandboxLimits()
    if not code.strip():
        raise InvalidInput("The code is empty.", where="python tool: code", fix="Give some code.")
    if len(code) > 100_000:
        raise InvalidInput(
            f"The code is {len(code)} characters; the interpreter takes at most 100 000.",
            where="python tool: code",
            fix="Send shorter code.",
        )
    private = Path(tempfile.mkdtemp(prefix="wb-sandbox-io-"))
    box = Path(tempfile.mkdtemp(prefix="wb-sandbox-"))
    marker = uuid.uuid4().hex
    to_nobody = os.getuid() == 0 and _readable_by_all(read_roots())
    started = time.perf_counter()
    try:
        (box / "main.py").write_text(code, encoding="utf-8")
        settings = {
            "memory_mb": limits.memory_mb,
            "cpu_s": limits.cpu_s,
            "file_mb": limits.file_mb,
            "nproc": _nproc_limit(limits.nproc, to_nobody),
            "to_nobody": to_nobody,
            "max_figures": limits.max_figures,
            "read_roots": read_roots(),
        }
        command = [sys.executable, "-I", str(CHILD), str(box), json.dumps(settings)]
        command = _root_prefix(to_nobody) + command
        with open(private / "out", "wb") as out, open(private / "err", "wb") as err:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=box,
                env=_clean_env(box, marker),
                start_new_session=True,
                close_fds=True,
            )
            timed_out = False
            try:
                process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # also when the caller is interrupted (a Stop click, Ctrl-C)
                _kill_all(process, marker)
        seconds = time.perf_counter() - started
        stdout = _read_capped(private / "out", limits.max_output)
        stderr = _read_capped(private / "err", limits.max_output, tail=True)
        stderr = _strip_unshare_noise(stderr)
        result = SandboxResult(
            stdout=stdout,
            stderr=stderr,
            returncode=process.returncode,
            seconds=round(seconds, 3),
            timed_out=timed_out,
        )
        result.error = _why_it_failed(result, limits)
        result.images = [
            p.read_bytes()
            for p in sorted(box.glob("figure-*.png"))[: limits.max_figures]
            if p.stat().st_size <= 4 * 2**20
        ]
        return result
    finally:
        shutil.rmtree(box, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def _clean_env(box: Path, marker: str) -> dict[str, str]:
    """Only what Python needs: no secrets, no proxies, no workspace; one thread for BLAS."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(box),
        "TMPDIR": str(box),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(box / ".matplotlib"),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        MARKER: marker,
    }


def _readable_by_all(roots: list[str]) -> bool:
    """Whether user nobody could import from the Python installation (a pyenv Python under
    /root cannot be read by other users)."""
    for root in roots:
        path = Path(root)
        for part in (path, *path.parents):
            if not part.stat().st_mode & 0o001:
                return False
    return True


def _root_prefix(to_nobody: bool) -> list[str]:
    """As root: a new, empty network namespace; and where the child stays root (its Python is
    not readable by nobody), no capabilities, so that the kernel enforces its process limit."""
    if os.getuid() != 0:
        return []
    prefix = [shutil.which("unshare") or "", "--net", "--"] if shutil.which("unshare") else []
    if not to_nobody and shutil.which("setpriv"):
        prefix += [shutil.which("setpriv") or "", "--bounding-set=-all", "--inh-caps=-all", "--"]
    return prefix


def _nproc_limit(extra: int, to_nobody: bool) -> int:
    """RLIMIT_NPROC counts every process of the user: as nobody allow `extra`, else the user's
    current processes plus `extra`."""
    if to_nobody:
        return extra
    mine = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                mine += entry.stat().st_uid == os.getuid()
            except OSError:
                continue
    return mine + extra


def _kill_all(process: subprocess.Popen, marker: str) -> None:
    """Kill the process group, then any process still carrying this run's marker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _read_capped(path: Path, most: int, *, tail: bool = False) -> str:
    """At most `most` characters of a file: its start (stdout) or its end (stderr, where the
    error is)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if tail:
            handle.seek(max(0, size - most * 4))
        text = handle.read(most * 4).decode("utf-8", errors="replace")
    if len(text) <= most and size <= most * 4:
        return text
    note = (
        f"[output truncated: {size} bytes in all, {'last' if tail else 'first'} {most} chars shown]"
    )
    return f"{note}\n{text[-most:]}" if tail else f"{text[:most]}\n{note}"


def _strip_unshare_noise(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("unshare:"))


def _why_it_failed(result: SandboxResult, limits: SandboxLimits) -> str:
    if result.timed_out:
        return f"stopped after {limits.wall_s:g} s (wall-clock limit); the process was killed"
    code = result.returncode
    if code < 0:
        reason = SIGNAL_REASONS.get(-code, f"it was stopped by signal {-code}")
        return "stopped: " + reason.format(cpu_s=limits.cpu_s, file_mb=limits.file_mb)
    tail = result.stderr.strip().splitlines()[-1:] or [""]
    if tail[0].startswith("MemoryError"):
        return f"stopped: it tried to use more than {limits.memory_mb} MB of memory"
    if "File too large" in tail[0]:
        return f"stopped: it wrote more than {limits.file_mb} MB (to its output or a file)"
    if "sandbox:" in tail[0]:
        return "refused: " + tail[0].split("sandbox:", 1)[1].strip()
    return ""
