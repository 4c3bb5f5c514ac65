"""Classroom mode: sign-in, one workspace per user, the shared queue with its per-user limit, the
read-only catalogue, the instructor view — and every way one student might reach another's work
(by name, by path, by job id), each refused.

Jobs run real workers (the `generate` runner on a tiny random Llama in the class catalogue).
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.unit.test_jobs import generate, wait_until
from workbench import classroom, jobs
from workbench.errors import Conflict, Forbidden, InvalidInput, NotFound
from workbench.models import resolve_model
from workbench.recipes import ImportDataRecipe
from workbench.workspace import Workspace

PASSWORD = "correct horse"


@pytest.fixture
def class_root(tmp_path, monkeypatch, tiny_model_dir):
    """A password-mode class with alice and bob (students), ines (instructor), and the tiny
    model in its catalogue. Jobs stay queued unless a test opens a slot."""
    for variable in ("WORKBENCH_CLASS_ROOT", "WORKBENCH_USER", "WORKBENCH_DEMO"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")
    monkeypatch.setenv("WORKBENCH_GPU_SLOTS", "0")
    root = tmp_path / "class"
    classroom.init_class(root, max_jobs_per_user=2)
    catalogue = Workspace(root / "catalogue")
    with catalogue.create("model", "tiny", variant="base", source="test") as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    for name in ("alice", "bob"):
        classroom.add_user(root, name, PASSWORD)
    classroom.add_user(root, "ines", PASSWORD, role="instructor")
    yield root
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "0")
    for job in jobs.list_jobs(Workspace.for_user(root, "ines"), everyone=True, limit=None):
        if job.active:
            jobs.cancel(Workspace.for_user(root, job.owner), job.id, grace_s=2)


def user_ws(root, name: str) -> Workspace:
    return classroom.user_workspace(root, classroom.sign_in(root, name, PASSWORD))


def add_dataset(ws: Workspace, name: str) -> str:
    with ws.create("dataset", name, source="test") as staging:
        (staging / "train.jsonl").write_text(json.dumps({"text": "secret notes"}) + "\n")
    return str(ws.path_of(name) / "train.jsonl")


# --- signing in ---------------------------------------------------------------------------------


def test_password_sign_in_answers_a_wrong_name_and_a_wrong_password_alike(class_root):
    assert classroom.sign_in(class_root, "alice", PASSWORD).role == "student"
    assert classroom.sign_in(class_root, "ines", PASSWORD).instructor
    messages = set()
    for name, password in (("alice", "wrong password"), ("mallory", PASSWORD)):
        with pytest.raises(Forbidden) as caught:
            classroom.sign_in(class_root, name, password)
        messages.add(caught.value.what)
    assert messages == {classroom.SIGN_IN_FAILED}


def test_passwords_are_stored_hashed_and_the_file_is_private(class_root):
    text = (class_root / classroom.SETTINGS_FILE).read_text()
    assert PASSWORD not in text and "alice" in text
    assert (class_root / classroom.SETTINGS_FILE).stat().st_mode & 0o077 == 0


def test_token_mode_signs_up_new_names_and_then_holds_them_to_their_password(tmp_path):
    root = tmp_path / "tokenclass"
    classroom.init_class(root, sign_in="token", token="class-2026")
    with pytest.raises(Forbidden, match="class token"):
        classroom.sign_in(root, "carol", PASSWORD, token="guess")
    carol = classroom.sign_in(root, "carol", PASSWORD, token="class-2026")
    assert carol.name == "carol" and (root / "users" / "carol").is_dir()
    with pytest.raises(Forbidden, match="name or the password"):  # nobody else can take the name
        classroom.sign_in(root, "carol", "another password", token="class-2026")
    assert classroom.sign_in(root, "carol", PASSWORD, token="class-2026").name == "carol"


def test_bad_class_settings_and_users_are_refused_with_a_reason(class_root, tmp_path):
    with pytest.raises(InvalidInput, match="token"):
        classroom.init_class(tmp_path / "c2", sign_in="token", token="")
    with pytest.raises(InvalidInput, match="sign-in mode"):
        classroom.init_class(tmp_path / "c3", sign_in="sso")
    with pytest.raises(Conflict, match="class already"):
        classroom.init_class(class_root)
    with pytest.raises(Conflict, match="already"):
        classroom.add_user(class_root, "alice", PASSWORD)
    with pytest.raises(InvalidInput, match="at least"):
        classroom.add_user(class_root, "dan", "123")
    with pytest.raises(InvalidInput, match="user name"):
        classroom.add_user(class_root, "../bob", PASSWORD)


# --- one workspace each, one catalogue ----------------------------------------------------------


def test_each_user_has_a_workspace_and_reads_the_catalogue_but_cannot_change_it(class_root):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    assert alice.root != bob.root and alice.db_path == bob.db_path == class_root / "jobs.db"
    assert [m.name for m in alice.list(kind="model")] == ["tiny"]
    assert resolve_model("tiny", alice).path.is_relative_to(class_root / "catalogue")
    with pytest.raises(Forbidden, match="catalogue"):
        alice.delete("tiny")
    alice.update_metrics("tiny", {"score": 1.0})  # scores of a lent model stay with the user
    assert "score" not in Workspace(class_root / "catalogue").get("tiny").metrics
    with pytest.raises(Conflict):  # a catalogue name cannot be shadowed by a user's artifact
        alice.refuse_taken("tiny")


def test_another_users_artifact_is_unknown_by_name_and_refused_by_path(class_root):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    secret_file = add_dataset(alice, "alice-notes")
    with pytest.raises(NotFound):
        bob.get("alice-notes")
    assert "alice-notes" not in [m.name for m in bob.list()]
    with pytest.raises(Forbidden, match="own workspace"):  # a job reading her file by path
        jobs.submit(bob, ImportDataRecipe(source=secret_file, name="stolen"))
    with pytest.raises(Forbidden):
        jobs.submit(bob, ImportDataRecipe(source="/etc/passwd", name="passwd"))
    with pytest.raises(Forbidden):  # a model folder by path, through a symlink in his own space
        (bob.root / "link").symlink_to(alice.root)
        resolve_model(str(bob.root / "link" / "models"), bob)
    assert jobs.list_jobs(bob) == []  # nothing was queued by the refused attempts
    job = jobs.submit(alice, ImportDataRecipe(source=secret_file, name="copy"))  # her own: fine
    assert job.owner == "alice" and job.run_dir.is_relative_to(alice.root)


def test_another_users_job_is_unknown_by_id_for_every_action(class_root):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    job = jobs.submit(alice, generate(prompts=["hi"], max_new_tokens=2))
    assert [j.id for j in jobs.list_jobs(alice)] == [job.id]
    assert jobs.list_jobs(bob) == []
    for action in (jobs.get_job, jobs.cancel, jobs.resume):
        with pytest.raises(NotFound, match="No job"):
            action(bob, job.id)
    assert jobs.get_job(alice, job.id).status == "queued"  # untouched by bob's attempts


def test_the_instructor_sees_everyone_and_students_do_not(class_root):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    ines = classroom.sign_in(class_root, "ines", PASSWORD)
    jobs.submit(alice, generate(prompts=["a"], max_new_tokens=2))
    jobs.submit(bob, generate(prompts=["b"], max_new_tokens=2))
    with alice.create("eval", "alice-eval", parents=["tiny"], metrics={"accuracy": 0.5}):
        pass
    assert {j.owner for j in classroom.class_jobs(class_root, ines)} == {"alice", "bob"}
    rows = {row["user"]: row for row in classroom.overview(class_root)}
    assert rows["alice"]["queued"] == 1 and rows["alice"]["evals"] == 1
    assert rows["bob"]["evals"] == 0 and rows["ines"]["role"] == "instructor"
    results = classroom.class_results(class_root, ines)
    assert results == [
        {
            "user": "alice",
            "eval": "alice-eval",
            "of": "tiny",
            "created": results[0]["created"],
            "accuracy": 0.5,
        }
    ]
    student = classroom.sign_in(class_root, "alice", PASSWORD)
    for view in (classroom.class_jobs, classroom.class_results):
        with pytest.raises(Forbidden, match="instructor"):
            view(class_root, student)


# --- one queue for the class --------------------------------------------------------------------


def test_a_user_may_have_only_so_many_jobs_at_once(class_root):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    first = jobs.submit(alice, generate(prompts=["1"], max_new_tokens=2))
    jobs.submit(alice, generate(prompts=["2"], max_new_tokens=2))
    with pytest.raises(Forbidden, match="limit here is 2"):
        jobs.submit(alice, generate(prompts=["3"], max_new_tokens=2))
    jobs.submit(bob, generate(prompts=["b"], max_new_tokens=2))  # the limit is per user
    jobs.cancel(alice, first.id)
    jobs.submit(alice, generate(prompts=["3"], max_new_tokens=2))  # room again


def test_the_class_queue_runs_jobs_in_order_each_in_its_owners_workspace(class_root, monkeypatch):
    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    first = jobs.submit(alice, generate(prompts=["Hello"], max_new_tokens=4))
    second = jobs.submit(bob, generate(prompts=["Hi"], max_new_tokens=4))
    monkeypatch.setenv("WORKBENCH_CPU_SLOTS", "1")  # one slot for the whole class
    jobs.dispatch(alice)  # alice's page starts the queue: oldest first, whoever owns it
    assert jobs.get_job(bob, second.id).status == "queued"
    done = jobs.wait(alice, first.id, timeout=120)
    assert done.status == "succeeded", jobs.tail_log(done)
    # alice's finished worker started bob's job: it runs as bob, in bob's workspace
    done = wait_until(
        lambda: (j := jobs.get_job(bob, second.id)).status == "succeeded" and j, "bob"
    )
    assert done.run_dir == bob.root / "runs" / second.id
    assert (done.run_dir / "status.json").is_file() and not (
        alice.root / "runs" / second.id
    ).exists()


def test_the_class_shares_one_engine_per_catalogue_model(class_root, tiny_model_dir):
    from workbench.engine import shared_engine

    alice, bob = user_ws(class_root, "alice"), user_ws(class_root, "bob")
    assert shared_engine("tiny", alice) is shared_engine("tiny", bob)  # one copy in memory
    with alice.create("model", "mine", variant="base", source="test") as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    assert shared_engine("mine", alice) is not shared_engine("tiny", alice)
    with pytest.raises(NotFound):  # bob cannot open alice's model by its name
        shared_engine("mine", bob)
