"""Preference tuning: DPO (sigmoid loss) and ORPO in our own training loop, LoRA or full weights.

    run_train(TrainRecipe(data="prefs", out="prefs-dpo", objective="dpo", beta=0.1), workspace=ws)

`trainer.run_train` hands recipes with objective dpo or orpo to `run_preference`. Each pair is
rendered twice through the chat template (prompt + chosen, prompt + rejected; only the answer
tokens count, end-of-turn included) and both rows go through the model in one forward pass.

DPO (Rafailov et al. 2023), per pair, with log-probabilities summed over the answer tokens:

    chosen_reward   = beta * (log pi(chosen)   - log ref(chosen))
    rejected_reward = beta * (log pi(rejected) - log ref(rejected))
    loss            = -log sigmoid(chosen_reward - rejected_reward)

The reference model is the starting model, and no second copy of it is ever held in memory.
Its log-probabilities are computed once per training pair (forward passes without gradients, in
eval mode) and kept in the run folder (reference_logps.json), so a resumed job reads them back:
with full weights all of them before the first step (the weights change from then on); with
LoRA/QLoRA the model with its adapter disabled *is* the starting model, so a pair is scored the
first time a batch holds it — one pass in all, spread over the first epoch, and a short run pays
only for the pairs it uses (ReferenceLogps).

ORPO (Hong et al. 2024) needs no reference: with the mean log-probability per answer token
a = log p / n, odds(y) = p / (1 - p), and

    loss = NLL(chosen) - beta * log sigmoid(log odds(chosen) - log odds(rejected))

(beta is ORPO's lambda; rewards are reported as beta * a, as TRL does).

Every step reports loss, the chosen and rejected rewards, their margin and the share of pairs
where the chosen reward is higher (reward_acc). The held-out split is scored before training and
at the end (and every eval_every steps): `pref_acc` is how often the model itself gives the
chosen answer a higher log-probability than the rejected one — the same number the evaluation
page's preference task reports.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.data.template import IGNORE_INDEX, render_sample
from workbench.errors import InvalidInput
from workbench.finetune.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from workbench.progress import null_progress

PREFERENCE_OBJECTIVES = ("dpo", "orpo")
REFERENCE_FILE = "reference_logps.json"


@dataclass
class PairExample:
    """One preference pair as token ids with answer labels (IGNORE_INDEX on the prompt)."""

    chosen_ids: list[int]
    chosen_labels: list[int]
    rejected_ids: list[int]
    rejected_labels: list[int]

    @property
    def tokens(self) -> int:
        return len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class PairBatch:
    """Pairs i..j as 2n rows: the chosen answers first, then the rejected ones (right-padded)."""

    input_ids: Any
    labels: Any
    attention_mask: Any
    indices: list[int]
    tokens: int


def build_pairs(
    samples: list[dict], tokenizer: Any, *, cutoff: int, chat_template: str | None = None
) -> tuple[list[PairExample], dict]:
    """Render every pair; pairs whose answer lies wholly beyond the cutoff are left out (counted).

    Returns the examples and counts: pairs, examples, tokens, truncated, empty.
    """
    from workbench.data.prefs import pair_messages

    examples, truncated, empty = [], 0, 0
    for sample in samples:
        rendered = [
            render_sample(
                tokenizer,
                {"messages": pair_messages(sample, which)},
                train_on="last",
                cutoff=cutoff,
                chat_template=chat_template,
            )
            for which in ("chosen", "rejected")
        ]
        truncated += any(r.cut_tokens > 0 for r in rendered)
        if any(r.trained_tokens == 0 for r in rendered):
            empty += 1
            continue
        chosen, rejected = rendered
        examples.append(
            PairExample(chosen.input_ids, chosen.labels, rejected.input_ids, rejected.labels)
        )
    counts = {
        "pairs": len(samples),
        "examples": len(examples),
        "tokens": sum(e.tokens for e in examples),
        "truncated": truncated,
        "empty": empty,
    }
    return examples, counts


def pair_batches(
    examples: list[PairExample], indices: list[int], batch_size: int, pad_id: int
) -> list[PairBatch]:
    """`indices` (in the order given) cut into batches of `batch_size` pairs."""
    import torch

    batches = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        rows = [(examples[i].chosen_ids, examples[i].chosen_labels) for i in chunk]
        rows += [(examples[i].rejected_ids, examples[i].rejected_labels) for i in chunk]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (row_ids, row_labels) in enumerate(rows):
            ids[r, : len(row_ids)] = torch.tensor(row_ids)
            labels[r, : len(row_labels)] = torch.tensor(row_labels)
            mask[r, : len(row_ids)] = 1
        batches.append(PairBatch(ids, labels, mask, chunk, int(mask.sum())))
    return batches


def sequence_logps(model: Any, batch: PairBatch, device: str) -> tuple[Any, Any]:
    """(sum of answer-token log-probabilities, answer-token count) per row of `batch`.

    The output layer runs only on the positions that predict an answer token: the vocabulary
    projection is a fifth of a small model's compute, and most positions are prompt.
    """
    import torch
    import torch.nn.functional as F

    input_ids = batch.input_ids.to(device)
    mask = batch.attention_mask.to(device)
    targets = batch.labels[:, 1:].to(device)
    keep = targets != IGNORE_INDEX
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    if decoder is not None and head is not None:
        hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False)[0]
        logits = head(hidden[:, :-1][keep])
    else:
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        logits = logits[:, :-1][keep]
    token_logps = -F.cross_entropy(logits.float(), targets[keep], reduction="none")
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(input_ids.shape[0], device=device, dtype=token_logps.dtype)
    sums = sums.index_add(0, rows, token_logps)
    return sums, keep.sum(dim=1)


def dpo_loss(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float
) -> tuple[Any, Any, Any]:
    """DPO's sigmoid loss per pair, and the chosen and rejected rewards (see the docstring)."""
    import torch.nn.functional as F

    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def orpo_loss(
    chosen_sum: Any, rejected_sum: Any, chosen_count: Any, rejected_count: Any, beta: float
) -> tuple[Any, Any, Any, Any]:
    """ORPO's loss per pair, the rewards (beta * mean log-prob), and the odds-ratio term."""
    import torch
    import torch.nn.functional as F

    chosen_mean = chosen_sum / chosen_count.clamp(min=1)
    rejected_mean = rejected_sum / rejected_count.clamp(min=1)

    def log_odds(mean: Any) -> Any:  # log(p / (1 - p)) with log p = mean < 0
        mean = mean.clamp(max=-1e-6)
        return mean - torch.log(-torch.expm1(mean))

    ratio = F.logsigmoid(log_odds(chosen_mean) - log_odds(rejected_mean))
    losses = -chosen_mean - beta * ratio
    return losses, beta * chosen_mean.detach(), beta * rejected_mean.detach(), ratio.detach()


def pair_logps(
    model: Any, examples: list[PairExample], device: str, batch_size: int, pad_id: int
) -> list[tuple[float, float, int, int]]:
    """(log p chosen, log p rejected, chosen tokens, rejected tokens) per pair, without gradients."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for batch in pair_batches(examples, list(range(len(examples))), batch_size, pad_id):
                sums, counts = sequence_logps(model, batch, device)
                n = len(batch.indices)
                for i in range(n):
                    out.append(
                        (float(sums[i]), float(sums[n + i]), int(counts[i]), int(counts[n + i]))
                    )
    finally:
        model.train(was_training)
    return out


def preference_accuracy(scores: list[tuple]) -> float | None:
    """Share of pairs whose chosen answer has the higher log-probability (ties count half)."""
    if not scores:
        return None
    won = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r, *_ in scores)
    return won / len(scores)


def score_pairs(
    model: Any,
    tokenizer: Any,
    samples: list[dict],
    *,
    device: str = "cpu",
    cutoff: int = 1024,
    batch_size: int = 8,
    chat_template: str | None = None,
) -> list[tuple[float, float, int, int]]:
    """Log-probabilities of each pair's two answers (what the evaluation task scores)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    examples, _ = build_pairs(samples, tokenizer, cutoff=cutoff, chat_template=chat_template)
    return pair_logps(model, examples, device, batch_size, pad_id)


# --- the training job ------------------------------------------------------------------------


def run_preference(
    recipe: Any,
    *,
    ws: Any,
    ref: Any,
    objective: str,
    device: str,
    dtype: str,
    run_dir: Path,
    progress: Callable[..., None] = null_progress,
    should_stop: Callable[[], bool] = lambda: False,
    job_id: str = "",
) -> dict:
    """Train `recipe` (objective dpo or orpo) and save the adapter or model. See the docstring."""
    import torch

    from workbench.data.prefs import read_pairs
    from workbench.finetune import trainer as sft

    _refuse(recipe, ref)
    torch.manual_seed(recipe.seed)
    progress(message="loading the model", stage="load")
    model, tokenizer = sft._load_for_training(recipe, ref.path, device, dtype)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    template = recipe.chat_template or None
    progress(message="rendering the preference pairs", stage="data")
    train_samples = read_pairs(ws, recipe.data, "train")
    held_samples = read_pairs(ws, recipe.data, "eval")
    train, counts = build_pairs(
        train_samples, tokenizer, cutoff=recipe.cutoff, chat_template=template
    )
    held, _ = build_pairs(held_samples, tokenizer, cutoff=recipe.cutoff, chat_template=template)
    if not train:
        raise InvalidInput(
            f"No preference pair of {recipe.data!r} is left to train on: {counts}.",
            where=recipe.data,
            fix="Raise the cutoff (the answers may lie beyond it) or check the pairs.",
        )
    per_step = recipe.batch_size * recipe.grad_accum  # pairs per optimizer step
    steps_per_epoch = max(1, math.ceil(len(train) / per_step))
    total_steps = recipe.max_steps or max(1, math.ceil(recipe.epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = sft._optimizer_and_schedule(params, recipe, total_steps)
    autocast = sft._autocast(device, dtype, recipe.method)
    state = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "seconds": 0.0}
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        progress(
            message=f"resumed from step {state['step']}", stage="resume", resumed=state["step"]
        )
    else:
        (run_dir / "data_counts.json").write_text(json.dumps(counts, indent=2), "utf-8")
    batch = max(1, recipe.batch_size)
    with autocast():
        before = _reference(run_dir, "heldout", held, model, device, batch, pad_id, progress)
        reference = None
        if objective == "dpo":
            lazy = recipe.method != "full"
            reference = ReferenceLogps(run_dir, train, model, device, batch, pad_id, lazy=lazy)
            if not lazy:
                progress(message=f"scoring {len(train)} train pairs with the starting model")
                reference.ensure(range(len(train)))
    acc_before = preference_accuracy(before)
    if checkpoint is None:
        margin = sum(c - r for c, r, *_ in before) / max(len(before), 1)
        progress(step=0, pref_acc=acc_before, pref_margin=margin, message="held-out scored")
    probe = sft._Prober(recipe, model, tokenizer, run_dir, device, dtype, ref)
    if checkpoint is None:
        probe.base_answers()
    progress(
        step=state["step"],
        total=total_steps,
        stage="train",
        message=f"{objective} on {len(train)} pairs, {len(held)} held out",
        examples=len(train),
    )
    model.train()
    started = time.perf_counter() - state["seconds"]
    stopped = False
    last_acc = None
    while state["step"] < total_steps and not stopped:
        order = list(range(len(train)))
        random.Random(recipe.seed * 1000 + state["epoch"]).shuffle(order)
        batches = pair_batches(train, order, recipe.batch_size, pad_id)
        while state["batch"] < len(batches) and state["step"] < total_steps:
            group = batches[state["batch"] : state["batch"] + recipe.grad_accum]
            step_started = time.perf_counter()
            try:
                done = _step(
                    model, group, objective, recipe.beta, reference, device, autocast, should_stop
                )
            except BaseException as exc:
                optimizer.zero_grad(set_to_none=True)
                if state["step"]:
                    save_checkpoint(run_dir, model, optimizer, scheduler, state)
                if sft.is_out_of_memory(exc):
                    raise sft._oom_error(recipe, f"training step {state['step'] + 1}") from exc
                raise
            if done is None:
                optimizer.zero_grad(set_to_none=True)
                stopped = True
                break
            grad_norm = sft._clip(params, recipe.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["batch"] += len(group)
            state["step"] += 1
            state["tokens"] += done["tokens"]
            state["loss"] = done["loss"]
            elapsed = time.perf_counter() - started
            state["seconds"] = elapsed
            step = state["step"]
            progress(
                step=step,
                total=total_steps,
                lr=scheduler.get_last_lr()[0],
                grad_norm=grad_norm,
                tokens_per_s=done["tokens"] / max(time.perf_counter() - step_started, 1e-9),
                memory_mb=sft._memory_mb(device),
                epoch=state["epoch"] + state["batch"] / len(batches),
                eta_s=elapsed / step * (total_steps - step),
                **{k: v for k, v in done.items() if k != "tokens"},
            )
            if recipe.eval_every and step % recipe.eval_every == 0 and held:
                last_acc = _heldout(model, held, device, batch, pad_id, autocast, progress, step)
            if recipe.probe_every and step % recipe.probe_every == 0:
                probe.answers(step)
            if should_stop():
                stopped = True
                break
            if recipe.save_every and step % recipe.save_every == 0 and step < total_steps:
                save_checkpoint(run_dir, model, optimizer, scheduler, state)
        if state["batch"] >= len(batches):
            state["epoch"] += 1
            state["batch"] = 0
    if stopped:
        save_checkpoint(run_dir, model, optimizer, scheduler, state)
        progress(message=f"stopped at step {state['step']}; resume continues from here")
        return {"stopped": True, "step": state["step"], "total_steps": total_steps}
    if held and (last_acc is None or not recipe.eval_every or state["step"] % recipe.eval_every):
        last_acc = _heldout(model, held, device, batch, pad_id, autocast, progress, state["step"])
    if not recipe.probe_every or state["step"] % recipe.probe_every:
        probe.answers(state["step"])
    metrics = {
        **sft._run_metrics(state, steps_per_epoch),
        "method": recipe.method,
        "objective": objective,
        "beta": recipe.beta,
        "train_pairs": len(train),
        "heldout_pairs": len(held),
        "pref_acc_before": _round(acc_before),
        "pref_acc_after": _round(last_acc),
        "device": device,
        "dtype": dtype,
        "processes": 1,
    }
    progress(message=f"saving {recipe.out!r}", stage="save")
    sft._save_artifact(ws, recipe, model, tokenizer, ref, metrics, job_id)
    return {"artifact": recipe.out, **metrics}


def _refuse(recipe: Any, ref: Any) -> None:
    """WorkbenchErrors for what preference tuning cannot start from."""
    if recipe.processes > 1:
        raise InvalidInput(
            f"Preference tuning runs in one process; processes is {recipe.processes}.",
            where="processes",
            fix="Set processes to 1.",
        )
    if ref.origin == "adapter":
        raise InvalidInput(
            f"{recipe.model!r} is a LoRA adapter; preference tuning starts from a model.",
            where="model",
            fix=f"Merge it first (`workbench merge --adapter {recipe.model} --out "
            f"{recipe.model}-merged`), then tune the merged model.",
        )
    if recipe.method == "full" and _is_quantized(Path(ref.path)):
        raise InvalidInput(
            f"{recipe.model!r} is a quantized (4-bit or 8-bit) model: full fine-tuning needs "
            "weights it can change.",
            where="method full",
            fix="Use method lora or qlora on it, or full on the unquantized model it came from.",
        )


def _is_quantized(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        config = {}
    if config.get("quantization_config"):
        return True
    from workbench.quantize.artifact import is_workbench_quantized

    return bool(is_workbench_quantized(folder))


def _step(
    model: Any,
    group: list[PairBatch],
    objective: str,
    beta: float,
    reference: ReferenceLogps | None,
    device: str,
    autocast: Any,
    should_stop: Callable[[], bool],
) -> dict | None:
    """Forward and backward over the micro-batches of one optimizer step; the step's means."""

    pairs = sum(len(b.indices) for b in group)
    sums: dict[str, float] = {"loss": 0.0, "reward_chosen": 0.0, "reward_rejected": 0.0}
    sums.update(reward_acc=0.0, reward_margin=0.0, nll=0.0, log_odds=0.0)
    tokens = 0
    for batch in group:
        if should_stop():
            return None
        n = len(batch.indices)
        with autocast():
            logps, counts = sequence_logps(model, batch, device)
        chosen, rejected = logps[:n], logps[n:]
        if objective == "dpo":
            with autocast():
                refs = reference.get(batch.indices)
            losses, good, bad = dpo_loss(chosen, rejected, refs[:, 0], refs[:, 1], beta)
        else:
            losses, good, bad, ratio = orpo_loss(chosen, rejected, counts[:n], counts[n:], beta)
            sums["nll"] += float((-chosen.detach() / counts[:n].clamp(min=1)).sum())
            sums["log_odds"] += float(ratio.sum())
        (losses.sum() / pairs).backward()
        sums["loss"] += float(losses.detach().sum())
        sums["reward_chosen"] += float(good.sum())
        sums["reward_rejected"] += float(bad.sum())
        sums["reward_margin"] += float((good - bad).sum())
        sums["reward_acc"] += float((good > bad).float().sum())
        tokens += batch.tokens
    means = {k: v / pairs for k, v in sums.items()}
    if objective == "dpo":
        means.pop("nll"), means.pop("log_odds")
    return {**means, "tokens": tokens}


class ReferenceLogps:
    """The starting model's (log p chosen, log p rejected) of each training pair, computed once
    per pair and kept in the run folder (see the module docstring).

    With `lazy` (LoRA/QLoRA) a pair is scored when `get` first asks for it, with the adapter
    disabled; otherwise call `ensure` for every pair before training.
    """

    def __init__(
        self, run_dir: Path, examples: list[PairExample], model: Any, device: str,
        batch_size: int, pad_id: int, *, lazy: bool,
    ) -> None:  # fmt: skip
        self.path, self.examples, self.model = run_dir / REFERENCE_FILE, examples, model
        self.device, self.batch_size, self.pad_id, self.lazy = device, batch_size, pad_id, lazy
        self.digest = _digest(examples)
        entry = _read(self.path).get("train") or {}
        stored = entry.get("logps") if entry.get("digest") == self.digest else None
        self.values = {int(k): tuple(v) for k, v in (stored or {}).items()}

    def ensure(self, indices: Any) -> None:
        """Score the pairs of `indices` that have no reference value yet."""
        from contextlib import nullcontext

        missing = [i for i in indices if i not in self.values]
        if not missing:
            return
        disable = getattr(self.model, "disable_adapter", None)
        adapter_off = disable() if self.lazy and disable else nullcontext()
        with adapter_off:
            picked = [self.examples[i] for i in missing]
            values = pair_logps(self.model, picked, self.device, self.batch_size, self.pad_id)
        self.values.update(zip(missing, values, strict=True))
        stored = _read(self.path)
        stored["train"] = {
            "digest": self.digest,
            "logps": {str(k): v for k, v in self.values.items()},
        }
        self.path.write_text(json.dumps(stored), "utf-8")

    def get(self, indices: list[int]) -> Any:
        """A (len(indices), 2) tensor of the reference log-probabilities (chosen, rejected)."""
        import torch

        self.ensure(indices)
        return torch.tensor([self.values[i][:2] for i in indices], device=self.device)


def _digest(examples: list[PairExample]) -> str:
    text = json.dumps([[e.chosen_ids, e.rejected_ids] for e in examples])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read(path: Path) -> dict:
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}


def _reference(
    run_dir: Path,
    split: str,
    examples: list[PairExample],
    model: Any,
    device: str,
    batch_size: int,
    pad_id: int,
    progress: Callable[..., None],
) -> list[tuple]:
    """The starting model's log-probabilities of `examples`, computed once per run folder."""
    digest = _digest(examples)
    path = run_dir / REFERENCE_FILE
    stored = _read(path)
    entry = stored.get(split)
    if entry and entry.get("digest") == digest:
        return [tuple(x) for x in entry["logps"]]
    if examples:
        progress(message=f"scoring {len(examples)} {split} pairs with the starting model")
    values = pair_logps(model, examples, device, batch_size, pad_id)
    stored = _read(path)
    stored[split] = {"digest": digest, "logps": values}
    path.write_text(json.dumps(stored), "utf-8")
    return values


def _heldout(
    model: Any,
    held: list[PairExample],
    device: str,
    batch_size: int,
    pad_id: int,
    autocast: Any,
    progress: Callable[..., None],
    step: int,
) -> float | None:
    with autocast():
        scores = pair_logps(model, held, device, batch_size, pad_id)
    value = preference_accuracy(scores)
    margin = sum(c - r for c, r, *_ in scores) / max(len(scores), 1)
    progress(step=step, pref_acc=value, pref_margin=margin)
    return value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def check_preference_data(ws: Any, name: str, objective: str) -> None:
    """Raise InvalidInput unless dataset `name` suits `objective` (pairs for dpo/orpo only)."""
    from workbench.data.prefs import is_preference_dataset

    pairs = is_preference_dataset(ws, name)
    if objective in PREFERENCE_OBJECTIVES and not pairs:
        raise InvalidInput(
            f"Dataset {name!r} holds no preference pairs; {objective} learns from a chosen and "
            "a rejected answer per prompt.",
            where="data",
            fix="Pick a preference dataset (import pairs, or build them from the arena votes), "
            "or use objective sft for conversations.",
        )
    if objective not in PREFERENCE_OBJECTIVES and objective != "auto" and pairs:
        raise InvalidInput(
            f"Dataset {name!r} holds preference pairs; {objective} cannot train on them.",
            where="objective",
            fix="Use objective dpo or orpo (or auto, which picks dpo).",
        )
