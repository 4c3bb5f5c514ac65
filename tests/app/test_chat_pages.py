"""The Chat, Arena and Deploy pages as a user meets them: ask a question and get the model's
answer streamed and saved, regenerate it, an unreachable endpoint explained; two models side by
side and a vote that lands in the store; start a server, see it live with its numbers and
snippets, stop it — in English and 中文.

Same setup as test_pages.py: a fresh workspace per test, the job queue held
(WORKBENCH_CPU_SLOTS=0), app.py run on every rerun. Answers come from the tiny model for real.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from openai import OpenAI
from streamlit.testing.v1 import AppTest

from workbench.chat_store import list_chats, read_votes
from workbench.engine import shared_engine
from workbench.generate import GenerationSettings
from workbench.i18n import t
from workbench.jobs import get_job, job_recipe, list_jobs, mark_running
from workbench.progress import EventLog
from workbench.server import ServerStats, build_app, serve_app

from .apptest import button, open_app, rerun, texts

CHAT, ARENA, DEPLOY = "pages/chat.py", "pages/arena.py", "pages/deploy.py"


@pytest.fixture
def two_models(workspace, tiny_artifact, tiny_model_dir) -> list[str]:
    with workspace.create("model", "tiny-b", variant="base", source="test") as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    return ["tiny", "tiny-b"]


def greedy_answer(ws, model: str, prompt: str, max_new: int = 24) -> str:
    settings = GenerationSettings(max_new_tokens=max_new, temperature=0.0)
    return shared_engine(model, ws).chat([{"role": "user", "content": prompt}], settings).text()


def chat_page(lang: str = "en") -> AppTest:
    at = open_app(lang, CHAT)
    at.selectbox(key="chat_model").set_value("tiny")
    at.number_input(key="chat_max").set_value(24)
    at.slider(key="chat_temp").set_value(0.0)
    return rerun(at)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_question_gets_the_models_answer_and_is_saved(workspace, tiny_artifact, lang):
    at = chat_page(lang)
    assert at.title[0].value == t("chat.title", lang)
    at.chat_input[0].set_value("What is the capital of France?")
    rerun(at)
    expected = greedy_answer(workspace, "tiny", "What is the capital of France?")
    (chat,) = list_chats(workspace)
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    assert chat.messages[1]["content"] == expected
    assert chat.model == "tiny" and chat.settings["max_new_tokens"] == 24
    assert chat.title == "What is the capital of France?"
    assert expected.strip()[:20] in texts(at)
    finish = t(f"chat.finish_{chat.messages[1]['stats']['finish']}", lang)
    assert finish in texts(at)  # the stats line under the answer
    assert not [b for b in at.button if b.key == "chat_stop_now"]  # nothing left to stop
    rerun(at)  # the next run picks the saved chat and shows it from disk
    assert at.selectbox(key="chat_id").value == chat.id
    assert [b for b in at.button if b.key == "chat_regenerate"]


def test_regenerate_replaces_the_last_answer(workspace, tiny_artifact):
    at = chat_page()
    at.chat_input[0].set_value("Hello there")
    rerun(at)
    rerun(at)
    at.number_input(key="chat_max").set_value(5)
    rerun(at)
    button(at, "chat_regenerate").click()
    rerun(at)
    (chat,) = list_chats(workspace)
    assert len(chat.messages) == 2
    assert chat.messages[1]["content"] == greedy_answer(workspace, "tiny", "Hello there", 5)
    assert chat.messages[1]["stats"]["tokens"] <= 5


def test_an_unreachable_endpoint_is_explained(workspace, tiny_artifact):
    at = open_app("en", CHAT)
    at.selectbox(key="chat_model").set_value("…")
    rerun(at)
    at.text_input(key="chat_model_url").set_value("openai:http://127.0.0.1:9/v1#m")
    rerun(at)
    at.chat_input[0].set_value("hi")
    rerun(at)
    assert "Cannot reach the server" in at.error[0].value
    (chat,) = list_chats(workspace)
    assert [m["role"] for m in chat.messages] == ["user"]  # no empty answer saved


def test_the_arena_streams_both_and_stores_the_vote(workspace, two_models):
    at = open_app("zh", ARENA)
    at.multiselect(key="arena_models").set_value(two_models)
    at.slider(key="arena_temp").set_value(0.0)
    at.number_input(key="arena_max").set_value(12)
    at.text_area(key="arena_prompt").set_value("你好")
    rerun(at)
    button(at, "arena_ask").click()
    rerun(at)
    body = texts(at)
    assert t("chat.arena_answer", "zh", letter="A") in body
    assert "tiny-b" not in body  # names stay hidden until the vote
    button(at, "arena_vote_B").click()
    rerun(at)
    (vote,) = read_votes(workspace)
    assert vote["models"] == two_models and vote["outcome"] == "win" and vote["winner"] == "tiny-b"
    assert vote["prompt"] == "你好"
    assert vote["answers"][0] == greedy_answer(workspace, "tiny", "你好", 12)
    assert "B = tiny-b" in at.success[0].value
    board = at.dataframe[0].value
    assert list(board["model"]) == ["tiny-b", "tiny"] and list(board["wins"]) == [1, 0]


def test_deploy_starts_a_server_job_and_shows_its_command(workspace, tiny_artifact):
    at = open_app("en", DEPLOY)
    assert t("deploy.none", "en") in texts(at)
    at.selectbox(key="deploy_model").set_value("tiny")
    at.number_input(key="deploy_port").set_value(8123)
    at.checkbox(key="deploy_gradio").set_value(True)
    rerun(at)
    assert "workbench serve --model tiny --port 8123 --gradio" in texts(at)
    at.selectbox(key="deploy_host").set_value("0.0.0.0")
    rerun(at)
    assert t("deploy.open_warning", "en") in at.warning[0].value
    button(at, "deploy_start").click()
    rerun(at)
    (job,) = list_jobs(workspace)
    recipe = job_recipe(job)
    assert (job.kind, recipe.model, recipe.port, recipe.gradio) == ("serve", "tiny", 8123, True)
    assert t("deploy.started", "en", id=job.id) in texts(at)
    at.selectbox(key="deploy_host").set_value("127.0.0.1")
    rerun(at)
    assert "already used by server job" in at.error[0].value  # the same port twice
    button(at, f"deploy_stop_{job.id}").click()
    rerun(at)
    assert get_job(workspace, job.id).status == "cancelled"


def test_a_running_server_shows_its_endpoint_numbers_and_snippets(workspace, tiny_artifact):
    """A real server runs in this process in the job's place and writes what a worker writes."""
    from workbench.jobs import submit
    from workbench.recipes import ServeRecipe

    recipe = ServeRecipe(model="tiny", port=0, api_key="s3cret")
    job = submit(workspace, recipe)
    mark_running(workspace, job.id)  # this process plays the worker
    engine = shared_engine("tiny", workspace)
    stats, stop = ServerStats(), threading.Event()
    app = build_app(engine, "tiny", api_key="s3cret", stats=stats)
    events = EventLog(job.run_dir / "events.jsonl")
    thread = threading.Thread(
        target=serve_app,
        args=(app, recipe, stats, events, stop.is_set, job.run_dir),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (job.run_dir / "endpoint.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = json.loads((job.run_dir / "endpoint.json").read_text())["url"]
        OpenAI(base_url=url, api_key="s3cret").completions.create(
            model="tiny", prompt="Hi", max_tokens=4
        )
        time.sleep(2.5)  # the next progress event carries the request
        at = open_app("en", DEPLOY)
        body = texts(at)
        assert url in body
        assert f"**{t('deploy.requests', 'en')}**  \n1" in body
        assert f"curl -N {url}/chat/completions" in body
        assert "Authorization: Bearer s3cret" in body
        assert f'OpenAI(base_url="{url}", api_key="s3cret")' in body
        assert f"openai:{url}#tiny" in body
        at.switch_page(CHAT).run()
        assert f"openai:{url}#tiny" in at.selectbox(key="chat_model").options
    finally:
        stop.set()
        thread.join(timeout=30)
