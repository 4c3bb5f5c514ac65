"""The code interpreter's sandbox against the attacks a hostile or confused model may try: each
must fail safely, with an observation that says what was refused, and no process may outlive
the call."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.agent import sandbox
from workbench.agent.sandbox import MARKER, SandboxLimits, run_python
from workbench.errors import InvalidInput

FAST = SandboxLimits(wall_s=6, cpu_s=2, memory_mb=512, file_mb=1, max_output=500)


@pytest.fixture
def marker(monkeypatch) -> str:
    """This test's sandbox marker (other sandboxes may run on the machine at the same time)."""
    value = uuid.uuid4().hex
    monkeypatch.setattr(sandbox.uuid, "uuid4", lambda: SimpleNamespace(hex=value))
    return value


def sandbox_processes(marker: str) -> list[int]:
    """Processes that still carry this test's sandbox marker in their environment."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_code_runs_and_its_output_comes_back():
    result = run_python("import statistics\nprint(statistics.mean([13, 27, 41, 8, 61]))")
    assert result.ok and result.stdout.strip() == "30"
    assert result.observation() == "30"


def test_files_inside_the_sandbox_folder_work_and_the_folder_is_fresh():
    first = run_python("import os\nprint(os.listdir('.'))\nopen('notes.txt', 'w').write('hi')")
    second = run_python("import os\nprint(sorted(os.listdir('.')))")
    assert first.ok and second.ok
    assert "notes.txt" not in second.stdout  # each call starts from an empty folder


@pytest.mark.parametrize(
    "code, refused",
    [
        ("print(open('/etc/passwd').read())", "reading /etc/passwd"),
        ("import os\nprint(os.listdir('/'))", "listing /"),
        ("open('/tmp/workbench-sandbox-escape.txt', 'w').write('x')", "writing /tmp/"),
        ("import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())", "reading p"),
        ("print(open('/proc/1/environ').read())", "reading /proc/1/environ"),
    ],
    ids=["read-etc-passwd", "list-root", "write-outside", "symlink-out", "proc-environ"],
)
def test_files_outside_the_folder_are_refused(code, refused):
    result = run_python(code, FAST)
    assert not result.ok
    assert result.error.startswith("refused:") and refused in result.error
    assert "root:" not in result.stdout
    assert not Path("/tmp/workbench-sandbox-escape.txt").exists()


def test_the_workspace_is_out_of_reach(workspace):
    secret = workspace.root / "secret.txt"
    secret.write_text("the key is 1234")
    result = run_python(f"print(open({str(secret)!r}).read())", FAST)
    assert "refused: reading" in result.error and "1234" not in result.stdout


def test_the_environment_holds_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HOME'))")
    assert result.ok
    assert "OPENAI_API_KEY" not in result.stdout and "WORKBENCH_HOME" not in result.stdout
    assert "sk-very-secret" not in result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 22))",
        "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)",
    ],
    ids=["create_connection", "raw-socket", "urllib"],
)
def test_network_is_refused(code):
    result = run_python(code, FAST)
    assert not result.ok and "network access is not allowed" in result.observation()


@pytest.mark.parametrize(
    "code, refused",
    [
        ("import subprocess\nsubprocess.run(['cat', '/etc/passwd'])", "subprocess.Popen"),
        ("import os\nos.system('cat /etc/passwd')", "os.system"),
        ("import os\nos.execv('/bin/sh', ['sh'])", "os.exec"),
        ("import ctypes\nctypes.CDLL(None).system(b'id')", "ctypes.dlopen"),
        ("import ctypes\nprint(ctypes.string_at(id(1), 8))", "ctypes.string_at"),
        ("import _posixsubprocess", "importing _posixsubprocess"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "os.kill"),
    ],
    ids=["subprocess", "os.system", "exec", "ctypes-libc", "ctypes-memory", "fork_exec", "kill"],
)
def test_escapes_through_modules_are_refused(code, refused):
    result = run_python(code, FAST)
    assert not result.ok and refused in result.error
    assert "root:x:0:0" not in result.stdout


def test_a_fork_bomb_is_refused_and_leaves_nothing_behind(marker):
    result = run_python("import os\nwhile True:\n    os.fork()", FAST)
    assert "refused: creating processes" in result.error
    assert sandbox_processes(marker) == []


def test_memory_beyond_the_limit_fails_with_a_clear_reason():
    result = run_python("x = bytearray(2 * 1024**3)\nprint('allocated')", FAST)
    assert "allocated" not in result.stdout
    assert "more than 512 MB of memory" in result.error


def test_an_infinite_loop_is_stopped_and_the_process_is_gone(marker):
    result = run_python("while True:\n    pass", FAST)
    assert not result.ok
    assert "CPU time" in result.error or "wall-clock" in result.error
    assert result.seconds < FAST.wall_s + 3
    assert sandbox_processes(marker) == []


def test_a_sleeping_program_hits_the_wall_clock_limit(marker):
    result = run_python("import time\ntime.sleep(60)", SandboxLimits(wall_s=1.5, cpu_s=5))
    assert result.timed_out and "wall-clock" in result.error
    assert sandbox_processes(marker) == []


def test_huge_output_is_truncated_and_stopped():
    result = run_python("while True:\n    print('x' * 10000)", FAST)
    assert len(result.stdout) < 700 and "[output truncated" in result.stdout
    assert "wrote more than 1 MB" in result.error


def test_matplotlib_figures_come_back_as_png():
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')"
    result = run_python(code, SandboxLimits(wall_s=30, cpu_s=20))
    assert result.ok, result.observation()
    assert len(result.images) == 1 and result.images[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 figure(s) captured" in result.observation()


def test_pandas_works_inside():
    result = run_python("import pandas as pd\nprint(pd.Series([1, 2, 3]).sum())", FAST)
    assert result.ok and result.stdout.strip() == "6"


def test_empty_code_is_bad_input():
    with pytest.raises(InvalidInput) as caught:
        run_python("   ")
    assert caught.value.where == "python tool: code"


def test_the_program_cannot_lift_its_own_limits():
    # Raising a hard limit needs CAP_SYS_RESOURCE: as root the sandbox runs as user nobody or
    # with no capabilities, so this fails there too.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "print('lifted')"
    )
    result = run_python(code, FAST)
    assert "lifted" not in result.stdout
    assert "ValueError" in result.stderr or "PermissionError" in result.stderr


def test_an_interrupted_caller_leaves_no_process_behind(monkeypatch, marker):
    import subprocess

    def interrupted(self, timeout=None):
        if timeout is not None:  # the caller's wait: as if Stop or Ctrl-C arrived
            raise KeyboardInterrupt
        return original(self)

    original = subprocess.Popen.wait
    monkeypatch.setattr(subprocess.Popen, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_python("import time\ntime.sleep(60)", FAST)
    monkeypatch.undo()
    assert sandbox_processes(marker) == []
