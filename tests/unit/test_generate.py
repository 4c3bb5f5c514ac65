"""Streaming chat with the tiny random Llama: pieces, limits, stop strings, the generate job.

The tiny model's answers are gibberish, so tests compare decoding paths with each other (stream vs
whole, same seed twice) rather than with expected words; the embedded model's real answer is
checked in tests/integration/test_default_model.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from workbench.errors import InvalidInput, WorkbenchError
from workbench.generate import (
    GenerationSettings,
    build_messages,
    chat_once,
    run_generate,
    stream_chat,
)
from workbench.models import load_model
from workbench.recipes import GenerateRecipe
from workbench.workspace import Workspace

QUESTION = build_messages("What is the capital of France?")
SAMPLED = dict(temperature=1.0, top_p=1.0, seed=7)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model loaded once for this module, on CPU in float32."""
    ws = Workspace(tmp_path_factory.mktemp("gen-ws")).ensure()
    return load_model(str(tiny_model_dir), ws, device="cpu", dtype="float32")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)


def test_build_messages_orders_system_history_and_prompt():
    messages = build_messages(
        "and Italy?",
        system="Answer briefly.",
        history=[("Capital of France?", "Paris."), {"role": "user", "content": "Thanks"}],
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "user"]
    assert messages[-1] == {"role": "user", "content": "and Italy?"}
    assert build_messages("hi") == [{"role": "user", "content": "hi"}]


def test_settings_refuse_bad_values():
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(InvalidInput, match="top_p"):
        GenerationSettings(top_p=0.0)


def test_stream_pieces_join_to_the_whole_answer(tiny):
    settings = GenerationSettings(max_new_tokens=16, **SAMPLED)
    pieces = list(stream_chat(tiny, QUESTION, settings))
    result = chat_once(tiny, QUESTION, settings)
    assert len(pieces) > 1  # it really streams
    assert "".join(pieces) == result.text
    greedy = GenerationSettings(max_new_tokens=16)
    assert "".join(stream_chat(tiny, QUESTION, greedy)) == chat_once(tiny, QUESTION, greedy).text


def test_greedy_repeats_and_sampling_follows_the_seed(tiny):
    greedy = GenerationSettings(max_new_tokens=12)
    assert chat_once(tiny, QUESTION, greedy).text == chat_once(tiny, QUESTION, greedy).text
    a = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=12, **SAMPLED)).text
    b = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=12, **SAMPLED)).text
    c = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=12, temperature=1.0, seed=8))
    assert a == b and a != c.text


@pytest.mark.parametrize("limit", [1, 5])
def test_max_new_tokens_is_respected(tiny, limit):
    result = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=limit, **SAMPLED))
    assert 1 <= result.completion_tokens <= limit
    assert result.prompt_tokens > 5
    assert result.tokens_per_s > 0 and result.seconds > 0
    if result.completion_tokens == limit:
        assert result.finish_reason in ("length", "stop")


def test_stop_strings_cut_the_answer(tiny):
    full = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=40, **SAMPLED)).text
    assert len(full) > 12
    stop = full[8:11]
    cut = chat_once(tiny, QUESTION, GenerationSettings(max_new_tokens=40, stop=[stop], **SAMPLED))
    assert cut.text == full[: full.index(stop)]
    assert stop not in cut.text
    assert cut.finish_reason == "stop"
    pieces = list(
        stream_chat(tiny, QUESTION, GenerationSettings(max_new_tokens=40, stop=[stop], **SAMPLED))
    )
    assert "".join(pieces) == cut.text


def test_leaving_a_stream_early_stops_generation(tiny):
    stream = stream_chat(tiny, QUESTION, GenerationSettings(max_new_tokens=400, **SAMPLED))
    next(stream)
    stream.close()
    assert not any(t.name == "workbench-generate" for t in threading.enumerate())


def test_model_without_chat_template_is_explained(tiny_model_dir, tmp_path):
    loaded = load_model(
        str(tiny_model_dir), Workspace(tmp_path / "ws"), device="cpu", dtype="float32"
    )
    loaded.tokenizer.chat_template = None
    with pytest.raises(WorkbenchError, match="no chat template") as err:
        stream_chat(loaded, QUESTION, GenerationSettings())
    assert "instruct" in err.value.fix


def test_prompt_longer_than_the_context_is_refused(tiny):
    long_prompt = build_messages("The capital of France is Paris. " * 200)
    with pytest.raises(WorkbenchError, match="reads at most 512"):
        chat_once(tiny, long_prompt, GenerationSettings(max_new_tokens=4))


# --- the generate job ------------------------------------------------------------------------


def _recipe(**overrides) -> GenerateRecipe:
    values = dict(
        model="tiny",
        prompts=["Hello", "What is the capital of France?", "你好"],
        max_new_tokens=8,
        device="cpu",
        dtype="float32",
        temperature=1.0,
        seed=3,
    )
    values.update(overrides)
    return GenerateRecipe(**values)


def test_run_generate_writes_one_line_per_prompt(workspace, tiny_artifact, tmp_path):
    progress = Recorder()
    recipe = _recipe()
    result = run_generate(
        recipe,
        workspace=workspace,
        progress=progress,
        should_stop=lambda: False,
        run_dir=tmp_path,
        job_id="job-1",
    )
    lines = [json.loads(x) for x in (tmp_path / "outputs.jsonl").read_text("utf-8").splitlines()]
    assert [line["prompt"] for line in lines] == recipe.prompts
    assert all(
        set(line) >= {"prompt", "response", "completion_tokens", "seconds"} for line in lines
    )
    assert all(1 <= line["completion_tokens"] <= 8 for line in lines)
    assert result["answers"] == 3 and result["outputs"] == str(tmp_path / "outputs.jsonl")
    assert result["tokens_per_s"] > 0 and "stopped" not in result
    answered = [c for c in progress.calls if c.get("step")]
    assert [c["step"] for c in answered] == [1, 2, 3]
    assert all(c["total"] == 3 and c["tokens_per_s"] > 0 for c in answered)


def test_run_generate_stops_between_prompts(workspace, tiny_artifact, tmp_path):
    progress = Recorder()
    result = run_generate(
        _recipe(),
        workspace=workspace,
        progress=progress,
        should_stop=lambda: any(c.get("step") for c in progress.calls),
        run_dir=tmp_path,
        job_id="job-2",
    )
    assert result["answers"] == 1 and result["stopped"] is True
    assert len((tmp_path / "outputs.jsonl").read_text("utf-8").splitlines()) == 1


def test_run_generate_stops_inside_a_long_answer(workspace, tiny_artifact, tmp_path):
    calls = {"n": 0}

    def stop_soon() -> bool:  # asked once per prompt and once per generated token
        calls["n"] += 1
        return calls["n"] > 4

    started = time.perf_counter()
    result = run_generate(
        _recipe(max_new_tokens=2000, prompts=["Tell me a long story."]),
        workspace=workspace,
        progress=Recorder(),
        should_stop=stop_soon,
        run_dir=tmp_path,
        job_id="job-3",
    )
    assert time.perf_counter() - started < 20
    assert result["answers"] == 0 and result["stopped"] is True
    (line,) = [json.loads(x) for x in (tmp_path / "outputs.jsonl").read_text().splitlines()]
    assert line["stopped"] is True and line["completion_tokens"] < 10
