"""Training checkpoints in the run folder, so a cancelled or crashed job resumes where it was.

    runs/<job>/checkpoints/step-00040/
        trainable.safetensors   the weights being trained (LoRA adapters, or all weights)
        optimizer.pt            AdamW state
        scheduler.pt            learning-rate schedule position
        state.json              step, epoch, batch within the epoch, tokens, seconds
        rng.pt                  torch RNG state (dropout continues the same way)

A checkpoint is written into a temporary folder and renamed into place, so a crash while
writing leaves the previous one usable. Only the newest KEEP checkpoints are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
KEEP = 2


def _trainable_state(model: Any) -> dict:
    return {
        name: param.detach().contiguous().cpu()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_checkpoint(run_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: dict) -> Path:
    """Write checkpoint step-N for `state["step"]` and prune older ones; returns its folder."""
    import torch
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']:05d}"
    partial = root / f".partial-{state['step']:05d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(_trainable_state(model), partial / "trainable.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(scheduler.state_dict(), partial / "scheduler.pt")
    torch.save(torch.get_rng_state(), partial / "rng.pt")
    (partial / "state.json").write_text(json.dumps(state, indent=2), "utf-8")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    root = Path(run_dir) / CHECKPOINTS
    done = [p for p in sorted(root.glob("step-*")) if (p / "state.json").is_file()]
    return done[-1] if done else None


def load_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> dict:
    """Restore weights, optimizer, schedule and RNG from `folder`; returns the saved state."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(folder / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        from workbench.errors import WorkbenchError

        raise WorkbenchError(
            f"The checkpoint does not match this model (unknown weights such as {missing[0]!r}).",
            where=str(folder),
            fix="The recipe changed since the checkpoint was written; start a new job instead.",
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text("utf-8"))
