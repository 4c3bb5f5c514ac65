"""`run_quantize`: the job that turns a model into a smaller one and reports the trade.

    run_quantize(QuantizeRecipe(model="default", method="int4-awq", out="default-int4"))

Steps: check the source (a full-precision model, not an adapter or an already quantized model)
and what the method needs (layout, packages, GPU, calibration data); load the source in float32;
quantize into a new model artifact (variant "quantized", parents: the source and the calibration
dataset); then, unless the recipe says not to, load both models again exactly as chat and
evaluation load them and measure them side by side (report.py). Methods are a name -> function
table; each builder writes the artifact's files into the staging folder it is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, NotFound, WorkbenchError
from workbench.progress import null_progress
from workbench.quantize.artifact import quantization_of, read_config
from workbench.recipes import QuantizeRecipe, recipe_to_dict
from workbench.workspace import Workspace

BUNDLED_CALIBRATION = "assets/data/instructions_bilingual.jsonl"
ROOT = Path(__file__).resolve().parents[2]


class _Stopped(Exception):
    """Raised inside ws.create so that a cancelled run leaves no half artifact."""


@dataclass(frozen=True)
class Method:
    """One quantization method: how to check for it, build it, and what to call its format."""

    build: Callable[..., dict]
    check: Callable[[dict], None]
    bits: int
    calibrated: bool = False
    description: str = ""


# --- checks ----------------------------------------------------------------------------------


def _check_any(config: dict) -> None:
    """Every method: the model must be a causal LM transformers knows."""


def _check_llama_layout(config: dict) -> None:
    from workbench.quantize.awq import check_supported

    check_supported(config.get("model_type", "?"))


def _check_gguf(config: dict) -> None:
    from workbench.quantize.gguf_export import check_exportable

    check_exportable(config)


def _check_bitsandbytes(config: dict) -> None:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise WorkbenchError(
            "nf4 needs the bitsandbytes package, which is not installed.",
            where="method nf4",
            fix="`pip install bitsandbytes` (CPU works too, slowly), or use int4-awq / int4-rtn, "
            "which need nothing extra.",
        )


def _check_lmdeploy(config: dict) -> None:
    from workbench.quantize.lmdeploy import check_lmdeploy

    check_lmdeploy()


# --- builders --------------------------------------------------------------------------------


def _formats(model: Any, inner: str) -> dict[str, str]:
    """Layer name -> format: every linear layer `inner`; the output layer int8 with a scale per
    32 columns (it sets the next-token choice: 4 bits, or one scale per 49k-wide vocabulary row,
    cost the most quality there — measured on SmolLM2, per-row int8 output added 0.2% perplexity)."""
    from workbench.quantize.modules import linear_names

    head = "int8-g32" if model.lm_head.in_features % 32 == 0 else "int8"
    return {n: (head if n == "lm_head" else inner) for n in linear_names(model)}


def _build_int8(model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop):
    from workbench.quantize.artifact import save_quantized
    from workbench.quantize.modules import quantize_linears

    formats = _formats(model, "int8")
    progress(message="quantizing every linear layer to int8 (per output channel)")
    quantize_linears(model, formats)
    scheme = {"method": "int8", "bits": 8, "symmetric": True, "granularity": "per output channel"}
    save_quantized(model, tokenizer, staging, {**scheme, "modules": formats})
    return {"bits": 8}


def _build_int4(model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop):
    from workbench.quantize.artifact import save_quantized
    from workbench.quantize.modules import quantize_linears

    formats = _formats(model, "int4")
    facts: dict[str, Any] = {"bits": 4, "group_size": recipe.group}
    clips = None
    if recipe.method == "int4-awq":
        from workbench.quantize.awq import awq_search

        found = awq_search(
            model,
            tokenizer,
            samples,
            group=recipe.group,
            progress=progress,
            should_stop=should_stop,
        )
        if not found:
            raise _Stopped
        clips = found["clips"]
        facts.update(
            calibration=calib_label,
            calibration_tokens=found["calibration_tokens"],
            awq_error_reduction=found["error_reduction"],
        )
    progress(message=f"quantizing to int4, groups of {recipe.group}")
    quantize_linears(model, formats, recipe.group, clips)
    scheme = {
        "method": recipe.method,
        "bits": 4,
        "group_size": recipe.group,
        "symmetric": False,
        "output_layer": formats.get("lm_head", ""),
        "activation_aware": recipe.method == "int4-awq",
        **({"calibration": calib_label} if calib_label else {}),
    }
    save_quantized(model, tokenizer, staging, {**scheme, "modules": formats})
    return facts


def _build_nf4(model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    progress(message="quantizing with bitsandbytes nf4 (load-time quantization)")
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=True,
    )
    source = model.config._name_or_path
    quantized = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=config, device_map={"": "cpu"}, dtype=torch.float32
    )
    quantized.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    return {"bits": 4, "runtime": "bitsandbytes"}


def _build_gguf(model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop):
    from workbench.quantize.gguf_export import export_gguf

    qtype = "Q8_0" if recipe.method == "gguf-q8_0" else "Q4_1"
    progress(message=f"writing a GGUF file ({qtype})")
    export_gguf(model, tokenizer, staging, qtype)
    return {"bits": 8 if qtype == "Q8_0" else 4, "gguf_type": qtype, "runtime": "llama.cpp"}


def _build_lmdeploy(model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop):
    from workbench.quantize.lmdeploy import run_auto_awq

    return run_auto_awq(Path(model.config._name_or_path), staging, recipe.group, progress)


METHODS: dict[str, Method] = {
    "int8": Method(_build_int8, _check_any, 8, description="int8 weights, one scale per row"),
    "int4-rtn": Method(_build_int4, _check_any, 4, description="int4 groups, round to nearest"),
    "int4-awq": Method(
        _build_int4, _check_llama_layout, 4, True, "int4 groups, activation-aware scales"
    ),
    "nf4": Method(_build_nf4, _check_bitsandbytes, 4, description="bitsandbytes NormalFloat4"),
    "gguf-q8_0": Method(_build_gguf, _check_gguf, 8, description="GGUF Q8_0 for llama.cpp"),
    "gguf-q4": Method(_build_gguf, _check_gguf, 4, description="GGUF Q4_1 for llama.cpp"),
    "lmdeploy-awq": Method(
        _build_lmdeploy, _check_lmdeploy, 4, description="LMDeploy lite auto_awq (GPU)"
    ),
}


# --- the source and the calibration data -----------------------------------------------------


def check_source(model: str, ws: Workspace) -> Any:
    """The ModelRef of a source that can be quantized, else a WorkbenchError saying why not."""
    from workbench.models import resolve_model

    ref = resolve_model(model, ws)
    if ref.origin == "adapter":
        raise InvalidInput(
            f"{model!r} is a LoRA adapter, not a whole model.",
            where="model",
            fix=f"Merge it first (`workbench merge --adapter {model} --out {model}-merged`), then "
            "quantize the merged model.",
        )
    if ref.path is None:
        raise NotFound(
            f"{model!r} is not downloaded.",
            where="model",
            fix=f"Run `workbench models prepare {model}` first.",
        )
    done = quantization_of(ref.path)
    variant = ref.manifest.variant if ref.manifest else ""
    if done or variant == "quantized":
        method = done.get("method") or done.get("quant_method") or "quantized"
        parents = ref.manifest.parents if ref.manifest else []
        source = f" Its source is {parents[0]!r}." if parents else ""
        raise InvalidInput(
            f"{model!r} is already quantized ({method}); quantizing it again would round "
            "rounded weights and lose quality twice.",
            where=str(ref.path),
            fix=f"Quantize the full-precision model it came from instead.{source}",
        )
    return ref


def calibration_samples(calib: str, ws: Workspace) -> tuple[list[dict], str, list[str]]:
    """(samples, label for the record, parent artifacts) of the calibration data.

    Raises:
        NotFound: `calib` names no dataset artifact (the message lists the datasets).
    """
    from workbench.data.prepare import list_datasets, read_dataset

    if not calib:
        path = ROOT / BUNDLED_CALIBRATION
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        samples = [
            {
                "messages": [
                    {"role": "user", "content": (r["instruction"] + "\n" + r["input"]).strip()},
                    {"role": "assistant", "content": r["output"]},
                ]
            }
            for r in rows
        ]
        return samples, f"bundled:{BUNDLED_CALIBRATION}", []
    if not ws.exists(calib):
        known = ", ".join(d["name"] for d in list_datasets(ws)) or "none yet"
        raise NotFound(
            f"There is no calibration dataset called {calib!r}.",
            where="calib",
            fix=f"Datasets in the workspace: {known}. Import one (`workbench data import`), or "
            "leave --calib out to use the bundled instruction set.",
        )
    return read_dataset(ws, calib), f"dataset:{calib}", [calib]


# --- the runner ------------------------------------------------------------------------------


def run_quantize(
    recipe: QuantizeRecipe,
    *,
    workspace: Workspace | None = None,
    progress: Callable[..., None] = null_progress,
    should_stop: Callable[[], bool] = lambda: False,
    run_dir: Path | str | None = None,
    job_id: str = "",
) -> dict:
    """Quantize `recipe.model` into artifact `recipe.out`; returns sizes and, with `report`,
    perplexity, decode speed and side-by-side answers of source and result.

    Raises:
        WorkbenchError: an unknown or taken name, an adapter or already quantized source, a
            method the model's layout or this machine does not support, missing calibration
            data, a missing package.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws = workspace or Workspace()
    method = METHODS[recipe.method]
    ws.refuse_taken(recipe.out)
    ref = check_source(recipe.model, ws)
    method.check(read_config(ref.path))
    samples, calib_label, calib_parents = (
        calibration_samples(recipe.calib, ws) if method.calibrated else ([], "", [])
    )
    if should_stop():
        return {"artifact": "", "stopped": True}
    progress(step=0, total=3, message=f"loading {recipe.model} in float32")
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32).eval()
    model.config._name_or_path = str(ref.path)
    parents = ([ref.name] if ref.origin in ("artifact", "embedded") else []) + calib_parents
    facts: dict[str, Any] = {}
    try:
        with ws.create(
            "model",
            recipe.out,
            variant="quantized",
            parents=parents,
            recipe=recipe_to_dict(recipe),
            source=str(ref.path) if ref.origin == "folder" else ref.name,
            job=job_id,
            metrics={"method": recipe.method},
            description=recipe.description or f"{recipe.model}, {method.description}",
        ) as staging:
            progress(step=1, total=3, message=f"quantizing: {method.description}")
            facts = method.build(
                model, tokenizer, staging, recipe, samples, calib_label, progress, should_stop
            )
            if should_stop():
                raise _Stopped
    except _Stopped:
        return {"artifact": "", "stopped": True}
    del model
    out_dir = ws.path_of(recipe.out)
    from workbench.quantize.report import weight_bytes

    result: dict[str, Any] = {
        "artifact": recipe.out,
        "path": str(out_dir),
        "method": recipe.method,
        "source": recipe.model,
        **facts,
        "size_bytes": weight_bytes(out_dir),
        "source_size_bytes": weight_bytes(ref.path),
    }
    result["size_ratio"] = round(result["size_bytes"] / max(result["source_size_bytes"], 1), 4)
    if recipe.report and not should_stop():
        from workbench.quantize.report import compare_models

        progress(step=2, total=3, message="measuring both models")
        result.update(
            compare_models(
                recipe.model,
                recipe.out,
                ws,
                ppl_tokens=recipe.ppl_tokens,
                speed_tokens=recipe.speed_tokens,
                progress=progress,
                should_stop=should_stop,
            )
        )
    keep = ("method", "bits", "group_size", "calibration", "size_bytes", "source_size_bytes")
    keep += ("ppl", "source_ppl", "ppl_change", "tokens_per_s", "source_tokens_per_s", "speedup")
    ws.update_metrics(recipe.out, {k: result[k] for k in keep if k in result})
    if run_dir is not None:
        path = Path(run_dir) / "report.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), "utf-8")
    progress(step=3, total=3, message=f"{recipe.out!r} is ready")
    return result
