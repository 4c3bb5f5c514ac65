"""Merge a LoRA adapter into its base model: a new model artifact that loads like any model.

    run_merge(MergeRecipe(adapter="me-lora", out="me-merged"), workspace=ws)

The merged model keeps the adapter's tokenizer and chat template, and its lineage names the
adapter (whose own lineage names the base model and the dataset). The weights are merged in
fp32 and saved in the base model's dtype. A base that is only available in 4-bit cannot take
the merge exactly; it is refused with the path that works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError
from workbench.progress import null_progress
from workbench.recipes import MergeRecipe, recipe_to_dict
from workbench.workspace import Workspace


def run_merge(
    recipe: MergeRecipe,
    *,
    workspace: Workspace | None = None,
    progress: Callable[..., None] = null_progress,
    job_id: str = "",
    **_: Any,
) -> dict:
    """Merge `recipe.adapter` into its base and save `recipe.out`; returns the artifact facts."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.models import adapter_base, resolve_model

    ws = workspace or Workspace()
    ws.refuse_taken(recipe.out)
    manifest = ws.get(recipe.adapter)
    if manifest.kind != "adapter":
        raise InvalidInput(
            f"{recipe.adapter!r} is a {manifest.kind} artifact, not a LoRA adapter.",
            where="adapter",
            fix="Pick an adapter: `workbench models list` shows them.",
        )
    base_name = adapter_base(manifest)
    base = resolve_model(base_name, ws)
    if base.path is None:
        raise WorkbenchError(
            f"The base model {base_name!r} of {recipe.adapter!r} is not downloaded.",
            where=base_name,
            fix=f"Run `workbench models prepare {base_name}` first.",
        )
    config = json.loads((base.path / "config.json").read_text("utf-8"))
    quant = (config.get("quantization_config") or {}).get("quant_method", "")
    if quant:
        raise WorkbenchError(
            f"The base model {base_name!r} is stored {quant}-quantized; merging into quantized "
            "weights would round the adapter away.",
            where=str(base.path),
            fix="Merge into the full-precision base model (prepare it from its original folder "
            "or hub id), then quantize the merged model.",
        )
    saved_dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    progress(message=f"loading {base_name} and {recipe.adapter}", step=1, total=3)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(ws.path_of(recipe.adapter)))
    progress(message="merging", step=2, total=3)
    merged = model.merge_and_unload()
    merged = merged.to(getattr(torch, saved_dtype, torch.float32))
    tokenizer = AutoTokenizer.from_pretrained(ws.path_of(recipe.adapter))
    progress(message=f"saving {recipe.out!r}", step=3, total=3)
    metrics = {"base": base_name, "dtype": str(saved_dtype)}
    with ws.create(
        "model",
        recipe.out,
        variant="merged",
        parents=[recipe.adapter],
        recipe=recipe_to_dict(recipe),
        source=f"{base_name} + {recipe.adapter}",
        job=job_id,
        metrics={**metrics, **_carried_metrics(manifest.metrics)},
        description=recipe.description,
    ) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return {
        "artifact": recipe.out,
        "size_mb": round(ws.size_bytes(recipe.out) / 2**20, 1),
        **metrics,
    }


def _carried_metrics(adapter_metrics: dict) -> dict:
    """Training facts worth seeing on the merged model too."""
    keep = ("eval_loss", "final_loss", "steps", "method", "objective")
    return {
        f"train_{k}" if not k.startswith("train") else k: adapter_metrics[k]
        for k in keep
        if k in adapter_metrics
    }
