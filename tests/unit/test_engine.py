"""The local engine on a tiny Llama: greedy answers are exactly `generate`'s tokens (alone and
batched with other requests), log-likelihoods match a plain forward pass, stop strings, lengths,
seeds, cancellation, packed weights, and the errors a user can cause."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from workbench import cpu_gemv
from workbench.engine import Engine, open_engine, parse_engine_name
from workbench.engine.lean import PackedLinear, int4_is_lossless
from workbench.engine.local import LocalEngine
from workbench.errors import InvalidInput, WorkbenchError
from workbench.generate import GenerationSettings
from workbench.models import load_model

PROMPTS = [
    "What is the capital of France?",
    "Fine-tuning adapts a model.",
    "你好，世界。",
    "def add(a, b):",
]


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module", params=["lean", "plain"])
def engine(request, tiny_loaded):
    engine = LocalEngine("tiny", tiny_loaded, weights="model", slots=4, runner=request.param)
    yield engine
    engine.close()


def hf_greedy(loaded, ids: list[int], max_new: int, end_ids: list[int]) -> list[int]:
    out = loaded.model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=end_ids,
        pad_token_id=end_ids[0],
    )
    new = out[0, len(ids) :].tolist()
    return new[:-1] if new and new[-1] in end_ids else new


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def test_the_engine_meets_the_protocol(engine):
    assert isinstance(engine, Engine)
    expected = "lean" if type(engine.runner).__name__ == "LeanModel" else "plain"
    assert engine.path.startswith(expected)


def test_an_engine_leaves_autograd_on_for_the_rest_of_the_process(engine):
    """Training in the same process (a test run, a notebook) must still get gradients."""
    list(engine.chat(chat("Hi"), GenerationSettings(max_new_tokens=2)))
    assert torch.is_grad_enabled()
    weight = torch.ones(2, requires_grad=True)
    assert (weight * 2).sum().grad_fn is not None


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_equal_generate(engine, tiny_loaded, prompt):
    stream = engine.chat(chat(prompt), GenerationSettings(max_new_tokens=24))
    text = stream.text()
    expected = hf_greedy(tiny_loaded, engine.encode_chat(chat(prompt)), 24, engine.end_ids)
    assert stream.token_ids == expected
    assert text == tiny_loaded.tokenizer.decode(expected, skip_special_tokens=True)
    assert stream.completion_tokens == len(expected)
    assert stream.prompt_tokens == len(engine.encode_chat(chat(prompt)))
    assert stream.finish_reason == ("length" if len(expected) == 24 else "stop")


def test_concurrent_requests_get_their_own_answers(engine, tiny_loaded):
    """Four requests decoded together, started at different times, each equal to generate."""
    results: dict[int, list[int]] = {}

    def ask(i: int) -> None:
        time.sleep(0.05 * i)  # join a batch that is already running
        stream = engine.chat(chat(PROMPTS[i]), GenerationSettings(max_new_tokens=20))
        stream.text()
        results[i] = stream.token_ids

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i, prompt in enumerate(PROMPTS):
        ids = engine.encode_chat(chat(prompt))
        assert results[i] == hf_greedy(tiny_loaded, ids, 20, engine.end_ids), prompt
    assert engine.loop.active == 0


def test_more_requests_than_slots_wait_their_turn(tiny_loaded):
    engine = LocalEngine("tiny", tiny_loaded, weights="model", slots=2)
    try:
        streams = [engine.chat(chat(p), GenerationSettings(max_new_tokens=8)) for p in PROMPTS * 2]
        texts = [None] * len(streams)

        def read(i):
            texts[i] = streams[i].text()

        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(streams))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert texts[:4] == texts[4:]  # same prompt, same greedy answer, whatever the order
        assert all(s.finish_reason in ("stop", "length") for s in streams)
    finally:
        engine.close()


def test_loglikelihood_matches_a_plain_forward_pass(engine, tiny_loaded):
    context = "The capital of France is"
    greedy_text = tiny_loaded.tokenizer.decode(
        hf_greedy(tiny_loaded, tiny_loaded.tokenizer(context)["input_ids"], 4, [-1])
    )
    pairs = [(context, " Paris."), (context, greedy_text), ("你好", "，世界。")]
    scores = engine.loglikelihood(pairs)
    for (ctx, cont), (logprob, greedy) in zip(pairs, scores, strict=True):
        ctx_ids, cont_ids = engine.split_tokens(ctx, cont)
        ids = torch.tensor([ctx_ids + cont_ids])
        with torch.no_grad():
            logits = tiny_loaded.model(ids).logits[0].float()
        logprobs = torch.log_softmax(logits[len(ctx_ids) - 1 : -1], -1)
        target = torch.tensor(cont_ids)
        expected = float(logprobs.gather(-1, target[:, None]).sum())
        assert logprob == pytest.approx(expected, abs=1e-4)
        assert greedy == bool((logprobs.argmax(-1) == target).all())
    assert scores[1][1] is True  # the greedy continuation is greedy


def test_stop_strings_end_the_answer(engine):
    full = engine.chat(chat(PROMPTS[0]), GenerationSettings(max_new_tokens=24)).text()
    assert len(full) > 6
    stop = full[3:6]
    stream = engine.chat(chat(PROMPTS[0]), GenerationSettings(max_new_tokens=24, stop=[stop]))
    text = stream.text()
    assert text == full[: full.index(stop)]
    assert stream.finish_reason == "stop"
    deadline = time.monotonic() + 5
    while engine.loop.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.loop.active == 0  # the slot was freed


def test_closing_a_stream_frees_its_slot(engine):
    stream = engine.chat(chat(PROMPTS[1]), GenerationSettings(max_new_tokens=400))
    next(stream)
    stream.close()
    assert stream.finish_reason == "cancelled"
    deadline = time.monotonic() + 5
    while engine.loop.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.loop.active == 0


def test_sampling_repeats_with_a_seed(engine):
    def sample(seed: int) -> str:
        settings = GenerationSettings(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=seed)
        return engine.chat(chat(PROMPTS[0]), settings).text()

    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(4)}) > 1


def test_plain_completion_continues_text(engine, tiny_loaded):
    stream = engine.complete("The capital of", GenerationSettings(max_new_tokens=10))
    stream.text()
    ids = tiny_loaded.tokenizer("The capital of")["input_ids"]
    assert stream.token_ids == hf_greedy(tiny_loaded, ids, 10, engine.end_ids)


def test_a_prompt_too_long_is_refused(tiny_loaded):
    engine = LocalEngine("tiny", tiny_loaded, weights="model", slots=1, max_len=32)
    try:
        with pytest.raises(InvalidInput, match="tokens long") as caught:
            engine.chat(chat("word " * 40), GenerationSettings())
        assert "Shorten the prompt" in caught.value.fix
        stream = engine.chat(chat("Hi"), GenerationSettings(max_new_tokens=500))
        stream.text()
        assert stream.prompt_tokens + stream.completion_tokens <= 32
    finally:
        engine.close()


@pytest.mark.parametrize("weights", ["int8", "int4", "bfloat16"])
def test_packed_weights_stay_close_to_the_model(tiny_loaded, weights):
    exact = LocalEngine("tiny", tiny_loaded, weights="model", slots=1)
    packed = LocalEngine("tiny", tiny_loaded, weights=weights, slots=1)
    try:
        ids = exact.encode_chat(chat(PROMPTS[0]))
        a, b = exact.runner.prefill(0, ids), packed.runner.prefill(0, ids)
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
        assert packed.runner.weight_bytes() < exact.runner.weight_bytes()
        assert packed.chat(chat(PROMPTS[0]), GenerationSettings(max_new_tokens=8)).text()
    finally:
        exact.close()
        packed.close()


def test_int4_is_exact_for_weights_on_a_4bit_grid():
    torch.manual_seed(0)
    q = torch.randint(0, 16, (96, 64)).float()
    scale = torch.rand(96, 2).repeat_interleave(32, dim=1) * 0.01 + 0.001
    low = torch.randn(96, 2).repeat_interleave(32, dim=1) * 0.1
    on_grid = q * scale + low
    # every group spans its whole 0..15 range, as a quantizer that set min and max would leave it
    on_grid[:, ::32] = low[:, ::32]
    on_grid[:, 1::32] = low[:, 1::32] + 15 * scale[:, 1::32]
    assert int4_is_lossless(on_grid)
    assert not int4_is_lossless(torch.randn(96, 64))
    x = torch.randn(3, 64)
    packed = PackedLinear(on_grid, None, "int4", torch.float32)
    assert torch.allclose(packed(x), x @ on_grid.T, atol=1e-4)


def test_engine_names_pick_the_backend():
    assert parse_engine_name("default") == ("local", "default")
    assert parse_engine_name("openai:http://h:1/v1#m") == ("openai", "http://h:1/v1#m")
    assert parse_engine_name("lmdeploy:merged") == ("lmdeploy", "merged")
    assert parse_engine_name("HuggingFaceTB/SmolLM2-135M") == (
        "local",
        "HuggingFaceTB/SmolLM2-135M",
    )
    assert parse_engine_name("C:/models/x") == ("local", "C:/models/x")


def test_bad_options_and_endpoints_are_explained(tiny_model_dir):
    with pytest.raises(InvalidInput, match="Unknown weights format"):
        open_engine(str(tiny_model_dir), weights="int3")
    with pytest.raises(InvalidInput, match="not an http"):
        open_engine("openai:ftp://example#m")
    with pytest.raises(WorkbenchError, match="Cannot reach the server") as caught:
        open_engine("openai:http://127.0.0.1:9#m").chat(chat("hi"), GenerationSettings()).text()
    assert "workbench serve" in caught.value.fix


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_lmdeploy_without_a_gpu_says_so(workspace):
    with pytest.raises(WorkbenchError, match="NVIDIA GPU") as caught:
        open_engine("lmdeploy:default", workspace)
    assert "local backend" in caught.value.fix


def test_a_packed_head_rescores_its_best_candidates_exactly(tiny_loaded):
    from workbench.engine.lean import LeanModel

    lean = LeanModel(tiny_loaded.model, slots=1, max_len=64, weights="int4")
    hidden = torch.randn(5, tiny_loaded.model.config.hidden_size, dtype=lean.act)
    fast, exact = lean.logits(hidden), lean.logits_exact(hidden)
    assert torch.equal(fast.argmax(-1), exact.argmax(-1))
    top = exact.topk(5, dim=-1).indices
    assert torch.allclose(fast.gather(-1, top), exact.gather(-1, top), atol=1e-2)
    assert not torch.allclose(fast, exact, atol=1e-4)  # the rest keeps the packed values


def test_a_model_with_quantized_layers_decodes_its_own_codes_on_the_lean_path(tiny_model_dir):
    from workbench.quantize.modules import quantize_linears

    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    layers = {
        name: "int8"
        for name, module in loaded.model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    quantize_linears(loaded.model, layers)
    engine = LocalEngine("tiny-int8", loaded, slots=2)
    try:
        if cpu_gemv.available():
            assert engine.path.startswith("lean") and "weights model" in engine.path
            assert engine.runner.layers[0].qkv.fmt == "int8" and engine.runner.stack is not None
        else:  # the quantized layers' own forward, on torch's kernels
            assert engine.path.startswith("plain") and "AVX2" in engine.path
        stream = engine.chat(chat(PROMPTS[0]), GenerationSettings(max_new_tokens=12))
        stream.text()
        ids = engine.encode_chat(chat(PROMPTS[0]))
        assert stream.token_ids == hf_greedy(loaded, ids, 12, engine.end_ids)
    finally:
        engine.close()


class SlowDecoding:
    """A constraint that only slows each token down, so a request stays active for a while."""

    def processor(self, tokenizer, end_ids):
        def slow(generated_ids, logits):
            time.sleep(0.02)
            return logits

        return slow


def test_shared_engines_never_close_one_that_is_answering(
    workspace, tiny_model_dir, tmp_path, monkeypatch
):
    import shutil

    import workbench.engine as engines

    monkeypatch.setattr(engines, "SHARED_MAX", 1)
    monkeypatch.setattr(engines, "_SHARED", {})
    names = []
    for i in range(3):
        shutil.copytree(tiny_model_dir, tmp_path / f"m{i}")
        names.append(str(tmp_path / f"m{i}"))
    first = engines.shared_engine(names[0], workspace)
    settings = GenerationSettings(max_new_tokens=300, constraint=SlowDecoding())
    stream = first.chat(chat(PROMPTS[0]), settings)
    next(iter(stream))  # answering now
    second = engines.shared_engine(names[1], workspace)  # over the limit: first is busy
    assert engines.shared_engine(names[0], workspace) is first and not first.loop._closed
    stream.close()  # the reader leaves: its request ends at the next step
    wait_until = time.monotonic() + 10
    while first.loop.active and time.monotonic() < wait_until:
        time.sleep(0.05)
    engines.shared_engine(names[2], workspace)  # now the idle ones beyond the limit close
    assert first.loop._closed and second.loop._closed
    for engine in list(engines._SHARED.values()):
        engine.close()
