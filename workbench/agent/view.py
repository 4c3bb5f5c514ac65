"""What the Agent page shows, computed here so the page stays thin: the searchable documents
(bundled plus uploaded), the tools picked, a trace record per event, the memory for the next
turn, and the equivalent command line."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from workbench.agent.loop import AgentEvent
from workbench.agent.search import DOCS_DIR, DocumentIndex
from workbench.agent.tools import Tool, make_tools
from workbench.errors import InvalidInput

DEFAULT_TOOLS = ["calculator", "python", "search_docs"]
MAX_UPLOAD_BYTES = 2 * 2**20
MEMORY_TURNS = 4  # earlier question/answer pairs the agent remembers


@dataclass
class AgentTurn:
    """One question on the page with its trace (no token events) and answer."""

    question: str
    events: list[AgentEvent] = field(default_factory=list)
    answer: str | None = None
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return max((e.step for e in self.events), default=0)

    @property
    def calls(self) -> int:
        return sum(e.kind == "action" for e in self.events)


def document_index(uploads: list[tuple[str, bytes]]) -> DocumentIndex:
    """The bundled documents plus uploaded (name, bytes) files.

    Raises:
        InvalidInput: an upload that is too large or not UTF-8 text.
    """
    documents = {p.name: p.read_text("utf-8") for p in sorted(DOCS_DIR.glob("*")) if p.is_file()}
    for name, data in uploads:
        if len(data) > MAX_UPLOAD_BYTES:
            raise InvalidInput(
                f"{name} is {len(data) / 2**20:.1f} MB; documents may be up to 2 MB.",
                where=f"upload {name}",
                fix="Split it into smaller files.",
            )
        try:
            documents[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{name} is not UTF-8 text.",
                where=f"upload {name}",
                fix="Upload .md or .txt files saved as UTF-8.",
            ) from None
    return DocumentIndex(documents)


def page_tools(names: list[str], index: DocumentIndex) -> list[Tool]:
    return make_tools(names, index=index)


def memory(turns: list[AgentTurn]) -> list[dict]:
    """Earlier questions and answers, as chat messages, for multi-turn memory."""
    messages = []
    for turn in turns[-MEMORY_TURNS:]:
        if turn.answer:
            messages.append({"role": "user", "content": turn.question})
            messages.append({"role": "assistant", "content": turn.answer})
    return messages


def cli_command(model: str, tools: list[str], protocol: str, max_steps: int, question: str) -> str:
    parts = ["workbench", "agent", "--model", model, "--tools", ",".join(tools) or '""']
    parts += ["--protocol", protocol, "--max-steps", str(max_steps), question or "QUESTION"]
    return " ".join(shlex.quote(p) if p != '""' else p for p in parts) + " --json"
