"""Chats and arena votes, kept in the workspace so they survive a reload and can be exported.

    <workspace>/chats/<id>.json      one conversation: model, system prompt, settings, messages
    <workspace>/arena/votes.jsonl    one line per arena vote (append-only)

The evaluation page and the preference-data (DPO) step read the votes with `read_votes(ws)`.
Writes go to a temporary file first and replace the old one in one step, so a crash never
leaves half a chat.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, NotFound
from workbench.workspace import Workspace

CHATS_DIR, ARENA_DIR, VOTES_FILE = "chats", "arena", "votes.jsonl"
OUTCOMES = ("win", "tie", "skip")
EXPORT_FORMATS = ("json", "markdown")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Chat:
    """One conversation.

    Attributes:
        id: file name stem (time-ordered).
        model: the model or endpoint it talks to.
        system: the system prompt ("" for none).
        settings: generation settings as a dict (max_new_tokens, temperature, top_p, seed, stop).
        messages: {"role": "user" | "assistant", "content", and for answers "stats"} dicts.
        title: the first user message, shortened.
    """

    id: str
    model: str
    system: str = ""
    settings: dict = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    title: str = ""
    created: str = ""
    updated: str = ""

    def prompt_messages(self) -> list[dict]:
        """What the engine reads: system prompt, then the turns (without stats)."""
        head = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return head + [{"role": m["role"], "content": m["content"]} for m in self.messages]


def _chats_dir(ws: Workspace) -> Path:
    return ws.root / CHATS_DIR


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def new_chat(ws: Workspace, model: str, *, system: str = "", settings: dict | None = None) -> Chat:
    """A new, empty chat (saved at once, so it shows in the list)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    chat = Chat(
        id=f"{stamp}-{uuid.uuid4().hex[:6]}",
        model=model,
        system=system,
        settings=dict(settings or {}),
        created=_now(),
    )
    return save_chat(ws, chat)


def save_chat(ws: Workspace, chat: Chat) -> Chat:
    chat.updated = _now()
    if not chat.title:
        first = next((m["content"] for m in chat.messages if m["role"] == "user"), "")
        chat.title = " ".join(first.split())[:60]
    _write_atomic(
        _chats_dir(ws) / f"{chat.id}.json", json.dumps(asdict(chat), ensure_ascii=False, indent=1)
    )
    return chat


def _check_id(chat_id: str) -> str:
    if not isinstance(chat_id, str) or not chat_id or "/" in chat_id or chat_id.startswith("."):
        raise InvalidInput(
            f"{chat_id!r} is not a chat id.", where="chat id", fix="Pick a chat from the list."
        )
    return chat_id


def load_chat(ws: Workspace, chat_id: str) -> Chat:
    path = _chats_dir(ws) / f"{_check_id(chat_id)}.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise NotFound(
            f"No chat {chat_id!r}.", where=str(path), fix="Pick a chat from the list."
        ) from exc
    known = set(Chat.__dataclass_fields__)
    return Chat(**{k: v for k, v in data.items() if k in known})


def list_chats(ws: Workspace, limit: int = 100) -> list[Chat]:
    """Saved chats, most recently changed first (unreadable files are skipped)."""
    chats = []
    for path in _chats_dir(ws).glob("*.json"):
        try:
            chats.append(load_chat(ws, path.stem))
        except (ValueError, TypeError, OSError):
            continue
    chats.sort(key=lambda c: (c.updated, c.id), reverse=True)
    return chats[:limit]


def delete_chat(ws: Workspace, chat_id: str) -> None:
    (_chats_dir(ws) / f"{_check_id(chat_id)}.json").unlink(missing_ok=True)


def export_chat(chat: Chat, fmt: str = "json") -> str:
    """The chat as JSON (OpenAI messages plus model and settings) or as Markdown.

    Raises:
        InvalidInput: an unknown format.
    """
    if fmt == "json":
        data = {
            "model": chat.model,
            "settings": chat.settings,
            "messages": chat.prompt_messages(),
            "created": chat.created,
        }
        return json.dumps(data, ensure_ascii=False, indent=2)
    if fmt == "markdown":
        lines = [f"# {chat.title or 'Chat'}", "", f"Model: `{chat.model}` · {chat.created}", ""]
        if chat.system.strip():
            lines += ["**System:**", "", chat.system, ""]
        for message in chat.messages:
            lines += [f"**{message['role'].capitalize()}:**", "", message["content"], ""]
        return "\n".join(lines)
    raise InvalidInput(
        f"Unknown export format {fmt!r}.", where="format", fix=f"Use {EXPORT_FORMATS}."
    )


# --- arena votes -------------------------------------------------------------------------------


def record_vote(
    ws: Workspace,
    *,
    prompt: str,
    models: list[str],
    answers: list[str],
    outcome: str,
    winner: str | None = None,
    system: str = "",
    settings: dict | None = None,
) -> dict:
    """Append one arena vote.

    Args:
        outcome: "win" (then `winner` names one of `models`), "tie" or "skip".

    Raises:
        InvalidInput: models and answers differ in number, fewer than two models, an unknown
            outcome, or a winner that is not one of the models.
    """
    if len(models) < 2 or len(models) != len(answers):
        raise InvalidInput(
            f"A vote needs two or more models with one answer each; got {len(models)} models "
            f"and {len(answers)} answers.",
            where="arena vote",
            fix="Let every model answer before voting.",
        )
    if outcome not in OUTCOMES:
        raise InvalidInput(
            f"Unknown outcome {outcome!r}.", where="arena vote", fix=f"Use {OUTCOMES}."
        )
    if (outcome == "win") != (winner is not None) or (winner is not None and winner not in models):
        raise InvalidInput(
            f"Outcome {outcome!r} with winner {winner!r} does not fit models {models}.",
            where="arena vote",
            fix="A win names one of the models; a tie or skip names none.",
        )
    vote = {
        "id": uuid.uuid4().hex[:12],
        "time": _now(),
        "prompt": prompt,
        "system": system,
        "models": list(models),
        "answers": list(answers),
        "outcome": outcome,
        "winner": winner,
        "settings": dict(settings or {}),
    }
    path = ws.root / ARENA_DIR / VOTES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:  # one write per line: safe to share
        handle.write(json.dumps(vote, ensure_ascii=False) + "\n")
    return vote


def read_votes(ws: Workspace) -> list[dict]:
    """Every arena vote, oldest first.

    Each is a dict with
        prompt (str), system (str), models (list[str]), answers (list[str], same order),
        outcome ("win" | "tie" | "skip"), winner (a model name for "win", else None),
        time (ISO 8601, UTC), settings (dict), id (str).
    A preference pair for DPO is (prompt, answers[models.index(winner)], another answer).
    Lines that cannot be read are skipped.
    """
    path = ws.root / ARENA_DIR / VOTES_FILE
    if not path.is_file():
        return []
    votes = []
    for line in path.read_text("utf-8").splitlines():
        try:
            vote = json.loads(line)
        except ValueError:
            continue
        if isinstance(vote, dict) and vote.get("outcome") in OUTCOMES and vote.get("models"):
            votes.append(vote)
    return votes


def arena_table(votes: list[dict]) -> list[dict]:
    """Per model: battles, wins, losses, ties and win rate (skips do not count), best first."""
    rows: dict[str, dict[str, Any]] = {}
    for vote in votes:
        if vote["outcome"] == "skip":
            continue
        for model in vote["models"]:
            row = rows.setdefault(
                model, {"model": model, "battles": 0, "wins": 0, "losses": 0, "ties": 0}
            )
            row["battles"] += 1
            if vote["outcome"] == "tie":
                row["ties"] += 1
            elif vote["winner"] == model:
                row["wins"] += 1
            else:
                row["losses"] += 1
    for row in rows.values():
        row["win_rate"] = round((row["wins"] + 0.5 * row["ties"]) / row["battles"], 3)
    return sorted(rows.values(), key=lambda r: (-r["win_rate"], -r["battles"], r["model"]))
