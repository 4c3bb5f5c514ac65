"""The layering the design promises: the backend never imports the UI, pages never import ML
libraries, and pages stay thin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ML_LIBRARIES = {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
UI_LIBRARIES = {"streamlit", "gradio"}
GRADIO_MODULE = REPO_ROOT / "workbench" / "demo.py"  # the one module that builds the Gradio demo
MAX_PAGE_LINES = 200


def imported_roots(path: Path) -> set[str]:
    """Top-level package names imported anywhere in the file (also inside functions)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


BACKEND = sorted((REPO_ROOT / "workbench").rglob("*.py"))
UI_FILES = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "pages").glob("*.py"))]


def test_the_files_are_found():
    assert REPO_ROOT / "workbench" / "workspace.py" in BACKEND
    assert REPO_ROOT / "pages" / "home.py" in UI_FILES


@pytest.mark.parametrize("path", BACKEND, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_backend_does_not_import_the_ui(path):
    allowed = {"gradio"} if path == GRADIO_MODULE else set()
    bad = (imported_roots(path) & UI_LIBRARIES) - allowed
    assert not bad, (
        f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}; the backend stays UI-free"
    )


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pages_do_not_import_ml_libraries(path):
    bad = imported_roots(path) & ML_LIBRARIES
    assert not bad, f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}; call workbench/ instead"


@pytest.mark.parametrize("path", UI_FILES[1:], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pages_stay_thin(path):
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= MAX_PAGE_LINES, f"{path.name} has {lines} lines; move logic into workbench/"


def test_the_checks_catch_what_they_look_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom streamlit import session_state\n\ndef f():\n"
        "    import torch.nn as nn\n    from . import sibling\n",
        "utf-8",
    )
    assert imported_roots(sample) == {"os", "streamlit", "torch"}
