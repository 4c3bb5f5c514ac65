"""Bundled tasks and suites, written or generated for this project (files in assets/eval/).

Tasks (English and Chinese each):
    knowledge-en/zh     multiple choice, 50 hand-written general-knowledge questions each
    reasoning-en/zh     multiple choice, 24 generated (sequences, days, ordering, largest number)
    arithmetic-en/zh    generation, 50 generated word problems, numeric match
    instructions-en/zh  generation, 16 instruction-following prompts with checks
    identity-en/zh      identity, the held-out self-cognition questions (never trained on)
    heldout-en/zh       bits per byte on held-out text (assets/eval/heldout/, when present)
    judge-en/zh         pairwise LLM-as-judge, 10 open questions
    arena               win rates from the chat page's votes (when the chat store has any)

Suites are named groups of tasks (SUITES); a task list may mix suites, task names and task files.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from workbench.agent.eval_kind import AGENT_TASKS, agent_task
from workbench.errors import InvalidInput, NotFound
from workbench.evaluate.custom import load_task_file, looks_like_task_file
from workbench.evaluate.generated import INSTRUCTION
from workbench.evaluate.preference import PREFIX as PREFS_PREFIX
from workbench.evaluate.preference import preference_task
from workbench.evaluate.tasks import Task, check_task

EVAL_DIR = Path(__file__).resolve().parents[2] / "assets" / "eval"
HELDOUT_DIR = EVAL_DIR / "heldout"
LANGS = ("en", "zh")

# name -> (file stem, kind, capability, extra Task fields)
FILE_TASKS: dict[str, tuple[str, str, str, dict]] = {}
for _lang in LANGS:
    FILE_TASKS[f"knowledge-{_lang}"] = ("knowledge", "multiple_choice", "knowledge", {})
    FILE_TASKS[f"reasoning-{_lang}"] = ("reasoning", "multiple_choice", "reasoning", {})
    FILE_TASKS[f"arithmetic-{_lang}"] = (
        "arithmetic",
        "generation",
        "math",
        {"metric": "numeric", "template": INSTRUCTION[_lang], "max_new_tokens": 160},
    )
    FILE_TASKS[f"instructions-{_lang}"] = (
        "instructions",
        "generation",
        "instructions",
        {"metric": "instructions", "max_new_tokens": 160},
    )
    FILE_TASKS[f"judge-{_lang}"] = ("judge", "judge", "preference", {"max_new_tokens": 160})

DESCRIPTIONS = {
    "knowledge": "General knowledge (science, geography, culture, computing), written for Workbench.",
    "reasoning": "Generated reasoning: number sequences, weekdays, ordering, the largest number.",
    "arithmetic": "Generated arithmetic word problems; every answer checked twice.",
    "instructions": "Follow formatting instructions (case, length, lists, JSON, language...).",
    "judge": "Open questions; a judge model compares the answer with the baseline's.",
    "identity": "Held-out self-cognition questions: does the model give its new name?",
    "heldout": "Held-out text: bits per byte (lower is better).",
    "arena": "Win rates from the votes people cast on the chat page.",
}  # fmt: skip

SUITES: dict[str, list[str]] = {
    "quick": ["knowledge-en", "reasoning-en", "arithmetic-en"],
    "core": [f"{t}-{lang}" for t in ("knowledge", "reasoning", "arithmetic", "instructions") for lang in LANGS],  # noqa: E501
    "choice": [f"{t}-{lang}" for t in ("knowledge", "reasoning") for lang in LANGS],
    "en": [f"{t}-en" for t in ("knowledge", "reasoning", "arithmetic", "instructions")],
    "zh": [f"{t}-zh" for t in ("knowledge", "reasoning", "arithmetic", "instructions")],
    "identity": ["identity-en", "identity-zh"],
    "heldout": ["heldout-en", "heldout-zh"],
    "agent": ["agent-plain", "agent-tools"],
}  # fmt: skip


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _identity_task(lang: str) -> Task:
    from workbench.data.self_cognition import held_out_questions

    samples = [
        {"id": f"identity-{lang}-{i:02d}", "question": q}
        for i, (_, q) in enumerate(held_out_questions((lang,)), 1)
    ]
    return Task(
        name=f"identity-{lang}",
        kind="identity",
        samples=samples,
        language=lang,
        capability="identity",
        max_new_tokens=64,
        description=DESCRIPTIONS["identity"],
        source="assets/data/self_cognition_heldout.yaml",
    )


def chunk_text(text: str, size: int = 1200) -> list[str]:
    """Passages of at most about `size` characters: documents (separated by a line "---") cut at
    paragraph ends, so each passage fits a small model's context and reads as whole text."""
    chunks: list[str] = []
    for document in re.split(r"\n\s*-{3,}\s*\n", "\n" + text + "\n"):
        current = ""
        for paragraph in (p.strip() for p in document.split("\n\n")):
            if not paragraph:
                continue
            if current and len(current) + len(paragraph) + 2 > size:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph
            while len(current) > size:  # one very long paragraph
                chunks.append(current[:size])
                current = current[size:]
        if current:
            chunks.append(current)
    return chunks


def _heldout_samples(lang: str) -> list[dict]:
    """Passages of the held-out text files for `lang` (*.txt, or *.jsonl rows with `text`)."""
    samples: list[dict] = []
    if not HELDOUT_DIR.is_dir():
        return samples
    for path in sorted(HELDOUT_DIR.iterdir()):
        if lang not in path.stem.lower().replace("-", "_").split("_"):
            continue
        if path.suffix == ".txt":
            texts = [path.read_text("utf-8")]
        elif path.suffix == ".jsonl":
            texts = [str(r.get("text", "")) for r in _read_jsonl(path) if r.get("text")]
        else:
            continue
        passages = [chunk for text in texts for chunk in chunk_text(text)]
        samples += [{"id": f"{path.stem}-{i:03d}", "text": c} for i, c in enumerate(passages, 1)]
    return samples


def _heldout_task(lang: str) -> Task:
    samples = _heldout_samples(lang)
    if not samples:
        raise NotFound(
            f"There is no held-out text for {lang!r} yet.",
            where=str(HELDOUT_DIR),
            fix="Add *_" + lang + ".txt files there, or pick another task.",
        )
    return Task(
        name=f"heldout-{lang}",
        kind="perplexity",
        samples=samples,
        language=lang,
        capability="language",
        description=DESCRIPTIONS["heldout"],
        source=str(HELDOUT_DIR),
    )


def duels(vote: dict) -> list[dict]:
    """A chat-page vote as pairwise duels: {"model_a", "model_b", "winner", "prompt"}.

    A vote names its models (two or more), an outcome ("win", "tie" or "skip") and, for a win,
    the winning model: the winner beat each other model; a tie ties every pair; a skip counts for
    nothing.
    """
    models = [str(m) for m in vote.get("models") or []]
    outcome = vote.get("outcome")
    if outcome not in ("win", "tie") or len(models) < 2:
        return []
    winner = vote.get("winner") if outcome == "win" else None
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    if winner in models:
        pairs = [(a, b) for a, b in pairs if winner in (a, b)]
    return [
        {"model_a": a, "model_b": b, "winner": winner or "tie", "prompt": vote.get("prompt", "")}
        for a, b in pairs
    ]


def read_arena_votes(ws: object) -> list[dict] | None:
    """The chat page's votes as duels with ids, or None when there is no chat store."""
    try:
        store = importlib.import_module("workbench.chat_store")
    except ImportError:
        return None
    reader = getattr(store, "read_votes", None)
    if reader is None:
        return None
    out = []
    for i, vote in enumerate(reader(ws) or [], 1):
        for j, duel in enumerate(duels(vote), 1):
            out.append({"id": f"{vote.get('id') or i}-{j}", **duel})
    return out


def _arena_task(ws: object) -> Task:
    votes = read_arena_votes(ws) if ws is not None else None
    return Task(
        name="arena",
        kind="arena",
        samples=votes or [],
        capability="preference",
        description=DESCRIPTIONS["arena"]
        + ("" if votes is not None else " (no chat store in this installation: no votes)"),
        source="chat votes",
    )


def bundled_task(name: str, ws: object = None) -> Task:
    """A bundled task by name. Raises NotFound with the known names."""
    if name in FILE_TASKS:
        stem, kind, capability, extra = FILE_TASKS[name]
        lang = name.rsplit("-", 1)[1]
        path = EVAL_DIR / f"{stem}_{lang}.jsonl"
        return check_task(
            Task(
                name=name,
                kind=kind,
                samples=_read_jsonl(path),
                language=lang,
                capability=capability,
                description=DESCRIPTIONS[stem],
                source=str(path.relative_to(EVAL_DIR.parents[1])),
                **extra,
            )
        )
    if name in ("identity-en", "identity-zh"):
        return _identity_task(name[-2:])
    if name in ("heldout-en", "heldout-zh"):
        return _heldout_task(name[-2:])
    if name == "arena":
        return _arena_task(ws)
    if name in AGENT_TASKS:
        return check_task(agent_task(name))
    raise NotFound(
        f"No task called {name!r}.",
        where="tasks",
        fix=f"Bundled tasks: {', '.join(task_names())}; suites: {', '.join(SUITES)}; "
        "or give a .jsonl/.csv/.yaml task file.",
    )


def task_names() -> list[str]:
    """Every bundled task name (held-out text only where its files exist)."""
    names = list(FILE_TASKS) + ["identity-en", "identity-zh"]
    names += [f"heldout-{lang}" for lang in LANGS if _heldout_samples(lang)]
    return sorted(names) + ["arena", *AGENT_TASKS]


def expand(specs: list[str]) -> list[str]:
    """Task specs with suite names replaced by their tasks, duplicates dropped, order kept."""
    out: list[str] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        out.extend(SUITES.get(spec, [spec]))
    return list(dict.fromkeys(out))


def resolve_tasks(specs: list[str], ws: object = None) -> list[Task]:
    """Tasks for names, suites and task files. Raises WorkbenchError naming the bad one."""
    names = expand(specs)
    if not names:
        raise InvalidInput(
            "No task was given.",
            where="tasks",
            fix=f"Name tasks or suites, e.g. {', '.join(SUITES['quick'])}, or a task file.",
        )
    tasks = []
    for spec in names:
        if spec.startswith(PREFS_PREFIX):  # the held-out pairs of a preference dataset
            tasks.append(preference_task(spec, ws))
        elif (
            spec in FILE_TASKS or spec in task_names() or spec.startswith(("identity-", "heldout-"))
        ):
            tasks.append(bundled_task(spec, ws))
        elif looks_like_task_file(spec) or Path(spec).expanduser().is_file():
            tasks.append(load_task_file(spec))
        else:
            tasks.append(bundled_task(spec, ws))  # raises NotFound with the known names
    taken: dict[str, str] = {}
    for task in tasks:
        if task.name in taken:
            raise InvalidInput(
                f"Two tasks are called {task.name!r}.",
                where=f"{taken[task.name]} and {task.source}",
                fix="Rename one (the `name` field of a YAML task file).",
            )
        taken[task.name] = task.source
    return tasks
