"""UI strings: every key has English and Chinese text, the pages use only keys that exist, and
both languages take the same placeholders."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from workbench.charts import JOB_STATUSES
from workbench.hardware import GpuInfo, HardwareInfo
from workbench.i18n import LANGUAGES, hardware_summary, normalize_lang, strings, t

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_FILES = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "pages").glob("*.py"))]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def literal_keys(path: Path) -> set[str]:
    """The first argument of every `t("...")` call with a literal key."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "t"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keys.add(node.args[0].value)
    return keys


def test_every_key_has_text_in_every_language():
    for key, entry in strings().items():
        assert isinstance(entry, dict), key
        assert set(entry) == set(LANGUAGES), f"{key}: has {sorted(entry)}"
        for lang, text in entry.items():
            assert isinstance(text, str) and text.strip(), f"{key}.{lang} is empty or not text"


def test_placeholders_match_between_languages():
    for key, entry in strings().items():
        assert placeholders(entry["en"]) == placeholders(entry["zh"]), key


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_every_key_the_ui_uses_exists(path):
    used = literal_keys(path)
    assert used, f"{path.name} shows no translated text"
    missing = used - set(strings())
    assert not missing, f"{path.name} uses unknown UI strings {sorted(missing)}"


def test_every_job_status_has_a_label():
    for status in JOB_STATUSES:
        assert t(f"status.{status}", "zh")


def test_lookup_fills_placeholders_and_refuses_unknown_keys():
    assert t("home.cpu_only", "zh", cores=2) == "仅 CPU，2 核"
    assert t("nav.jobs", "en") == "Jobs"
    with pytest.raises(KeyError):
        t("no.such.key", "en")
    with pytest.raises(KeyError):
        t("nav.jobs", "fr")


@pytest.mark.parametrize(
    ("raw", "lang"),
    [
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("ZH_tw", "zh"),
        (["en", "zh"], "zh"),
        ("en", "en"),
        ("fr", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_language_from_the_url(raw, lang):
    assert normalize_lang(raw) == lang


def test_hardware_summary_in_both_languages():
    cpu = HardwareInfo(
        cpu_model="EPYC", cpu_cores=2, ram_total_gb=23.6, ram_available_gb=20.0, cpu_bf16=True
    )
    assert hardware_summary(cpu, "en") == "CPU: 2 cores, 24 GB RAM, bf16 (no GPU)"
    assert hardware_summary(cpu, "zh") == "CPU：2 核，24 GB 内存，支持 bf16（无 GPU）"
    gpu = HardwareInfo(
        cpu_model="EPYC",
        cpu_cores=16,
        ram_total_gb=128,
        ram_available_gb=100,
        cpu_bf16=False,
        gpus=[GpuInfo(0, "NVIDIA H100", 79.2, 78.0, "9.0", True)],
    )
    assert hardware_summary(gpu, "zh") == "NVIDIA H100, 79 GB"


def test_feature_files_merge_and_a_key_defined_twice_is_refused(tmp_path, monkeypatch):
    import workbench.i18n as i18n

    base = tmp_path / "i18n.yaml"
    base.write_text("a.key: {en: A, zh: 甲}\n", "utf-8")
    (tmp_path / "i18n").mkdir()
    (tmp_path / "i18n" / "feature.yaml").write_text("b.key: {en: B, zh: 乙}\n", "utf-8")
    monkeypatch.setattr(i18n, "STRINGS_FILE", base)
    monkeypatch.setattr(i18n, "STRINGS_DIR", tmp_path / "i18n")
    i18n.strings.cache_clear()
    try:
        assert i18n.t("b.key", "zh") == "乙" and i18n.t("a.key", "en") == "A"
        (tmp_path / "i18n" / "other.yaml").write_text("a.key: {en: X, zh: X}\n", "utf-8")
        i18n.strings.cache_clear()
        with pytest.raises(ValueError, match="a.key.*i18n.yaml and other.yaml"):
            i18n.strings()
    finally:
        i18n.strings.cache_clear()
