"""Self-cognition data: teach a small model its own name and who made it.

The classic first fine-tuning exercise. Question and answer templates live in
`assets/data/self_cognition.yaml`, grouped by intent (identity, creator, other_model, human,
capabilities, greeting), and a question is only paired with answers of its own intent, so "who made
you?" is always answered with the author and "are you ChatGPT?" always with a no.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import yaml

from workbench.errors import InvalidInput

SELF_COGNITION_FILE = (
    Path(__file__).resolve().parents[2] / "assets" / "data" / "self_cognition.yaml"
)
LANGUAGES = ("en", "zh")
MAX_FIELD_LENGTH = 64
# In this intent each question names another model ("Are you Qwen?"); one that names the model
# being trained or its author would teach a wrong "no", so it is left out.
OTHER_MODEL_INTENT = "other_model"

Pair = tuple[str, str]


@functools.cache
def load_templates() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The templates, read once: {language: {intent: {"questions": [...], "answers": [...]}}}."""
    return yaml.safe_load(SELF_COGNITION_FILE.read_text(encoding="utf-8"))


def _checked(field: str, value: object) -> str:
    """`value` stripped, or InvalidInput naming `field` when it cannot go into a template."""
    example = {"name": "Workbench Assistant", "author": "the Workbench team"}[field]
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        what = f"The {field} is empty."
    elif len(text) > MAX_FIELD_LENGTH:
        what = (
            f"The {field} is {len(text)} characters long; at most {MAX_FIELD_LENGTH} are allowed."
        )
    elif any(ch in text for ch in "{}\n\r"):
        what = f"The {field} {text!r} contains a brace or a line break."
    else:
        return text
    raise InvalidInput(what, where=field, fix=f"Give a short one-line {field}, e.g. {example!r}.")


def _names_target(question: str, name: str, author: str) -> bool:
    lowered = question.casefold()
    return name.casefold() in lowered or author.casefold() in lowered


def generate_self_cognition(
    name: str,
    author: str,
    *,
    languages: tuple[str, ...] = ("en", "zh"),
    count: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Question/answer samples in which the assistant says it is `name`, made by `author`.

    Args:
        name: what the model calls itself, e.g. "小书生".
        author: who made it, e.g. "the InternLM camp".
        languages: any of "en" and "zh".
        count: how many samples; by default one per question template (over 100 for both
            languages). A count beyond that adds the other answers of each question, and only
            repeats a pair once every pair of the chosen languages has been used.
        seed: the same seed gives the same samples in the same order.

    Returns:
        `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}` dicts.

    Raises:
        InvalidInput: empty, over-long or multi-line name or author, unknown language, count < 1.
    """
    name, author = _checked("name", name), _checked("author", author)
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise InvalidInput(
            f"Unknown language(s) {unknown}." if unknown else "No language was chosen.",
            where="languages",
            fix=f"Choose among {', '.join(LANGUAGES)}.",
        )
    if count is not None and count < 1:
        raise InvalidInput(f"count is {count}; it must be at least 1.", where="count")

    templates = load_templates()
    rng = random.Random(seed)
    first: list[Pair] = []  # every question once, each with one of its answers
    rest: list[Pair] = []  # every question with each of its other answers
    for lang in dict.fromkeys(languages):
        for intent, group in templates[lang].items():
            questions = group["questions"]
            if intent == OTHER_MODEL_INTENT:
                questions = [q for q in questions if not _names_target(q, name, author)]
            for question in questions:
                answers = rng.sample(group["answers"], len(group["answers"]))
                first.append((question, answers[0]))
                rest.extend((question, answer) for answer in answers[1:])
    rng.shuffle(first)
    rng.shuffle(rest)
    pool = first + rest
    chosen = first if count is None else [pool[i % len(pool)] for i in range(count)]
    rng.shuffle(chosen)

    def fill(template: str) -> str:
        return template.replace("{name}", name).replace("{author}", author)

    return [
        {
            "messages": [
                {"role": "user", "content": fill(question)},
                {"role": "assistant", "content": fill(answer)},
            ]
        }
        for question, answer in chosen
    ]


HELD_OUT_FILE = SELF_COGNITION_FILE.with_name("self_cognition_heldout.yaml")


def held_out_questions(languages: tuple[str, ...] = LANGUAGES) -> list[tuple[str, str]]:
    """Identity questions that the generator never uses, as (language, question) pairs.

    A model tuned on the generated set that names itself in answer to these has learned who it
    is, not just the training questions.
    """
    questions = yaml.safe_load(HELD_OUT_FILE.read_text(encoding="utf-8"))
    return [(lang, q) for lang in languages for q in questions[lang]]
