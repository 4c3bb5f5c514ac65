"""Recipes: one dataclass per kind of job, with YAML round-trip and checks that name the bad field.

A recipe is everything needed to replay a job: the UI builds one from its widgets, the CLI builds
one from flags or reads it from YAML (`workbench run recipe.yaml`), and the job worker runs it.

    kind: generate
    model: default
    prompts: ["What is the capital of France?"]

Each recipe class names its runner as "module:function"; the function has the signature
`run(recipe, *, progress, should_stop) -> dict` (see jobs.py) and is imported only when a job runs.
Later features add their recipe classes here with `@register`.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from workbench.data.formats import DEFAULT_MAX_ROW_CHARS, FORMATS
from workbench.errors import InvalidInput
from workbench.workspace import validate_name

RECIPES: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a recipe dataclass known by its `kind`."""
    RECIPES[cls.kind] = cls
    return cls


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


def check(ok: bool, recipe: Any, name: str, message: str, fix: str = "") -> None:
    """Raise InvalidInput about field `name` of `recipe` unless `ok`."""
    if not ok:
        raise InvalidInput(
            f"Field {name!r} of the {recipe.kind!r} recipe {message}.",
            where=f"recipe field {name!r}",
            fix=fix or field_help(type(recipe), name),
        )


DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@register
@dataclass
class PrepareModelRecipe:
    """Bring a model into the workspace as a base model artifact (convert, download or copy)."""

    kind: ClassVar[str] = "prepare_model"
    runner: ClassVar[str] = "workbench.models:run_prepare_model"

    model: str = _help(
        "What to prepare: 'default' (the embedded SmolLM2), a local Hugging Face model folder, "
        "or a hub id such as 'HuggingFaceTB/SmolLM2-360M-Instruct'."
    )
    name: str = _help(
        "Name of the new model artifact; derived from `model` when empty.", default=""
    )
    hub: str = _help(
        "Where hub ids come from: huggingface (HF_ENDPOINT mirrors respected) or modelscope.",
        default="huggingface",
    )
    revision: str = _help(
        "Hub revision (branch, tag or commit); empty for the default.", default=""
    )
    trust_remote_code: bool = _help(
        "Run the model's own Python code from its folder (InternLM2 needs it). Only for models you "
        "trust.",
        default=False,
    )

    def __post_init__(self) -> None:
        check(bool(self.model.strip()), self, "model", "is empty")
        check(
            self.hub in ("huggingface", "modelscope"),
            self,
            "hub",
            f"is {self.hub!r}",
            "Use 'huggingface' or 'modelscope'.",
        )

    def resource(self) -> str:
        return "cpu"

    def uses(self) -> list[str]:
        return []


@register
@dataclass
class GenerateRecipe:
    """Answer a list of prompts with a model; the answers go to outputs.jsonl in the run folder."""

    kind: ClassVar[str] = "generate"
    runner: ClassVar[str] = "workbench.generate:run_generate"

    model: str = _help(
        "Model name: 'default', a workspace artifact, a local folder or a hub id.",
        default="default",
    )
    prompts: list[str] = _help("The user messages to answer, one chat each.", default_factory=list)
    system: str = _help("System prompt; empty keeps the model's own default.", default="")
    max_new_tokens: int = _help("Most tokens to generate per answer.", default=128)
    temperature: float = _help(
        "0 for greedy (repeatable) decoding; higher is more varied.", default=0.0
    )
    top_p: float = _help(
        "Nucleus sampling: keep the smallest set of tokens with this much "
        "probability (used when temperature > 0).",
        default=1.0,
    )
    seed: int = _help("Random seed for sampling.", default=0)
    device: str = _help("auto, cpu or cuda.", default="auto")
    dtype: str = _help("auto, float32, bfloat16 or float16.", default="auto")
    trust_remote_code: bool = _help(
        "Run the model's own Python code (only for trusted models).", default=False
    )

    def __post_init__(self) -> None:
        check(bool(self.model.strip()), self, "model", "is empty")
        check(len(self.prompts) > 0, self, "prompts", "is empty", "Give at least one prompt.")
        check(
            1 <= self.max_new_tokens <= 32768,
            self,
            "max_new_tokens",
            f"is {self.max_new_tokens}; it must be between 1 and 32768",
        )
        check(
            0.0 <= self.temperature <= 5.0,
            self,
            "temperature",
            f"is {self.temperature}; it must be between 0 and 5",
        )
        check(0.0 < self.top_p <= 1.0, self, "top_p", f"is {self.top_p}; it must be in (0, 1]")
        check(
            self.device in DEVICES,
            self,
            "device",
            f"is {self.device!r}",
            f"Use one of: {', '.join(DEVICES)}.",
        )
        check(
            self.dtype in DTYPES,
            self,
            "dtype",
            f"is {self.dtype!r}",
            f"Use one of: {', '.join(DTYPES)}.",
        )

    def resource(self) -> str:
        from workbench.hardware import resolve_device  # torch is imported only when needed

        return "gpu" if resolve_device(self.device) == "cuda" else "cpu"

    def uses(self) -> list[str]:
        return [self.model]


DEDUPE_MODES = ("none", "exact", "near")
OVERLONG_MODES = ("keep", "drop", "clip")


@register
@dataclass
class ImportDataRecipe:
    """Read a data file, check every row, clean and split it, and save a dataset artifact."""

    kind: ClassVar[str] = "import_data"
    runner: ClassVar[str] = "workbench.data.prepare:run_import_data"

    source: str = _help(
        "The data: a JSONL/JSON/CSV/Parquet/text file, a `datasets` folder or hub id."
    )
    name: str = _help("Name of the new dataset artifact.")
    format: str = _help(
        "alpaca, sharegpt, openai, xtuner or text; empty detects it from the rows.", default=""
    )
    encoding: str = _help("Text encoding of the file (gb18030 for GBK Chinese).", default="utf-8")
    dedupe: str = _help(
        "Drop repeated samples: none, exact (same text after normalising case and spaces), or "
        "near (also near copies, MinHash).",
        default="exact",
    )
    model: str = _help(
        "Model whose tokenizer and chat template measure length (needed when cutoff > 0).",
        default="default",
    )
    cutoff: int = _help(
        "Token limit per sample for `overlong`; 0 turns length checks off.", default=0
    )
    overlong: str = _help(
        "What to do with samples over the cutoff: keep (training truncates them), drop, or clip "
        "(conversations lose their last turns, raw text is split into pieces that fit).",
        default="keep",
    )
    eval_fraction: float = _help(
        "Share of samples held out for evaluation (0 to 0.5).", default=0.05
    )
    seed: int = _help("Seed of the train/eval shuffle.", default=0)
    max_row_chars: int = _help(
        "Rows longer than this many characters are rejected.", default=DEFAULT_MAX_ROW_CHARS
    )
    description: str = _help("Free text shown with the dataset.", default="")

    def __post_init__(self) -> None:
        check(bool(self.source.strip()), self, "source", "is empty")
        validate_name(self.name, "dataset name")
        check(
            not self.format or self.format in FORMATS,
            self,
            "format",
            f"is {self.format!r}",
            f"Use one of: {', '.join(FORMATS)}, or leave it empty.",
        )
        check(
            self.dedupe in DEDUPE_MODES,
            self,
            "dedupe",
            f"is {self.dedupe!r}",
            f"Use {DEDUPE_MODES}.",
        )
        check(
            self.overlong in OVERLONG_MODES,
            self,
            "overlong",
            f"is {self.overlong!r}",
            f"Use {OVERLONG_MODES}.",
        )
        check(0 <= self.cutoff <= 1_048_576, self, "cutoff", f"is {self.cutoff}; use 0 to 1048576")
        check(
            self.overlong == "keep" or self.cutoff > 0,
            self,
            "cutoff",
            f"is 0, but overlong is {self.overlong!r}",
            "Set a cutoff in tokens (e.g. 2048), or keep over-long samples.",
        )
        check(
            0 <= self.eval_fraction <= 0.5,
            self,
            "eval_fraction",
            f"is {self.eval_fraction}; it must be between 0 and 0.5",
        )
        check(self.max_row_chars > 0, self, "max_row_chars", "must be positive")

    def resource(self) -> str:
        return "cpu"

    def uses(self) -> list[str]:
        return [self.model] if self.cutoff > 0 and self.model else []


TRAIN_METHODS = ("lora", "qlora", "full")
TRAIN_OBJECTIVES = ("auto", "sft", "cpt", "dpo", "orpo")
TRAIN_ON_CHOICES = ("assistant", "last", "all")
SCHEDULERS = ("cosine", "linear", "constant")


@register
@dataclass
class TrainRecipe:
    """Fine-tune a model on a dataset artifact: LoRA, QLoRA or full weights.

    Supervised fine-tuning (sft) learns from conversations, with the loss on the assistant's
    answers; continued pre-training (cpt) learns from raw text, with the loss on every token;
    preference tuning (dpo, orpo) learns from pairs of a chosen and a rejected answer
    (workbench.finetune.preference).
    """

    kind: ClassVar[str] = "train"
    runner: ClassVar[str] = "workbench.finetune.trainer:run_train"

    data: str = _help("Dataset artifact to train on (its eval split gives the eval loss).")
    out: str = _help("Name of the new artifact: an adapter (LoRA, QLoRA) or a model (full).")
    model: str = _help(
        "Base model: 'default', a model artifact or a local folder.", default="default"
    )
    method: str = _help("lora, qlora (4-bit base, needs bitsandbytes) or full.", default="lora")
    objective: str = _help(
        "sft (conversations), cpt (raw text, continued pre-training), dpo or orpo (preference "
        "pairs), or auto (from the data: pairs give dpo).",
        default="auto",
    )
    beta: float = _help(
        "Preference tuning: DPO's beta (how far the model may move from the starting model; "
        "lower moves further) or ORPO's lambda (weight of the odds-ratio term).",
        default=0.1,
    )
    train_on: str = _help(
        "Which tokens count in the loss for conversations: assistant (every answer), last (the "
        "last answer) or all.",
        default="assistant",
    )
    chat_template: str = _help(
        "A Jinja chat template to use instead of the model's own.", default=""
    )
    cutoff: int = _help("Most tokens per sample; longer samples are cut (cpt: split).", default=512)
    packing: bool = _help(
        "Pack several samples into one row so that no compute goes to padding.", default=True
    )
    epochs: float = _help("Passes over the training split.", default=3.0)
    max_steps: int = _help("Stop after this many optimizer steps (0: from epochs).", default=0)
    batch_size: int = _help("Rows per forward pass.", default=4)
    grad_accum: int = _help("Forward passes per optimizer step.", default=1)
    learning_rate: float = _help("Peak learning rate.", default=2e-4)
    scheduler: str = _help("cosine, linear or constant, after the warmup.", default="cosine")
    warmup_ratio: float = _help(
        "Share of the steps spent warming up the learning rate.", default=0.03
    )
    weight_decay: float = _help("AdamW weight decay.", default=0.0)
    max_grad_norm: float = _help("Clip the gradient norm to this (0: no clipping).", default=1.0)
    seed: int = _help("Seed of initialisation and data order.", default=0)
    lora_rank: int = _help("LoRA rank r.", default=8)
    lora_alpha: int = _help(
        "LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).", default=16
    )
    lora_dropout: float = _help("Dropout on the LoRA input.", default=0.05)
    lora_targets: str = _help(
        "Modules that get adapters: all-linear, or names such as q_proj,v_proj.",
        default="all-linear",
    )
    dora: bool = _help("Weight-decomposed LoRA (DoRA).", default=False)
    rslora: bool = _help("Rank-stabilised LoRA scaling.", default=False)
    gradient_checkpointing: bool = _help(
        "Recompute activations in the backward pass: less memory, about 30% slower.", default=False
    )
    device: str = _help("auto, cpu or cuda.", default="auto")
    processes: int = _help(
        "Training processes, one per GPU; more than 1 trains data parallel (DDP) through "
        "accelerate, each process on its share of every step's batches.",
        default=1,
    )
    dtype: str = _help(
        "auto (bf16 where the hardware supports it, else fp32), float32, bfloat16 or float16.",
        default="auto",
    )
    eval_every: int = _help("Eval loss every N steps (0: at the end of each epoch).", default=0)
    save_every: int = _help("Checkpoint every N steps (a cancel also saves one).", default=50)
    probe_prompts: list[str] = _help(
        "Questions answered every probe_every steps, shown next to the base model's answers.",
        default_factory=list,
    )
    probe_every: int = _help(
        "Answer the probe prompts every N steps (0: only at the end).", default=0
    )
    probe_max_new_tokens: int = _help("Most tokens per probe answer.", default=48)
    preset: str = _help("The preset this recipe started from (for the record).", default="")
    trust_remote_code: bool = _help(
        "Run the model's own code (only for trusted models).", default=False
    )
    description: str = _help("Free text shown with the artifact.", default="")

    def __post_init__(self) -> None:
        check(bool(self.data.strip()), self, "data", "is empty", "Name a dataset artifact.")
        validate_name(self.out, "output name")
        check(bool(self.model.strip()), self, "model", "is empty")
        for name, allowed in (
            ("method", TRAIN_METHODS),
            ("objective", TRAIN_OBJECTIVES),
            ("train_on", TRAIN_ON_CHOICES),
            ("scheduler", SCHEDULERS),
            ("device", DEVICES),
            ("dtype", DTYPES),
        ):
            value = getattr(self, name)
            check(
                value in allowed, self, name, f"is {value!r}", f"Use one of: {', '.join(allowed)}."
            )
        check(16 <= self.cutoff <= 131072, self, "cutoff", f"is {self.cutoff}; use 16 to 131072")
        check(self.epochs > 0 or self.max_steps > 0, self, "epochs", "and max_steps are both 0")
        check(self.max_steps >= 0, self, "max_steps", "is negative")
        names = ("batch_size", "grad_accum", "lora_rank", "lora_alpha", "probe_max_new_tokens")
        for name in (*names, "processes"):
            check(
                getattr(self, name) >= 1, self, name, f"is {getattr(self, name)}; it must be >= 1"
            )
        check(0 < self.learning_rate <= 1.0, self, "learning_rate", f"is {self.learning_rate}")
        check(
            0 <= self.warmup_ratio < 1, self, "warmup_ratio", f"is {self.warmup_ratio}; use 0 to <1"
        )
        check(0 <= self.lora_dropout < 1, self, "lora_dropout", f"is {self.lora_dropout}")
        for name in ("eval_every", "save_every", "probe_every"):
            check(getattr(self, name) >= 0, self, name, "is negative")
        check(self.max_grad_norm >= 0, self, "max_grad_norm", "is negative")
        check(0 < self.beta <= 10, self, "beta", f"is {self.beta}; use a value in (0, 10]")

    def resource(self) -> str:
        from workbench.hardware import resolve_device

        return "gpu" if resolve_device(self.device) == "cuda" else "cpu"

    def uses(self) -> list[str]:
        return [self.model, self.data]

    def target_modules(self) -> str | list[str]:
        """lora_targets as peft wants it: "all-linear" or a list of module names."""
        if self.lora_targets.strip() == "all-linear":
            return "all-linear"
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]


@register
@dataclass
class MergeRecipe:
    """Merge a LoRA adapter into its base model, giving a new model artifact."""

    kind: ClassVar[str] = "merge"
    runner: ClassVar[str] = "workbench.finetune.merge:run_merge"

    adapter: str = _help("The adapter artifact to merge.")
    out: str = _help("Name of the merged model artifact.")
    description: str = _help("Free text shown with the artifact.", default="")

    def __post_init__(self) -> None:
        check(bool(self.adapter.strip()), self, "adapter", "is empty", "Name an adapter artifact.")
        validate_name(self.out, "output name")

    def resource(self) -> str:
        return "cpu"

    def uses(self) -> list[str]:
        return [self.adapter]


@register
@dataclass
class EvalRecipe:
    """Evaluate models on tasks; the scores become an eval artifact linked to the models."""

    kind: ClassVar[str] = "eval"
    runner: ClassVar[str] = "workbench.evaluate.runner:run_eval"

    models: list[str] = _help(
        "Models to compare: 'default', workspace models or adapters, folders, or remote "
        "'openai:URL#model'. The first is the baseline of judge tasks."
    )
    tasks: list[str] = _help(
        "Bundled task or suite names (`workbench eval --list`) and task files (.jsonl/.csv/.yaml)."
    )
    limit: int = _help("Use only the first N samples of each task (0: all).", default=0)
    batch_size: int = _help("Continuations scored per forward pass.", default=32)
    judge: str = _help("Model that judges pairwise answers (judge tasks).", default="")
    identity_name: str = _help(
        "Name the model should give itself (identity tasks); empty: read from the lineage.",
        default="",
    )
    identity_author: str = _help("Author the model should name (identity tasks).", default="")
    name: str = _help("Name of the eval artifact; empty: eval-<time>.", default="")
    seed: int = _help("Seed of the bootstrap confidence intervals.", default=0)
    device: str = _help("auto, cpu or cuda (local models).", default="auto")
    dtype: str = _help("auto, float32, bfloat16 or float16 (local models).", default="auto")
    description: str = _help("Free text shown with the results.", default="")

    def __post_init__(self) -> None:
        self.models = [m.strip() for m in self.models if m.strip()]
        self.tasks = [t.strip() for t in self.tasks if t.strip()]
        check(bool(self.models), self, "models", "is empty", "Name at least one model.")
        check(len(set(self.models)) == len(self.models), self, "models", "names a model twice")
        check(bool(self.tasks), self, "tasks", "is empty", "Name at least one task or suite.")
        check(self.limit >= 0, self, "limit", f"is {self.limit}; use 0 (all) or more")
        check(1 <= self.batch_size <= 4096, self, "batch_size", f"is {self.batch_size}")
        if self.name:
            validate_name(self.name, "eval name")
        for name, allowed in (("device", DEVICES), ("dtype", DTYPES)):
            value = getattr(self, name)
            check(
                value in allowed, self, name, f"is {value!r}", f"Use one of: {', '.join(allowed)}."
            )

    def resource(self) -> str:
        from workbench.hardware import resolve_device

        return "gpu" if resolve_device(self.device) == "cuda" else "cpu"

    def uses(self) -> list[str]:
        return [m for m in [*self.models, self.judge] if m and ":" not in m]


SERVE_BACKENDS = ("local", "lmdeploy")
WEIGHT_FORMATS = ("auto", "model", "bfloat16", "int8", "int4")


@register
@dataclass
class ServeRecipe:
    """Serve a model over an OpenAI-compatible HTTP API until cancelled (server.py)."""

    kind: ClassVar[str] = "serve"
    runner: ClassVar[str] = "workbench.server:run_serve"

    model: str = _help("Model to serve: 'default', a workspace model or a local folder.")
    host: str = _help(
        "Address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (the network).",
        default="127.0.0.1",
    )
    port: int = _help("TCP port (0 picks a free one).", default=8000)
    api_key: str = _help("Clients must send this key (empty: no key needed).", default="")
    backend: str = _help(
        "local (Workbench's engine) or lmdeploy (LMDeploy's server, GPU only).", default="local"
    )
    gradio: bool = _help("Also serve a Gradio chat demo at /demo.", default=False)
    weights: str = _help(
        "Local engine weights: auto, model, bfloat16, int8 or int4 (CPU).", default="auto"
    )
    slots: int = _help("Requests decoded together; more wait in line.", default=8)
    max_len: int = _help("Tokens per request, prompt and answer (0: up to 4096).", default=0)
    device: str = _help("auto, cpu or cuda.", default="auto")
    dtype: str = _help("auto, float32, bfloat16 or float16.", default="auto")
    trust_remote_code: bool = _help(
        "Run the model's own Python code (only for trusted models).", default=False
    )

    def __post_init__(self) -> None:
        check(bool(self.model.strip()), self, "model", "is empty")
        check(bool(self.host.strip()), self, "host", "is empty", "Use 127.0.0.1.")
        check(0 <= self.port <= 65535, self, "port", f"is {self.port}", "Use 1024 to 65535.")
        for name, allowed in (
            ("backend", SERVE_BACKENDS),
            ("weights", WEIGHT_FORMATS),
            ("device", DEVICES),
            ("dtype", DTYPES),
        ):
            value = getattr(self, name)
            check(
                value in allowed, self, name, f"is {value!r}", f"Use one of: {', '.join(allowed)}."
            )
        check(1 <= self.slots <= 256, self, "slots", f"is {self.slots}", "Use 1 to 256.")
        check(self.max_len >= 0, self, "max_len", "is negative", "Use 0 for the default.")

    def resource(self) -> str:
        from workbench.hardware import resolve_device

        if self.backend == "lmdeploy":
            return "gpu"
        return "gpu" if resolve_device(self.device) == "cuda" else "cpu"

    def uses(self) -> list[str]:
        return [self.model]


QUANT_METHODS = ("int8", "int4-rtn", "int4-awq", "nf4", "gguf-q8_0", "gguf-q4", "lmdeploy-awq")
QUANT_GROUPS = (32, 64, 128, 256)


@register
@dataclass
class QuantizeRecipe:
    """Quantize a model into a new, smaller model artifact, and report what it cost and bought."""

    kind: ClassVar[str] = "quantize"
    runner: ClassVar[str] = "workbench.quantize.runner:run_quantize"

    out: str = _help("Name of the quantized model artifact.")
    model: str = _help(
        "Source model: 'default', a model artifact (base, merged) or a local folder.",
        default="default",
    )
    method: str = _help(
        "int8 (per channel), int4-rtn (round to nearest), int4-awq (activation-aware, "
        "calibrated), nf4 (bitsandbytes), gguf-q8_0 / gguf-q4 (GGUF files for llama.cpp and "
        "Ollama), lmdeploy-awq (LMDeploy's lite auto_awq, NVIDIA GPU only).",
        default="int8",
    )
    group: int = _help("int4 group size: 32, 64, 128 or 256 input columns a scale.", default=128)
    calib: str = _help(
        "Dataset artifact for calibration (int4-awq); empty uses the bundled instruction set.",
        default="",
    )
    report: bool = _help(
        "Measure perplexity, decode speed and answers of both models after quantizing.",
        default=True,
    )
    ppl_tokens: int = _help(
        "Held-out tokens per language for perplexity (0: the whole bundled text).", default=2048
    )
    speed_tokens: int = _help(
        "Tokens decoded per speed round (3 rounds a model, alternating).", default=32
    )
    description: str = _help("Free text shown with the artifact.", default="")

    def __post_init__(self) -> None:
        validate_name(self.out, "output name")
        check(bool(self.model.strip()), self, "model", "is empty")
        close = difflib.get_close_matches(self.method, QUANT_METHODS, n=1)
        check(
            self.method in QUANT_METHODS,
            self,
            "method",
            f"is {self.method!r}",
            (f"Did you mean {close[0]!r}? " if close else "")
            + f"Use one of: {', '.join(QUANT_METHODS)}.",
        )
        check(
            self.group in QUANT_GROUPS,
            self,
            "group",
            f"is {self.group}: int4 kernels take groups of 32, 64, 128 or 256 columns",
            "Use 128 (the usual choice), or 32/64 for better quality at a slightly larger size.",
        )
        check(self.ppl_tokens >= 0, self, "ppl_tokens", "is negative")
        check(self.speed_tokens >= 1, self, "speed_tokens", "must be at least 1")

    def resource(self) -> str:
        return "gpu" if self.method == "lmdeploy-awq" else "cpu"

    def uses(self) -> list[str]:
        return [self.model] + ([self.calib] if self.calib else [])


# --- conversion ------------------------------------------------------------------------------


def field_help(cls: type, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    return ""


def recipe_to_dict(recipe: Any) -> dict:
    """The recipe as a plain dict with `kind` first (what YAML and manifests store)."""
    return {"kind": recipe.kind, **asdict(recipe)}


def dump_recipe(recipe: Any) -> str:
    """The recipe as YAML text."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True)


def save_recipe(recipe: Any, path: str | Path) -> None:
    Path(path).write_text(dump_recipe(recipe), "utf-8")


def recipe_from_dict(data: Any, where: str = "recipe") -> Any:
    """Build and check a recipe from a dict (parsed YAML or JSON).

    Raises:
        InvalidInput: missing or unknown kind, unknown field (with a did-you-mean), a value of
            the wrong type, or a value the recipe's own checks refuse.
    """
    if not isinstance(data, dict):
        raise InvalidInput(
            f"A recipe must be a mapping of fields, got {type(data).__name__}.",
            where=where,
            fix="Start the file with a line like `kind: generate`, then one `field: value` a line.",
        )
    kind = data.get("kind")
    if kind not in RECIPES:
        raise InvalidInput(
            f"Unknown recipe kind {kind!r}." if kind else "The recipe has no `kind` field.",
            where=f"{where}: field 'kind'",
            fix=f"Set `kind:` to one of: {', '.join(sorted(RECIPES))}.",
        )
    cls = RECIPES[kind]
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    values = {}
    for key, value in data.items():
        if key == "kind":
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise InvalidInput(
                f"Unknown field {key!r} in a {kind!r} recipe.",
                where=f"{where}: field {key!r}",
                fix=f"{hint}Known fields: {', '.join(known)}.",
            )
        values[key] = _coerce(value, hints[key], f"{where}: field {key!r}", field_help(cls, key))
    try:
        return cls(**values)
    except InvalidInput as exc:
        exc.where = f"{where}: {exc.where}" if exc.where else where
        raise


def load_recipe(path: str | Path) -> Any:
    """Read and check a recipe YAML file. Raises InvalidInput naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"Recipe file {str(path)!r} does not exist.",
            where=str(path),
            fix="Check the path; `workbench run` takes a YAML recipe file.",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"Cannot read recipe file {str(path)!r}: {exc}.",
            where=str(path),
            fix="Save it as UTF-8 text.",
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            f"The recipe is not valid YAML: {problem}.",
            where=at,
            fix="Fix the YAML at that line (indentation, quotes, colons).",
        ) from exc
    return recipe_from_dict(data, where=str(path))


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a mapping",
}
_PLURAL_NAMES = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}


def _coerce(value: Any, hint: Any, where: str, help_text: str) -> Any:
    """Check `value` against the type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is list:
        (item_type,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list):
            raise _wrong_type(
                value, f"a list of {_PLURAL_NAMES.get(item_type, 'values')}", where, help_text
            )
        return [_coerce(v, item_type, f"{where}[{i}]", help_text) for i, v in enumerate(value)]
    if hint is Any:
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _wrong_type(value, "a mapping", where, help_text)
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise _wrong_type(value, "an integer", where, help_text)
    if not isinstance(value, hint):
        raise _wrong_type(value, _TYPE_NAMES.get(hint, hint.__name__), where, help_text)
    return value


def _wrong_type(value: Any, expected: str, where: str, help_text: str) -> InvalidInput:
    return InvalidInput(
        f"Expected {expected}, got {value!r} ({type(value).__name__}).",
        where=where,
        fix=help_text or f"Write {expected} here.",
    )
