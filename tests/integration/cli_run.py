"""Running the real `workbench` CLI in a subprocess, as a user would, on a given workspace."""

from __future__ import annotations

import os
import subprocess
import sys


def workbench(*args: str, home, cwd=None, timeout: float = 400) -> subprocess.CompletedProcess:
    """`python -m workbench ARGS` with WORKBENCH_HOME=home; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "WORKBENCH_HOME": str(home)},
        cwd=cwd,
        timeout=timeout,
    )
