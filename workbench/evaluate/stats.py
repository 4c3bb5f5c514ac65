"""Bootstrap confidence intervals, so a difference of two points on 50 questions is not over-read.

Percentile bootstrap with a fixed seed (the same results always give the same interval):
resample the per-sample scores with replacement, recompute the metric, take the 2.5th and 97.5th
percentiles. `paired_difference` resamples the same questions for two models at once, which is
the right test for "is model A better than model B on this task".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


@dataclass
class Estimate:
    """A metric with its bootstrap interval over `n` samples (low == high == value when n < 2)."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _bounds(stats: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))


def mean_ci(values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """The mean of `values` with a percentile-bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(data.mean())
    if data.size < 2:
        return Estimate(value, value, value, int(data.size))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    low, high = _bounds(data[picks].mean(axis=1))
    return Estimate(value, low, high, int(data.size))


def ratio_ci(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Estimate:
    """sum(numerators) / sum(denominators) (e.g. nats per byte over a corpus) with an interval."""
    top, bottom = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if top.size == 0 or bottom.sum() <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"), int(top.size))
    value = float(top.sum() / bottom.sum())
    if top.size < 2:
        return Estimate(value, value, value, int(top.size))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, top.size, size=(resamples, top.size))
    low, high = _bounds(top[picks].sum(axis=1) / np.maximum(bottom[picks].sum(axis=1), 1e-12))
    return Estimate(value, low, high, int(top.size))


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES
) -> Estimate:
    """mean(a - b) over the same samples, with an interval; 0 inside it means "not shown"."""
    left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if left.shape != right.shape:
        raise ValueError("paired_difference needs the scores of the same samples for both models")
    return mean_ci(left - right, seed=seed, resamples=resamples)
