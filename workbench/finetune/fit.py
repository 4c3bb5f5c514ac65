""" "Will it fit?" for a training recipe: memory and time on this machine, before anything starts.

Joins a TrainRecipe to workbench.estimate: the model's shape from its config, the plan from the
recipe (device and dtype resolved as the trainer will), and the number of tokens the run will
process, counted on the dataset with the model's tokenizer and chat template.
"""

from __future__ import annotations

import math
from typing import Any

from workbench.errors import WorkbenchError
from workbench.estimate import TrainPlan, will_it_fit
from workbench.recipes import TrainRecipe
from workbench.workspace import Workspace


def plan_for(recipe: TrainRecipe, device: str, dtype: str) -> TrainPlan:
    """The estimator's view of a recipe (device and dtype already resolved)."""
    return TrainPlan(
        method=recipe.method,
        lora_rank=recipe.lora_rank,
        lora_targets=recipe.target_modules(),
        batch_size=recipe.batch_size * (2 if recipe.objective in ("dpo", "orpo") else 1),
        grad_accum=recipe.grad_accum,
        seq_len=recipe.cutoff,
        dtype=dtype,
        gradient_checkpointing=recipe.gradient_checkpointing,
        device=device,
    )


def dataset_tokens(ws: Workspace, recipe: TrainRecipe, tokenizer: Any) -> int:
    """Tokens in one pass over the training split (each sample capped at the cutoff).

    Preference pairs count both answers with their prompt; DPO adds the one pass without
    gradients that scores the pairs with the starting model (a third of a training pass).
    """
    from workbench.data.prefs import is_preference_dataset, pair_messages
    from workbench.data.prepare import read_dataset
    from workbench.data.stats import token_lengths

    samples = read_dataset(ws, recipe.data, "train")
    if is_preference_dataset(ws, recipe.data):
        samples = [
            {"messages": pair_messages(s, which)}
            for s in samples
            for which in ("chosen", "rejected")
        ]
        lengths = token_lengths(samples, tokenizer)
        tokens = sum(min(int(n), recipe.cutoff) for n in lengths.values)
        reference = tokens / 3 / max(recipe.epochs, 1) if recipe.objective != "orpo" else 0
        return int(tokens + reference)
    lengths = token_lengths(samples, tokenizer)
    return int(sum(min(int(n), recipe.cutoff) for n in lengths.values))


def check_fit(recipe: TrainRecipe, ws: Workspace | None = None, hardware: Any = None) -> dict:
    """Memory and time estimate with a verdict (see estimate.will_it_fit), plus the run size.

    Raises:
        WorkbenchError: the base model is not available locally, or is an adapter.
    """
    from workbench.data.browse import load_tokenizer
    from workbench.hardware import resolve_device, resolve_dtype
    from workbench.models import resolve_model

    ws = ws or Workspace()
    ref = resolve_model(recipe.model, ws)
    if ref.path is None or ref.origin == "adapter":
        raise WorkbenchError(
            f"Cannot estimate training on {recipe.model!r}: "
            + ("it is not downloaded." if ref.path is None else "it is an adapter."),
            where="model",
            fix="Prepare the model first (`workbench models prepare`), or merge the adapter.",
        )
    device = resolve_device(recipe.device)
    dtype = resolve_dtype(recipe.dtype, device)
    per_epoch = dataset_tokens(ws, recipe, load_tokenizer(recipe.model, ws))
    tokens = math.ceil(per_epoch * recipe.epochs)
    if recipe.max_steps:
        tokens = min(
            recipe.max_steps * recipe.batch_size * recipe.grad_accum * recipe.cutoff,
            max(tokens, per_epoch),
        )
    report = will_it_fit(ref.path, plan_for(recipe, device, dtype), tokens, hardware)
    report["tokens"] = tokens
    report["tokens_per_epoch"] = per_epoch
    return report
