"""`workbench serve` as a client meets it: a real server process on 127.0.0.1, the official
`openai` client (streaming and not), raw HTTP for the wire format, every error case, concurrent
clients, a client that hangs up, a graceful shutdown, a serve job, and the remote engine.

Most tests share one server of the tiny Llama; the embedded model answers one real question.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

from workbench.engine import open_engine
from workbench.generate import GenerationSettings
from workbench.workspace import Workspace

KEY = "test-key-123"
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def served_workspace(tmp_path_factory, tiny_model_dir) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("serve") / "workspace").ensure()
    with ws.create("model", "tiny", variant="base", source=str(tiny_model_dir)) as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    return ws


def start_server(ws: Workspace, *extra: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(ws.root)}
    args = [sys.executable, "-m", "workbench", "serve", "--model", "tiny", "--port", "0"]
    proc = subprocess.Popen(
        [*args, "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = proc.stdout.readline()  # the server prints its endpoint once it listens
    if not line:
        proc.kill()
        pytest.fail(f"the server did not start: {proc.stderr.read()[-2000:]}")
    return proc, json.loads(line)["url"]


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(served_workspace):
    proc, url = start_server(served_workspace, "--api-key", KEY, "--slots", "4")
    yield url
    stop_server(proc)


@pytest.fixture
def client(server) -> OpenAI:
    return OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=120)


def ask(client: OpenAI, prompt: str, **kwargs):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], **kwargs
    )


def health(server: str) -> dict:
    return httpx.get(server.removesuffix("/v1") + "/health", timeout=10).json()


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    state = health(server)
    assert state["status"] == "ok" and state["model"] == "tiny"
    assert state["engine"]["slots"] == 4


def test_a_chat_answer_is_the_models_greedy_answer(client, served_workspace):
    reply = ask(client, "What is the capital of France?", max_tokens=20)
    text = reply.choices[0].message.content
    engine = open_engine("tiny", served_workspace, slots=1)
    try:
        stream = engine.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            GenerationSettings(max_new_tokens=20),
        )
        assert text == stream.text()
    finally:
        engine.close()
    assert reply.model == "tiny" and reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens == stream.completion_tokens
    assert reply.usage.prompt_tokens == stream.prompt_tokens
    assert reply.usage.total_tokens == stream.prompt_tokens + stream.completion_tokens
    assert reply.choices[0].finish_reason == (
        "length" if stream.completion_tokens == 20 else "stop"
    )


def test_streaming_gives_the_same_text_with_usage(client):
    whole = ask(client, "Fine-tuning adapts", max_tokens=16).choices[0].message.content
    chunks = list(
        ask(
            client,
            "Fine-tuning adapts",
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole
    assert len([p for p in pieces if p]) > 1  # it really came in pieces
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_the_sse_wire_format_ends_with_done(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{server}/chat/completions", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_completions_stop_and_max_tokens(client):
    plain = client.completions.create(model="tiny", prompt="The capital of", max_tokens=12)
    text = plain.choices[0].text
    assert plain.object == "text_completion" and plain.usage.completion_tokens <= 12
    if len(text) > 4:
        stop = text[2:4]
        cut = client.completions.create(
            model="tiny", prompt="The capital of", max_tokens=12, stop=[stop]
        )
        assert cut.choices[0].text == text[: text.index(stop)]
        assert cut.choices[0].finish_reason == "stop"
    short = ask(client, "Tell me a long story.", max_tokens=3)
    assert short.usage.completion_tokens <= 3
    streamed = client.completions.create(
        model="tiny", prompt="The capital of", max_tokens=12, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == text


def test_seeded_sampling_repeats(client):
    def sample(seed):
        return ask(client, "Hello", max_tokens=12, temperature=1.0, top_p=0.9, seed=seed)

    assert sample(7).choices[0].message.content == sample(7).choices[0].message.content


def test_each_error_gets_its_openai_error(client, server):
    with pytest.raises(AuthenticationError) as caught:
        OpenAI(base_url=server, api_key="wrong", max_retries=0).models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{server}/models").status_code == 401  # no key at all
    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(BadRequestError) as caught:
        ask(client, "x", temperature=3.5)
    assert caught.value.body["param"] == "temperature"
    with pytest.raises(BadRequestError):
        ask(client, "x", max_tokens=0)
    with pytest.raises(BadRequestError):
        ask(client, "x", n=2)
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=[])
    assert caught.value.body["param"] == "messages"
    with pytest.raises(BadRequestError) as caught:
        ask(client, "word " * 700)  # the tiny model reads 512 tokens
    assert caught.value.body["code"] == "context_length_exceeded"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad_json = httpx.post(f"{server}/chat/completions", content=b"{nope", headers=headers)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    missing = httpx.get(f"{server}/nothing-here", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    # none of that hurt the server
    assert ask(client, "still there?", max_tokens=4).choices[0].message.content is not None
    assert health(server)["errors"] >= 9


def test_concurrent_clients_get_their_own_answers(client):
    prompts = [f"Question number {i}: what is {i} plus {i}?" for i in range(8)]
    expected = {p: ask(client, p, max_tokens=16).choices[0].message.content for p in prompts}
    got: dict[str, str] = {}
    failures: list[BaseException] = []

    def stream_one(prompt: str) -> None:
        try:
            chunks = ask(client, prompt, max_tokens=16, stream=True)
            got[prompt] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=stream_one, args=(p,)) for p in prompts * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures
    assert got == expected


def test_a_client_that_hangs_up_frees_its_slot(server):
    before = health(server)["engine"]["tokens_total"]
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "go on"}],
        "max_tokens": 480,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{server}/chat/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        next(lines)
        next(lines)
    deadline = time.monotonic() + 15
    while health(server)["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    state = health(server)
    assert state["engine"]["active"] == 0 and state["active"] == 0
    # it stopped early, not after its 480 tokens
    assert state["engine"]["tokens_total"] - before < 240


def test_the_remote_engine_scores_like_the_local_one(server, served_workspace):
    pairs = [
        ("The capital of France is", " Paris."),
        ("你好", "，世界。"),
        ("def add(a, b):", " return"),
    ]
    remote = open_engine(f"openai:{server}", api_key=KEY)  # no #model: the server's first
    local = open_engine("tiny", served_workspace, slots=1)
    try:
        assert remote.model == "tiny"
        for (r_lp, r_greedy), (l_lp, l_greedy) in zip(
            remote.loglikelihood(pairs), local.loglikelihood(pairs), strict=True
        ):
            assert r_lp == pytest.approx(l_lp, abs=1e-4)
            assert r_greedy == l_greedy
        settings = GenerationSettings(max_new_tokens=10)
        messages = [{"role": "user", "content": "hi"}]
        stream = remote.chat(messages, settings)
        assert stream.text() == local.chat(messages, settings).text()
        assert stream.completion_tokens > 0 and stream.finish_reason in ("stop", "length")
    finally:
        remote.close()
        local.close()


def test_sigterm_lets_the_stream_in_flight_finish(served_workspace):
    proc, url = start_server(served_workspace)
    try:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 40,
            "stream": True,
        }
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(lines)
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/models", timeout=2)
    finally:
        stop_server(proc)


def test_a_serve_job_listens_until_cancelled(served_workspace, monkeypatch):
    from workbench import jobs
    from workbench.recipes import ServeRecipe

    monkeypatch.setenv("WORKBENCH_HOME", str(served_workspace.root))
    job = jobs.submit(served_workspace, ServeRecipe(model="tiny", port=0, slots=2))
    endpoint_file = Path(job.run_dir) / "endpoint.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not endpoint_file.is_file() and time.monotonic() < deadline:
        assert jobs.get_job(served_workspace, job.id).active, jobs.tail_log(job)
        time.sleep(0.2)
    url = json.loads(endpoint_file.read_text())["url"]
    reply = OpenAI(base_url=url, api_key="none").completions.create(
        model="tiny", prompt="Hello", max_tokens=4
    )
    assert reply.choices[0].text is not None
    finished = jobs.cancel(served_workspace, job.id, grace_s=20)
    assert finished.status == "cancelled" and "killed" not in finished.error
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=2)


@pytest.mark.integration
def test_the_embedded_model_answers_through_the_server(default_workspace):
    """The real model, engine vs transformers generate on the same tokens, then over HTTP."""
    import torch

    from workbench.engine.local import LocalEngine
    from workbench.models import load_model
    from workbench.recipes import ServeRecipe
    from workbench.server import ServerStats, build_app, serve_app

    loaded = load_model("default", default_workspace, device="cpu", dtype="float32")
    engine = LocalEngine("default", loaded, weights="model", slots=2)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    stream = engine.chat(messages, GenerationSettings(max_new_tokens=24))
    stream.text()
    ids = engine.encode_chat(messages)
    out = loaded.model.generate(
        torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=engine.end_ids
    )
    expected = [t for t in out[0, len(ids) :].tolist() if t not in engine.end_ids]
    assert stream.token_ids == expected

    stop, stats = threading.Event(), ServerStats()
    app = build_app(engine, "default", stats=stats)
    ready: dict = {}
    thread = threading.Thread(
        target=serve_app,
        args=(
            app,
            ServeRecipe(model="default", port=0),
            stats,
            lambda **e: ready.update(e),
            stop.is_set,
            None,
        ),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "url" not in ready and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = OpenAI(base_url=ready["url"], api_key="none").chat.completions.create(
            model="default", messages=messages, max_tokens=24
        )
        assert "Paris" in reply.choices[0].message.content
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.close()


def test_the_gradio_demo_answers_in_front_of_the_api(served_workspace):
    from gradio_client import Client

    from workbench.recipes import ServeRecipe
    from workbench.server import ServerStats, build_app, serve_app

    engine = open_engine("tiny", served_workspace, slots=2)
    stop, stats, ready = threading.Event(), ServerStats(), {}
    app = build_app(engine, "tiny", stats=stats, gradio=True)
    recipe = ServeRecipe(model="tiny", port=0, gradio=True)
    thread = threading.Thread(
        target=serve_app,
        args=(app, recipe, stats, lambda **e: ready.update(e), stop.is_set, None),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "url" not in ready and time.monotonic() < deadline:
            time.sleep(0.05)
        root = ready["url"].removesuffix("/v1")
        page = httpx.get(f"{root}/demo/", timeout=30, follow_redirects=True)
        assert page.status_code == 200 and "gradio" in page.text.lower()
        answer = Client(f"{root}/demo/", verbose=False).predict(
            "What is the capital of France?", "", 16, 0.0, api_name="/chat"
        )
        expected = engine.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            GenerationSettings(max_new_tokens=16),
        ).text()
        assert answer == expected
        models = OpenAI(base_url=ready["url"], api_key="none").models.list()  # the API too
        assert [m.id for m in models.data] == ["tiny"]
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.close()


def test_workbench_chat_talks_to_an_endpoint(server, client, served_workspace):
    env = {**os.environ, "WORKBENCH_HOME": str(served_workspace.root), "OPENAI_API_KEY": KEY}
    command = [sys.executable, "-m", "workbench", "chat", "--model", f"openai:{server}#tiny"]
    result = subprocess.run(
        [*command, "--max-new-tokens", "10", "--json", "Hello there"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    expected = ask(client, "Hello there", max_tokens=10)
    assert data["text"] == expected.choices[0].message.content
    assert data["completion_tokens"] == expected.usage.completion_tokens
    wrong = subprocess.run(
        [*command, "hi"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "OPENAI_API_KEY": "wrong"},
    )
    assert wrong.returncode == 2 and "HTTP 401" in wrong.stderr
