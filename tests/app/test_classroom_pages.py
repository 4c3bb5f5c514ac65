"""Classroom and demo mode in the app: sign-in first, each user in their own workspace, the class
page for instructors only, sign-out, and the demo limits said on every page."""

from __future__ import annotations

import pytest

from tests.app.apptest import button, open_app, rerun, texts
from workbench import classroom
from workbench.i18n import t
from workbench.jobs import list_jobs, submit
from workbench.recipes import GenerateRecipe
from workbench.workspace import Workspace

PASSWORD = "s3cret-pass"


@pytest.fixture
def class_root(tmp_path, monkeypatch):
    root = tmp_path / "class"
    classroom.init_class(root)
    classroom.add_user(root, "alice", PASSWORD)
    classroom.add_user(root, "bob", PASSWORD)
    classroom.add_user(root, "ines", PASSWORD, role="instructor")
    monkeypatch.setenv("WORKBENCH_HOME", str(root))
    return root


def sign_in(at, name: str, password: str = PASSWORD):
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click()
    return rerun(at)


def test_nothing_but_the_sign_in_page_until_signed_in(class_root):
    at = open_app("en")
    assert t("class.sign_in_title", "en") in texts(at)
    assert str(class_root) not in texts(at)  # no workspace, no jobs, no pages before sign-in
    at = sign_in(at, "alice", "wrong password")
    assert classroom.SIGN_IN_FAILED in texts(at)
    assert t("class.sign_in_title", "en") in texts(at)


def test_a_student_works_in_their_own_workspace_and_sees_only_their_jobs(class_root):
    alice = Workspace.for_user(class_root, "alice")
    bob = Workspace.for_user(class_root, "bob")
    mine = submit(alice, GenerateRecipe(model="default", prompts=["hi"]))
    theirs = submit(bob, GenerateRecipe(model="default", prompts=["hello"]))
    at = sign_in(open_app("en"), "alice")
    shown = texts(at)
    assert "**alice** (student)" in shown and str(alice.root) in shown
    at.switch_page("pages/jobs.py").run()
    table = "\n".join(str(frame.value) for frame in at.dataframe)
    assert mine.id in table and theirs.id not in table
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/classroom.py")  # the class page is not there for a student


def test_the_instructor_sees_everyones_jobs_on_the_class_page(class_root):
    submit(Workspace.for_user(class_root, "alice"), GenerateRecipe(model="default", prompts=["a"]))
    at = sign_in(open_app("zh"), "ines")
    at.switch_page("pages/classroom.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert t("class.title", "zh") in texts(at)
    owners = at.dataframe[1].value[t("class.owner", "zh")].tolist()
    assert owners == ["alice"]


def test_sign_out_forgets_the_user(class_root):
    at = sign_in(open_app("en"), "bob")
    button(at, "sign_out").click()
    at = rerun(at)
    assert t("class.sign_in_title", "en") in texts(at)
    assert "bob" not in texts(at)


def test_demo_mode_says_its_limits_and_refuses_a_job_over_them(workspace, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    at = open_app("en")
    assert "Demo mode: at most 1 job(s) at a time, 30 training steps" in texts(at)
    submit(workspace, GenerateRecipe(model="default", prompts=["one"]))
    from workbench.errors import Forbidden

    with pytest.raises(Forbidden, match="limit here is 1"):
        submit(workspace, GenerateRecipe(model="default", prompts=["two"]))
    with pytest.raises(Forbidden, match="at most 256 tokens"):
        submit(workspace, GenerateRecipe(model="default", prompts=["x"], max_new_tokens=1000))
    monkeypatch.setenv("WORKBENCH_DEMO", "readonly")
    at = rerun(at)
    assert t("demo.read_only", "en") in texts(at)
    with pytest.raises(Forbidden, match="read-only demo"):
        submit(workspace, GenerateRecipe(model="default", prompts=["three"]))
    assert len(list_jobs(workspace)) == 1


def test_a_student_fine_tunes_a_catalogue_model_on_their_own_data(class_root, tiny_model_dir):
    import shutil

    from workbench.data.prepare import save_samples

    catalogue = Workspace(class_root / "catalogue")
    with catalogue.create("model", "tiny", variant="base", source="test") as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    alice = Workspace.for_user(class_root, "alice")
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    ]
    save_samples(alice, "greetings", rows * 8, source="test")
    at = sign_in(open_app("en"), "alice")
    at.switch_page("pages/finetune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "tiny" in at.selectbox(key="ft_model").options  # the catalogue's, lent
    assert at.selectbox(key="ft_data").options == ["greetings"]  # her own
    at.selectbox(key="ft_model").set_value("tiny")
    at = rerun(at)
    assert not at.error, [e.value for e in at.error]  # the fit check found the lent model
    assert at.success and t("ft.fit_title", "en") in texts(at)
    button(at, "ft_start").click()
    at = rerun(at)
    (job,) = list_jobs(alice)
    assert job.owner == "alice" and job.run_dir.is_relative_to(alice.root)
    assert list_jobs(Workspace.for_user(class_root, "bob")) == []
