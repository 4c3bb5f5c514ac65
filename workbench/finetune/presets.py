"""Starting points for a training recipe: a preset fills the fields a user did not set.

"classroom" presets finish in minutes on a laptop CPU with the embedded model (the
self-cognition exercise: bench/classroom.py measures it); "quality" presets are for a GPU and
real datasets. Every value can still be changed in the page or on the command line.
"""

from __future__ import annotations

from workbench.errors import InvalidInput

PRESETS: dict[str, dict] = {
    "classroom": {
        "method": "lora",
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_targets": "all-linear",
        "learning_rate": 1e-3,
        "epochs": 4.0,
        "batch_size": 8,
        "grad_accum": 1,
        "cutoff": 256,
        "warmup_ratio": 0.05,
        "scheduler": "cosine",
        "save_every": 20,
    },
    "quality": {
        "method": "lora",
        "lora_rank": 64,
        "lora_alpha": 128,
        "lora_dropout": 0.05,
        "lora_targets": "all-linear",
        "learning_rate": 2e-4,
        "epochs": 3.0,
        "batch_size": 8,
        "grad_accum": 4,
        "cutoff": 2048,
        "warmup_ratio": 0.03,
        "scheduler": "cosine",
        "gradient_checkpointing": True,
        "save_every": 200,
    },
    "qlora-classroom": {
        "method": "qlora",
        "learning_rate": 1e-3,
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "epochs": 4.0,
        "batch_size": 8,
        "cutoff": 256,
        "save_every": 20,
    },
    "qlora-quality": {
        "method": "qlora",
        "lora_rank": 64,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "learning_rate": 2e-4,
        "epochs": 3.0,
        "batch_size": 8,
        "grad_accum": 4,
        "cutoff": 2048,
        "gradient_checkpointing": True,
        "save_every": 200,
    },
    "full-classroom": {
        "method": "full",
        "learning_rate": 5e-5,
        "epochs": 3.0,
        "batch_size": 8,
        "cutoff": 256,
        "warmup_ratio": 0.05,
        "save_every": 20,
    },
    "full-quality": {
        "method": "full",
        "learning_rate": 1e-5,
        "epochs": 2.0,
        "batch_size": 8,
        "grad_accum": 8,
        "cutoff": 2048,
        "gradient_checkpointing": True,
        "weight_decay": 0.01,
        "save_every": 200,
    },
}


# Preference tuning (objective dpo or orpo) changes a few values of the same presets: it learns
# from a contrast, so fewer passes and a gentler learning rate than supervised fine-tuning
# (bench/dpo_classroom.py measures the classroom one on the embedded model).
PREFERENCE_CHANGES: dict[str, dict] = {
    "classroom": {"epochs": 1.0, "learning_rate": 5e-4},
    "qlora-classroom": {"epochs": 1.0, "learning_rate": 5e-4},
    "full-classroom": {"epochs": 1.0, "learning_rate": 1e-5},
    "quality": {"epochs": 1.0, "learning_rate": 5e-5},
    "qlora-quality": {"epochs": 1.0, "learning_rate": 5e-5},
    "full-quality": {"epochs": 1.0, "learning_rate": 1e-6},
}


def apply_preset(name: str, fields: dict) -> dict:
    """The preset's values overlaid by `fields` (what the user set), with `preset` recorded.

    With objective dpo or orpo in `fields`, PREFERENCE_CHANGES adjusts the preset first.
    """
    if name not in PRESETS:
        raise InvalidInput(
            f"Unknown preset {name!r}.",
            where="preset",
            fix=f"Use one of: {', '.join(PRESETS)}.",
        )
    preset = PRESETS[name]
    if fields.get("objective") in ("dpo", "orpo"):
        preset = {**preset, **PREFERENCE_CHANGES.get(name, {})}
    return {**preset, **fields, "preset": name}


def preset_values(name: str, objective: str = "") -> dict:
    """The values preset `name` sets for a recipe with `objective` (what the page's widgets get)."""
    values = dict(PRESETS[name])
    if objective in ("dpo", "orpo"):
        values.update(PREFERENCE_CHANGES.get(name, {}))
    return values
