"""Preference tuning (DPO/ORPO) as the pages and the CLI name it: is a recipe one, and its job
title. (Its reward and held-out accuracy curves are columns of view.train_events_frame.)"""

from __future__ import annotations

from typing import Any

from workbench.finetune.preference import PREFERENCE_OBJECTIVES


def is_preference(recipe: Any) -> bool:
    """Whether a training recipe tunes on preference pairs (objective dpo or orpo)."""
    return getattr(recipe, "objective", "") in PREFERENCE_OBJECTIVES


def train_title(recipe: Any) -> str:
    """The job title of a training recipe: "train lora: out", "train dpo (lora): out"."""
    if is_preference(recipe):
        return f"train {recipe.objective} ({recipe.method}): {recipe.out}"
    return f"train {recipe.method}: {recipe.out}"
