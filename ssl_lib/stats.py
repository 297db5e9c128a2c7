"""Uncertainty: percentile bootstrap over test examples, and the few-shot episode CI."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["bootstrap_ci", "normal_ci"]


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(y_true, scores)`` resampling test examples.

    It measures the uncertainty due to the finite test set (not to the choice of C, which is
    fixed). Returns ``(nan, nan)`` when ``n_boot`` is 0.
    """
    if n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    values = np.array([metric(y_true[idx], scores[idx]) for idx in rng.integers(0, n, size=(n_boot, n))])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def normal_ci(values: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and mean ± z·std/√n (the paper's few-shot interval); ``std`` is the population std."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    half = z * float(values.std()) / np.sqrt(len(values))
    return mean, mean - half, mean + half
