"""Errors meant for people: what went wrong, where, and what to do about it.

Every module raises `WorkbenchError` (or a subclass) for anything a user can cause or fix.
The CLI prints it without a traceback; the UI shows it as an error box. Programming errors stay
ordinary exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WorkbenchError(Exception):
    """A problem a person can understand and act on.

    Attributes:
        what: one sentence saying what went wrong.
        where: the file, row, field, model or job concerned ("" when there is none).
        fix: what to do next ("" when nothing can be suggested).
    """

    what: str
    where: str = ""
    fix: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.what)

    def __str__(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "where": self.where, "fix": self.fix}


class NotFound(WorkbenchError):
    """A named model, artifact or job does not exist."""


class InvalidInput(WorkbenchError):
    """A recipe, name or argument is malformed."""


class Conflict(WorkbenchError):
    """The action would clobber or break something that exists (a name taken, an artifact in use)."""


class Forbidden(WorkbenchError):
    """The action is not allowed for this user or in this mode (classroom, demo limits)."""
