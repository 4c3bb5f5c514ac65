"""What the pages draw for preference tuning (DPO/ORPO), built without any UI: the reward curves
of a run, the job title, and the before/after preference accuracy of its result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from workbench.finetune.preference import PREFERENCE_OBJECTIVES

REWARD_COLUMNS = ("step", "reward_chosen", "reward_rejected", "reward_margin", "reward_acc")
HELDOUT_COLUMNS = ("step", "pref_acc", "pref_margin")
REWARD_CHARTS = {  # chart -> the metrics drawn together in it
    "rewards": ("reward_chosen", "reward_rejected"),
    "margin": ("reward_margin",),
    "accuracy": ("reward_acc", "pref_acc"),
}


def is_preference(recipe: Any) -> bool:
    """Whether a training recipe tunes on preference pairs (objective dpo or orpo)."""
    return getattr(recipe, "objective", "") in PREFERENCE_OBJECTIVES


def train_title(recipe: Any) -> str:
    """The job title of a training recipe: "train lora: out", "train dpo (lora): out"."""
    if is_preference(recipe):
        return f"train {recipe.objective} ({recipe.method}): {recipe.out}"
    return f"train {recipe.method}: {recipe.out}"


def _flat(event: dict) -> dict:
    values = {k: v for k, v in event.items() if k != "metrics"}
    values.update(event.get("metrics") or {})
    return values


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def preference_frame(events: Iterable[dict]) -> pd.DataFrame:
    """One row per step with the reward metrics and, where measured, the held-out accuracy.

    A step event carries the rewards (reward_chosen, reward_rejected, reward_margin, reward_acc);
    a held-out event (step 0 before training, then every eval_every steps and at the end) carries
    pref_acc and pref_margin. A step seen twice (a resumed run) keeps its latest values.
    """
    rows: dict[int, dict] = {}
    columns = list(dict.fromkeys(REWARD_COLUMNS + HELDOUT_COLUMNS))
    for event in events:
        values = _flat(event)
        step = _number(values.get("step"))
        if step is None:
            continue
        row = rows.setdefault(int(step), {name: None for name in columns} | {"step": int(step)})
        if "reward_margin" in values:
            row.update({name: _number(values.get(name)) for name in REWARD_COLUMNS[1:]})
        if "pref_acc" in values:
            row.update({name: _number(values.get(name)) for name in HELDOUT_COLUMNS[1:]})
    frame = pd.DataFrame([rows[s] for s in sorted(rows)], columns=columns)
    return pd.concat([frame["step"].astype(int), frame.drop(columns="step").astype(float)], axis=1)


def heldout_change(frame: pd.DataFrame) -> dict | None:
    """{"before", "after", "points"} of held-out preference accuracy (in %), or None."""
    measured = frame.dropna(subset=["pref_acc"]) if "pref_acc" in frame else frame.iloc[0:0]
    if len(measured) < 1:
        return None
    before = float(measured["pref_acc"].iloc[0]) * 100
    after = float(measured["pref_acc"].iloc[-1]) * 100 if len(measured) > 1 else None
    return {
        "before": round(before, 1),
        "after": None if after is None else round(after, 1),
        "points": None if after is None else round(after - before, 1),
    }
