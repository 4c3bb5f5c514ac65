"""Demo-mode limits: read from the environment, said plainly when they refuse something, and
applied where a user meets them (job queue, uploads, the server's max_tokens)."""

from __future__ import annotations

import pytest

from workbench.data.prepare import save_upload
from workbench.errors import Forbidden, InvalidInput
from workbench.limits import Limits, current_limits
from workbench.recipes import TrainRecipe
from workbench.server import APIError, settings_from


@pytest.fixture(autouse=True)
def no_limits_from_the_shell(monkeypatch):
    for variable in ("WORKBENCH_DEMO", "WORKBENCH_LIMIT_JOBS", "WORKBENCH_LIMIT_STEPS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("WORKBENCH_LIMIT_TOKENS", raising=False)
    monkeypatch.delenv("WORKBENCH_MAX_UPLOAD_MB", raising=False)


def test_no_limits_unless_asked():
    assert current_limits() == Limits()


def test_demo_defaults_and_overrides(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    limits = current_limits()
    assert (limits.max_active_jobs, limits.max_train_steps, limits.max_new_tokens) == (1, 30, 256)
    assert limits.max_upload_mb == 20 and not limits.read_only
    monkeypatch.setenv("WORKBENCH_LIMIT_STEPS", "100")
    assert current_limits().max_train_steps == 100
    monkeypatch.setenv("WORKBENCH_DEMO", "readonly")
    assert current_limits().read_only


@pytest.mark.parametrize(
    ("variable", "value"), [("WORKBENCH_DEMO", "maybe"), ("WORKBENCH_LIMIT_JOBS", "-1")]
)
def test_a_bad_setting_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput, match=variable):
        current_limits()


def test_training_steps_are_capped_with_the_value_to_use(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    limits = current_limits()
    with pytest.raises(Forbidden, match="Set Max steps to 30 or fewer"):
        limits.check_recipe(TrainRecipe(model="default", data="d", out="o", max_steps=0))
    with pytest.raises(Forbidden, match="asks for 31 steps"):
        limits.check_recipe(TrainRecipe(model="default", data="d", out="o", max_steps=31))
    limits.check_recipe(TrainRecipe(model="default", data="d", out="o", max_steps=30))


def test_uploads_over_the_demo_limit_are_refused_and_nothing_is_saved(workspace, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    with pytest.raises(InvalidInput, match="over the 20 MB upload limit"):
        save_upload(workspace, "big.jsonl", b"x" * (21 * 2**20))
    assert not (workspace.root / "uploads").exists() or not any(
        (workspace.root / "uploads").iterdir()
    )
    assert save_upload(workspace, "small.jsonl", b'{"text": "hi"}\n').is_file()


def test_the_server_refuses_more_tokens_than_the_demo_allows(monkeypatch):
    assert settings_from({"max_tokens": 1000}, default_max=512).max_new_tokens == 1000
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    with pytest.raises(APIError, match="at most 256"):
        settings_from({"max_tokens": 1000}, default_max=512)
    assert settings_from({}, default_max=512).max_new_tokens == 256
