"""UI text in English and 中文: every string the app shows comes from assets/i18n.yaml and
the per-feature files in assets/i18n/ (agent.yaml, prefs.yaml, ...).

Each entry of those YAML files is `key: {en: ..., zh: ...}`; a key defined in two files is an
error; `t(key, lang, **fmt)` looks one up and
fills its `{placeholders}`. A missing key is a bug and raises KeyError (no silent fallback), so
tests catch it before a user sees a raw key.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import WorkbenchError

LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT_LANGUAGE = "en"
STRINGS_FILE = Path(__file__).resolve().parents[1] / "assets" / "i18n.yaml"
STRINGS_DIR = STRINGS_FILE.with_suffix("")  # assets/i18n/: one file per feature


def strings_files() -> list[Path]:
    """assets/i18n.yaml first, then assets/i18n/*.yaml in name order."""
    return [STRINGS_FILE, *sorted(STRINGS_DIR.glob("*.yaml"))]


@functools.cache
def strings() -> dict[str, dict[str, str]]:
    """All UI strings, read once: {key: {"en": text, "zh": text}}."""
    merged: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    for path in strings_files():
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must map keys to {{en: ..., zh: ...}} entries.")
        for key, entry in data.items():
            if key in merged:
                raise ValueError(f"UI string {key!r} is defined in {origin[key]} and {path.name}.")
            merged[key] = entry
            origin[key] = path.name
    return merged


def t(key: str, lang: str = DEFAULT_LANGUAGE, **fmt: Any) -> str:
    """The text for `key` in `lang`, with `{name}` placeholders filled from `fmt`.

    Raises:
        KeyError: unknown key, or a language the key has no text for.
    """
    entry = strings().get(key)
    if entry is None:
        raise KeyError(f"No UI string {key!r} in assets/i18n.yaml or assets/i18n/.")
    if lang not in entry:
        raise KeyError(f"UI string {key!r} has no {lang!r} text.")
    text = str(entry[lang])
    return text.format(**fmt) if fmt else text


def normalize_lang(value: Any) -> str:
    """A language code from a URL parameter or a browser locale ('zh-CN' -> 'zh'); 'en' if unknown."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    code = str(value or "").strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else DEFAULT_LANGUAGE


def hardware_summary(hw: Any, lang: str = DEFAULT_LANGUAGE) -> str:
    """One line about the machine (a `HardwareInfo`) for the sidebar, in the user's language."""
    if hw.gpus:
        return hw.summary()  # a GPU's name and memory read the same in both languages
    bf16 = t("sidebar.bf16", lang) if hw.cpu_bf16 else ""
    return t("sidebar.cpu_summary", lang, cores=hw.cpu_cores, ram=hw.ram_total_gb, bf16=bf16)


def error_text(exc: WorkbenchError, lang: str = DEFAULT_LANGUAGE) -> str:
    """A WorkbenchError as Markdown for an error box: what went wrong, where, and what to do."""
    lines = [exc.what]
    if exc.where:
        lines.append(f"**{t('error.where', lang)}** `{exc.where}`")
    if exc.fix:
        lines.append(f"**{t('error.fix', lang)}** {exc.fix}")
    return "  \n".join(lines)
