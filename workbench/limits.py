"""Limits for shared and public use: demo mode (a hosted space) and the classroom's per-user cap.

Off by default: a developer on their own machine has no limits. Demo mode is turned on with an
environment variable, and each limit can be changed by its own:

    WORKBENCH_DEMO=1          small limits (below);  WORKBENCH_DEMO=readonly  also no jobs at all
    WORKBENCH_LIMIT_JOBS      jobs one user may have queued or running at once   (demo: 1)
    WORKBENCH_LIMIT_STEPS     optimizer steps a training job may ask for          (demo: 30)
    WORKBENCH_LIMIT_TOKENS    tokens one answer may generate                      (demo: 256)
    WORKBENCH_MAX_UPLOAD_MB   size of one uploaded file                           (demo: 20, else 200)

In classroom mode the class settings (classroom.py) add the per-user job limit. Every refusal is
a `Forbidden` error that names the limit and what to do instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from workbench.errors import Forbidden, InvalidInput

DEMO_VARIABLE = "WORKBENCH_DEMO"
LIMIT_VARIABLES = {
    "max_active_jobs": "WORKBENCH_LIMIT_JOBS",
    "max_train_steps": "WORKBENCH_LIMIT_STEPS",
    "max_new_tokens": "WORKBENCH_LIMIT_TOKENS",
    "max_upload_mb": "WORKBENCH_MAX_UPLOAD_MB",
}
DEMO_DEFAULTS = {"max_active_jobs": 1, "max_train_steps": 30, "max_new_tokens": 256}
UPLOAD_MB = {"demo": 20, "normal": 200}


@dataclass(frozen=True)
class Limits:
    """What this process lets a user do; None means no limit.

    Attributes:
        demo: demo mode is on (the app says so on every page).
        read_only: no jobs may be started (a read-only demo).
        max_active_jobs: jobs one user may have queued or running at once.
        max_train_steps: optimizer steps one training job may run.
        max_new_tokens: tokens one answer may generate.
        max_upload_mb: megabytes one uploaded file may have.
    """

    demo: bool = False
    read_only: bool = False
    max_active_jobs: int | None = None
    max_train_steps: int | None = None
    max_new_tokens: int | None = None
    max_upload_mb: float = UPLOAD_MB["normal"]

    def check_recipe(self, recipe: Any) -> None:
        """Raise Forbidden if a job with this recipe may not start here."""
        if self.read_only:
            raise Forbidden(
                "This is a read-only demo: it shows the workbench but starts no jobs.",
                where="demo mode",
                fix="Run Workbench on your own machine (`make run`) to train, quantize or "
                "evaluate.",
            )
        steps = getattr(recipe, "max_steps", None)
        limit = self.max_train_steps
        if limit is not None and steps is not None and (steps == 0 or steps > limit):
            asked = "as many steps as the epochs need" if steps == 0 else f"{steps} steps"
            raise Forbidden(
                f"Training here may run at most {limit} steps; this asks for {asked}.",
                where="max_steps",
                fix=f"Set Max steps to {limit} or fewer.",
            )
        tokens = getattr(recipe, "max_new_tokens", None)
        if tokens is not None:
            self.check_new_tokens(tokens)

    def check_new_tokens(self, tokens: int) -> None:
        """Raise Forbidden if one answer may not generate `tokens` tokens here."""
        if self.max_new_tokens is not None and tokens > self.max_new_tokens:
            raise Forbidden(
                f"Answers here may be at most {self.max_new_tokens} tokens long; {tokens} were "
                "asked for.",
                where="max_new_tokens",
                fix=f"Ask for {self.max_new_tokens} tokens or fewer.",
            )

    def new_tokens_cap(self, wanted: int) -> int:
        """`wanted`, lowered to the limit (for sliders that must not offer more)."""
        return wanted if self.max_new_tokens is None else min(wanted, self.max_new_tokens)


def _number(variable: str, default: float | None) -> float | None:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        if value < 0:
            raise ValueError(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"{variable}={raw!r} is not a limit.",
            where=f"environment variable {variable}",
            fix="Set it to a whole number of 0 or more, or unset it.",
        ) from exc
    return value


def demo_mode() -> str:
    """'' (off), 'on' or 'readonly', from WORKBENCH_DEMO."""
    raw = os.environ.get(DEMO_VARIABLE, "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return ""
    if raw in ("readonly", "read-only", "read_only"):
        return "readonly"
    if raw in ("1", "on", "true", "yes"):
        return "on"
    raise InvalidInput(
        f"{DEMO_VARIABLE}={raw!r} is not a demo mode.",
        where=f"environment variable {DEMO_VARIABLE}",
        fix="Use 1 (small limits), readonly (no jobs) or 0 (off).",
    )


def current_limits(ws: Any = None) -> Limits:
    """The limits for a user of workspace `ws` (a classroom user's adds the class's job cap)."""
    mode = demo_mode()
    defaults = DEMO_DEFAULTS if mode else {}
    values: dict[str, Any] = {}
    for field_name, variable in LIMIT_VARIABLES.items():
        if field_name == "max_upload_mb":
            values[field_name] = _number(variable, UPLOAD_MB["demo" if mode else "normal"])
            continue
        number = _number(variable, defaults.get(field_name))
        values[field_name] = None if number is None else int(number)
    class_root = getattr(ws, "class_root", None)
    if class_root is not None:
        from workbench.classroom import load_settings  # classroom imports jobs, which imports us

        cap = load_settings(class_root).max_jobs_per_user
        current = values["max_active_jobs"]
        values["max_active_jobs"] = cap if current is None else min(cap, current)
    return Limits(demo=bool(mode), read_only=mode == "readonly", **values)
