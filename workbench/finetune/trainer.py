"""The training job: one explicit loop for LoRA, QLoRA and full fine-tuning, with resume.

    run_train(TrainRecipe(data="self-cog", out="me-lora", method="lora"), workspace=ws)

What it does, in order: resolve the base model and the dataset; render every sample with its
label mask (workbench.data.template, the same code the dataset doctor shows); load the model
(QLoRA: 4-bit nf4 through bitsandbytes) and wrap it with peft; then train with AdamW, warmup and
a cosine/linear schedule, gradient accumulation, clipping and bf16 autocast where the hardware
has it. Every step reports loss, learning rate, grad norm, tokens/s and memory to `progress`
(the job's events.jsonl, which the page charts live). Eval loss runs on the dataset's eval
split; probe prompts are answered every `probe_every` steps next to the base model's answers
(probes.jsonl in the run folder).

Checkpoints (run folder checkpoints/step-N/: trainable weights, optimizer, scheduler, RNG and
position) are written every `save_every` steps and when a cancel arrives; a resumed job (same run
folder) continues from the last one, on the same curve. At the end the result is saved as an
artifact: an adapter (LoRA/QLoRA) or a model (full), with tokenizer and chat template, and
lineage base model + dataset.

Recipes with objective dpo or orpo (preference pairs) are handed to
workbench.finetune.preference, which uses the same loading, checkpoints, progress events and
artifact saving.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from workbench.errors import InvalidInput, WorkbenchError
from workbench.finetune.batches import build_examples, make_batches
from workbench.finetune.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from workbench.finetune.preference import PREFERENCE_OBJECTIVES, check_preference_data
from workbench.progress import null_progress
from workbench.recipes import TrainRecipe, recipe_to_dict
from workbench.workspace import Workspace

PROBES_FILE = "probes.jsonl"


def run_train(
    recipe: TrainRecipe,
    *,
    workspace: Workspace | None = None,
    progress: Callable[..., None] = null_progress,
    should_stop: Callable[[], bool] = lambda: False,
    run_dir: Path | None = None,
    job_id: str = "",
    ranks: Any = None,
    **_: Any,
) -> dict:
    """Train, checkpoint, and save the result as an artifact. See the module docstring.

    With `recipe.processes` > 1 this starts the training processes and waits for them
    (workbench.finetune.distributed); each of them calls this function again with its `ranks`.
    """
    import torch

    from workbench.data.prepare import read_dataset
    from workbench.finetune.distributed import Ranks, run_launched
    from workbench.hardware import resolve_device, resolve_dtype
    from workbench.models import resolve_model

    ws = workspace or Workspace()
    ws.refuse_taken(recipe.out)
    run_dir = Path(run_dir) if run_dir else ws.root / "runs" / f"inline-{recipe.out}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ref = resolve_model(recipe.model, ws)
    if ref.path is None:
        raise WorkbenchError(
            f"The base model {recipe.model!r} is not downloaded.",
            where=recipe.model,
            fix=f"Run `workbench models prepare {recipe.model}` first.",
        )
    objective = _objective(recipe, ws)
    device = resolve_device(recipe.device)
    dtype = resolve_dtype(recipe.dtype, device)
    if objective in PREFERENCE_OBJECTIVES:  # DPO / ORPO: their own loop, same checkpoints
        from workbench.finetune.preference import run_preference

        return run_preference(
            recipe, ws=ws, ref=ref, objective=objective, device=device, dtype=dtype,
            run_dir=run_dir, progress=progress, should_stop=should_stop, job_id=job_id,
        )  # fmt: skip
    if recipe.processes > 1 and ranks is None:
        return run_launched(
            recipe,
            ws,
            progress=progress,
            should_stop=should_stop,
            run_dir=run_dir,
            gpus=torch.cuda.device_count() if device == "cuda" else 0,
            dtype=dtype,
            job_id=job_id,
        )
    ranks = ranks or Ranks()
    ranks.start()
    torch.manual_seed(recipe.seed)

    progress(message="loading the model", stage="load")
    model, tokenizer = _load_for_training(recipe, ref.path, device, dtype)
    trained_model = ranks.wrap(model)  # DDP around `model` when there are several processes
    train_samples = read_dataset(ws, recipe.data, "train")
    eval_samples = _eval_split(ws, recipe.data)
    template = recipe.chat_template or None
    progress(message="rendering the data with its label mask", stage="data")
    train, counts = build_examples(
        train_samples,
        tokenizer,
        objective=objective,
        train_on=recipe.train_on,
        cutoff=recipe.cutoff,
        chat_template=template,
    )
    held, _ = build_examples(
        eval_samples,
        tokenizer,
        objective=objective,
        train_on=recipe.train_on,
        cutoff=recipe.cutoff,
        chat_template=template,
    )
    if not train:
        raise InvalidInput(
            f"No training example is left from dataset {recipe.data!r}: {counts}.",
            where=recipe.data,
            fix="Raise the cutoff (answers may lie beyond it) or check the dataset in the doctor.",
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches_per_epoch = len(
        make_batches(
            train,
            batch_size=recipe.batch_size,
            seq_len=recipe.cutoff,
            packing=recipe.packing,
            pad_id=pad_id,
            seed=recipe.seed,
            epoch=0,
        )
    )
    # Every process takes one micro-batch in turn, so a step consumes grad_accum × processes
    # of them and an epoch only whole rounds (the tail is at most processes - 1 batches).
    per_step = recipe.grad_accum * ranks.world
    usable = batches_per_epoch - batches_per_epoch % ranks.world
    if not usable:
        raise InvalidInput(
            f"Dataset {recipe.data!r} gives {batches_per_epoch} batch(es) per epoch, fewer than "
            f"the {ranks.world} training processes.",
            where="processes",
            fix="Use fewer processes or a smaller batch_size.",
        )
    steps_per_epoch = max(1, math.ceil(usable / per_step))
    total_steps = recipe.max_steps or max(1, math.ceil(recipe.epochs * steps_per_epoch))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer_and_schedule(params, recipe, total_steps)
    state = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "seconds": 0.0}
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        progress(
            message=f"resumed from step {state['step']}", stage="resume", resumed=state["step"]
        )
    elif ranks.main:
        _write_json(run_dir / "data_counts.json", counts)

    autocast = _autocast(device, dtype, recipe.method)
    probe = _Prober(recipe, model, tokenizer, run_dir, device, dtype, ref)
    if checkpoint is None and ranks.main:
        probe.base_answers()
    progress(
        step=state["step"],
        total=total_steps,
        message=f"training {counts['examples']} examples, {counts['trained']} trained tokens",
        stage="train",
        examples=counts["examples"],
        trained_tokens=counts["trained"],
    )
    model.train()
    started = time.perf_counter() - state["seconds"]
    stopped = False
    last_eval = None
    while state["step"] < total_steps and not stopped:
        epoch_batches = make_batches(
            train,
            batch_size=recipe.batch_size,
            seq_len=recipe.cutoff,
            packing=recipe.packing,
            pad_id=pad_id,
            seed=recipe.seed,
            epoch=state["epoch"],
        )
        while state["batch"] < usable and state["step"] < total_steps:
            group = epoch_batches[state["batch"] : min(state["batch"] + per_step, usable)]
            mine = group[ranks.rank :: ranks.world]
            step_started = time.perf_counter()
            try:
                items = ranks.total(sum(b.trained for b in mine))[0] / ranks.world
                # several processes must run the same micro-batches: they stop between steps
                stop_check = (lambda: False) if ranks.active else should_stop
                done = _train_step(trained_model, mine, device, autocast, stop_check, items)
            except BaseException as exc:  # a forced stop or a crash mid-step: keep the last step
                optimizer.zero_grad(set_to_none=True)
                if state["step"] and ranks.main:
                    save_checkpoint(run_dir, model, optimizer, scheduler, state)
                if is_out_of_memory(exc):
                    raise _oom_error(recipe, f"training step {state['step'] + 1}") from exc
                raise
            if done is None:  # a cancel between micro-batches: the last full step is kept
                optimizer.zero_grad(set_to_none=True)
                stopped = True
                break
            loss, tokens = ranks.total(*done)  # each process's share of the step's mean
            loss, tokens = loss / ranks.world, int(tokens)
            grad_norm = _clip(params, recipe.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["batch"] += len(group)
            state["step"] += 1
            state["tokens"] += tokens
            state["loss"] = loss
            elapsed = time.perf_counter() - started
            state["seconds"] = elapsed
            step = state["step"]
            progress(
                step=step,
                total=total_steps,
                loss=loss,
                lr=scheduler.get_last_lr()[0],
                grad_norm=grad_norm,
                tokens=tokens,
                tokens_per_s=tokens / max(time.perf_counter() - step_started, 1e-9),
                memory_mb=_memory_mb(device),
                epoch=state["epoch"] + state["batch"] / usable,
                eta_s=elapsed / step * (total_steps - step),
            )
            # eval, probes and checkpoints: rank 0 alone, on the unwrapped model
            if recipe.eval_every and step % recipe.eval_every == 0 and held and ranks.main:
                last_eval = _evaluate(model, held, recipe, pad_id, device, autocast, progress, step)
            if recipe.probe_every and step % recipe.probe_every == 0 and ranks.main:
                probe.answers(step)
            if ranks.anyone(should_stop()):
                stopped = True
                break
            save_now = recipe.save_every and step % recipe.save_every == 0 and step < total_steps
            if save_now and ranks.main:
                save_checkpoint(run_dir, model, optimizer, scheduler, state)
        if state["batch"] >= usable:
            state["epoch"] += 1
            state["batch"] = 0
            if not recipe.eval_every and held and state["step"] < total_steps and ranks.main:
                last_eval = _evaluate(
                    model, held, recipe, pad_id, device, autocast, progress, state["step"]
                )
    if stopped:
        if ranks.main:
            save_checkpoint(run_dir, model, optimizer, scheduler, state)
        ranks.end()
        progress(message=f"stopped at step {state['step']}; resume continues from here")
        return {"stopped": True, "step": state["step"], "total_steps": total_steps}

    if held and ranks.main:
        last_eval = _evaluate(
            model, held, recipe, pad_id, device, autocast, progress, state["step"]
        )
    if (not recipe.probe_every or state["step"] % recipe.probe_every) and ranks.main:
        probe.answers(state["step"])
    metrics = {
        **_run_metrics(state, steps_per_epoch),
        "eval_loss": last_eval,
        "method": recipe.method,
        "objective": objective,
        "device": device,
        "dtype": dtype,
        "processes": ranks.world,
    }
    if ranks.main:
        progress(message=f"saving {recipe.out!r}", stage="save")
        _save_artifact(ws, recipe, model, tokenizer, ref, metrics, job_id)
    ranks.end()  # the others wait until the artifact is written
    return {"artifact": recipe.out, **metrics}


def _objective(recipe: TrainRecipe, ws: Workspace) -> str:
    manifest = ws.get(recipe.data)
    if manifest.kind != "dataset":
        raise InvalidInput(
            f"{recipe.data!r} is a {manifest.kind} artifact, not a dataset.",
            where="data",
            fix="Pick a dataset: `workbench data list` shows them.",
        )
    kind = manifest.metrics.get("data_kind", "chat")
    check_preference_data(ws, recipe.data, recipe.objective)
    if recipe.objective == "auto":
        return {"text": "cpt", "preference": "dpo"}.get(kind, "sft")
    if recipe.objective == "sft" and kind == "text":
        raise InvalidInput(
            f"Dataset {recipe.data!r} is raw text; supervised fine-tuning needs conversations.",
            where="objective",
            fix="Use objective cpt (continued pre-training) for raw text, or auto.",
        )
    return recipe.objective


def _eval_split(ws: Workspace, name: str) -> list[dict]:
    from workbench.data.prepare import read_dataset
    from workbench.errors import NotFound

    try:
        return read_dataset(ws, name, "eval")
    except NotFound:
        return []


def _load_for_training(recipe: TrainRecipe, folder: Path, device: str, dtype: str) -> tuple:
    """The model ready to train (peft-wrapped for LoRA/QLoRA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {
        "device_map": {"": device},
        "trust_remote_code": recipe.trust_remote_code,
    }
    if recipe.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    # Full fine-tuning keeps fp32 master weights (bf16 runs under autocast); LoRA's frozen base
    # may sit in bf16 to save memory, its adapters stay fp32.
    kwargs["dtype"] = torch.float32 if recipe.method == "full" else getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=recipe.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _oom_error(recipe, "loading the model") from exc
        if recipe.method == "qlora":
            raise WorkbenchError(
                f"QLoRA could not load a 4-bit model here: {type(exc).__name__}: {exc}",
                where="method qlora (bitsandbytes)",
                fix="Use method lora on this machine, or QLoRA on a CUDA GPU.",
            ) from exc
        raise
    model.config.use_cache = False  # no KV cache while training (and packing needs none)
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if device == "cuda":
        _use_gpu_kernels(model)
    if recipe.method == "full":
        return model, tokenizer
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if recipe.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=recipe.gradient_checkpointing
        )
    config = LoraConfig(
        r=recipe.lora_rank,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.target_modules(),
        use_dora=recipe.dora,
        use_rslora=recipe.rslora,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:  # e.g. a target module name that is not in the model
        raise InvalidInput(
            f"LoRA could not be attached: {exc}",
            where="lora_targets",
            fix="Use all-linear, or module names of this model such as q_proj,k_proj,v_proj,o_proj.",
        ) from None
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # adapters train in fp32 under bf16 autocast
    return model, tokenizer


def _run_metrics(state: dict, steps_per_epoch: int) -> dict:
    """What every training run reports at its end: steps, epochs, tokens, time, final loss."""
    return {
        "steps": state["step"],
        "epochs": round(state["step"] / steps_per_epoch, 3),
        "train_tokens": state["tokens"],
        "train_seconds": round(state["seconds"], 1),
        "tokens_per_s": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
        "final_loss": round(state["loss"], 5) if "loss" in state else None,
    }


def _optimizer_and_schedule(params: list, recipe: TrainRecipe, total_steps: int) -> tuple:
    """AdamW over the trainable parameters and the recipe's learning-rate schedule."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = get_scheduler(
        "constant_with_warmup" if recipe.scheduler == "constant" else recipe.scheduler,
        optimizer,
        num_warmup_steps=round(recipe.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


def _use_gpu_kernels(model: Any) -> None:
    """On a GPU, the Triton kernels of the top-level `kernels` package: fused linear +
    cross-entropy (no [tokens, vocab] logits), RMSNorm and SwiGLU, patched per module instance
    so the peft and DDP wrappers added later keep them. Where the package or triton cannot be
    imported (the repository root not on sys.path), the model stays as it is: the loss then goes
    through workbench.finetune.loss like on a CPU."""
    try:
        from kernels import patch_llama
    except ImportError:
        return
    patch_llama(model, training=True)


def _autocast(device: str, dtype: str, method: str) -> Any:
    import torch

    if dtype in ("bfloat16", "float16") or (method == "qlora" and dtype == "bfloat16"):
        return lambda: torch.autocast(device_type=device, dtype=getattr(torch, dtype))
    return nullcontext


def _train_step(
    model: Any,
    group: list,
    device: str,
    autocast: Any,
    should_stop: Callable[[], bool],
    items: float | None = None,
) -> tuple[float, int] | None:
    """Forward and backward over the micro-batches of one optimizer step.

    The loss is summed over trained tokens and divided by their count in the whole step, so
    gradient accumulation gives the same gradient as one big batch. Returns None when a stop
    was asked for between micro-batches (the step is then abandoned).
    """
    import torch

    from workbench.finetune.loss import causal_lm_loss

    if items is None:
        items = sum(b.trained for b in group)
    items = torch.tensor(float(items) if items > 0 else 1.0, device=device)
    total = 0.0
    tokens = 0
    for batch in group:
        if should_stop():
            return None
        with autocast():  # the loss on trained positions only (workbench.finetune.loss)
            loss = causal_lm_loss(model, batch, device=device, num_items=items)
        loss.backward()
        total += loss.item()
        tokens += batch.tokens
    return total, tokens


def _clip(params: list, max_norm: float) -> float:
    import torch

    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _evaluate(
    model: Any,
    held: list,
    recipe: TrainRecipe,
    pad_id: int,
    device: str,
    autocast: Any,
    progress: Callable[..., None],
    step: int,
) -> float:
    """Mean loss per trained token on the eval split."""
    import torch

    from workbench.finetune.loss import causal_lm_loss

    batches = make_batches(
        held,
        batch_size=recipe.batch_size,
        seq_len=recipe.cutoff,
        packing=recipe.packing,
        pad_id=pad_id,
        seed=0,
        epoch=0,
    )
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            items = torch.tensor(max(batch.trained, 1), device=device)
            with autocast():
                loss = causal_lm_loss(model, batch, device=device, num_items=items)
            total += loss.item() * batch.trained
            count += batch.trained
    model.train()
    value = total / max(count, 1)
    progress(step=step, eval_loss=value)
    return round(value, 5)


def _memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is running out of memory: CUDA's error, Python's, or the CPU allocator's
    (a RuntimeError "DefaultCPUAllocator: can't allocate memory")."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )


def _oom_error(recipe: TrainRecipe, during: str) -> WorkbenchError:
    return WorkbenchError(
        f"Out of memory while {during} ({recipe.method}, batch {recipe.batch_size} × "
        f"{recipe.cutoff} tokens).",
        where=f"model {recipe.model}",
        fix="Halve batch_size (raise grad_accum to keep the effective batch), turn on "
        "gradient_checkpointing, lower the cutoff, or use QLoRA. The last checkpoint is kept: "
        "resume the job after the change.",
    )


class _Prober:
    """Answers the probe prompts with the model being trained (and once with the base)."""

    def __init__(self, recipe, model, tokenizer, run_dir, device, dtype, ref) -> None:
        self.recipe, self.model, self.tokenizer = recipe, model, tokenizer
        self.path = run_dir / PROBES_FILE
        self.device, self.dtype, self.ref = device, dtype, ref

    def _answer(self, step: int, base: bool) -> None:
        if not self.recipe.probe_prompts:
            return
        from workbench.generate import GenerationSettings, build_messages, chat_once
        from workbench.models import LoadedModel

        loaded = LoadedModel(self.model, self.tokenizer, self.ref, self.device, self.dtype, 0.0)
        settings = GenerationSettings(max_new_tokens=self.recipe.probe_max_new_tokens)
        self.model.eval()
        self.model.config.use_cache = True
        disable = getattr(self.model, "disable_adapter", None)
        try:
            adapter_off = disable() if base and disable else nullcontext()
            with adapter_off, self.path.open("a", encoding="utf-8") as out:
                for prompt in self.recipe.probe_prompts:
                    result = chat_once(loaded, build_messages(prompt), settings)
                    row = {"step": step, "base": base, "prompt": prompt, "answer": result.text}
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        finally:
            self.model.config.use_cache = False
            self.model.train()

    def base_answers(self) -> None:
        self._answer(0, base=True)

    def answers(self, step: int) -> None:
        self._answer(step, base=False)


def read_probes(run_dir: Path) -> list[dict]:
    """Probe answers recorded so far: {step, base, prompt, answer} rows, oldest first."""
    path = Path(run_dir) / PROBES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _save_artifact(ws, recipe, model, tokenizer, ref, metrics, job_id) -> None:
    parents = [recipe.model if ref.origin != "folder" else "", recipe.data]
    kind = "model" if recipe.method == "full" else "adapter"
    with ws.create(
        kind,
        recipe.out,
        parents=[p for p in parents if p],
        recipe=recipe_to_dict(recipe),
        variant="finetuned" if kind == "model" else "",
        source=str(ref.path),
        job=job_id,
        metrics=metrics,
        description=recipe.description,
    ) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if recipe.chat_template:
            (staging / "chat_template.jinja").write_text(recipe.chat_template, "utf-8")
        _write_json(staging / "base_model.json", {"model": recipe.model, "path": str(ref.path)})


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), "utf-8")
