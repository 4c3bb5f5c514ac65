"""The loss on trained positions only equals the model's own loss, and so do the gradients.

A 2-layer Llama (tied embeddings, as SmolLM2) with LoRA on every linear layer: the model's own
forward (`model(..., labels=..., num_items_in_batch=...).loss`, what the trainer called before)
against `causal_lm_loss`, on packed and unpacked batches that include a row without any trained
token, with gradient accumulation over two micro-batches, in eval, with a LoRA on lm_head and in
full fine-tuning. Small chunks make the output layer run in several pieces.
"""

from __future__ import annotations

import pytest
import torch

from workbench.data.template import IGNORE_INDEX
from workbench.finetune import loss as loss_module
from workbench.finetune.batches import Example, make_batches
from workbench.finetune.loss import causal_lm_loss, splittable_causal_lm

VOCAB = 101


def tiny_llama(tied: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
        use_cache=False,
    )
    return LlamaForCausalLM(config).float()


def with_lora(model, targets="all-linear"):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    )
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: give the adapters a gradient of their own
            torch.nn.init.normal_(param, std=0.1)
    return model


def examples() -> list[Example]:
    """Chat-like rows: a prompt without labels, then an answer with labels; one row has none."""
    generator = torch.Generator().manual_seed(2)
    rows = []
    for prompt, answer in [(5, 4), (9, 1), (3, 12), (22, 0), (6, 7), (2, 2), (11, 5)]:
        ids = torch.randint(0, VOCAB, (prompt + answer,), generator=generator).tolist()
        rows.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return rows


def batches(packing: bool) -> list:
    return make_batches(
        examples(), batch_size=3, seq_len=24, packing=packing, pad_id=0, seed=0, epoch=0
    )


def own_loss(model, batch, items):
    return model(
        input_ids=batch.input_ids,
        labels=batch.labels,
        position_ids=batch.position_ids,
        attention_mask=batch.attention_mask,
        num_items_in_batch=items,
        use_cache=False,
    ).loss


def step(model, group, compute):
    """One optimizer step's losses and gradients, as the trainer accumulates them."""
    model.zero_grad(set_to_none=True)
    items = torch.tensor(float(max(sum(b.trained for b in group), 1)))
    losses = []
    for batch in group:
        loss = compute(model, batch, items)
        loss.backward()
        losses.append(loss.detach())
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return torch.stack(losses), grads


def split(model, batch, items):
    return causal_lm_loss(model, batch, device="cpu", num_items=items)


def assert_same_step(model, group):
    own, own_grads = step(model, group, own_loss)
    ours, our_grads = step(model, group, split)
    torch.testing.assert_close(ours, own, rtol=1e-5, atol=1e-6)
    assert own_grads.keys() == our_grads.keys() and own_grads
    for name, grad in own_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(loss_module, "CHUNK_ROWS", 5)


@pytest.mark.parametrize("packing", [True, False])
def test_lora_loss_and_gradients_match_the_models_own(packing):
    model = with_lora(tiny_llama())
    group = batches(packing)  # all micro-batches in one optimizer step
    rows_without_labels = [
        row for b in group for row in b.labels if (row[1:] != IGNORE_INDEX).sum() == 0
    ]
    assert rows_without_labels, "the data must hold a row with no trained token"
    assert_same_step(model, group)
    assert any("lora_A" in n for n, p in model.named_parameters() if p.grad is not None)


def test_a_batch_without_any_trained_token_gives_zero_loss_and_zero_gradients():
    model = with_lora(tiny_llama())
    ids = list(range(1, 11))
    group = make_batches(
        [Example(ids, [IGNORE_INDEX] * 10)],
        batch_size=1,
        seq_len=16,
        packing=True,
        pad_id=0,
        seed=0,
        epoch=0,
    )
    own, own_grads = step(model, group, own_loss)
    ours, our_grads = step(model, group, split)
    assert float(own) == float(ours) == 0.0
    assert own_grads.keys() == our_grads.keys()
    assert all(float(g.abs().max()) == 0.0 for g in our_grads.values())


def test_full_fine_tuning_with_tied_and_untied_output_layer():
    for tied in (True, False):
        model = tiny_llama(tied)
        assert_same_step(model, batches(packing=True)[:2])


def test_lora_on_the_output_layer_runs_the_layer_itself():
    model = with_lora(tiny_llama(tied=False), targets=["q_proj", "v_proj", "lm_head"])
    assert_same_step(model, batches(packing=True)[:2])
    assert model.get_base_model().lm_head.lora_A["default"].weight.grad is not None


def test_eval_loss_matches_without_gradients():
    model = with_lora(tiny_llama())
    model.eval()
    with torch.no_grad():
        for batch in batches(packing=False):
            items = torch.tensor(max(batch.trained, 1))
            torch.testing.assert_close(
                split(model, batch, items), own_loss(model, batch, items), rtol=1e-5, atol=1e-6
            )


def test_the_model_keeps_its_own_forward_outside_the_call():
    model = with_lora(tiny_llama())
    batch = batches(packing=True)[0]
    split(model, batch, torch.tensor(float(batch.trained)))
    causal = model.get_base_model()
    assert "forward" not in vars(causal)
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids)
    assert out.logits.shape == (*batch.input_ids.shape, VOCAB)


def test_models_whose_forward_cannot_be_split_take_their_own_path():
    model = tiny_llama()
    assert splittable_causal_lm(with_lora(tiny_llama())) is not None
    model.forward = lambda *a, **k: None  # e.g. kernels.patch_llama's loss
    assert splittable_causal_lm(model) is None

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)).eval()
    assert splittable_causal_lm(gpt2) is None
    batch = batches(packing=False)[0]
    items = torch.tensor(float(batch.trained))
    batch.position_ids = None
    expected = own_loss(gpt2, batch, items)
    torch.testing.assert_close(split(gpt2, batch, items), expected)
