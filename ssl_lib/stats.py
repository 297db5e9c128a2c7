"""Uncertainty (bootstrap over test examples, few-shot episode CI) and correlation across models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

from .exceptions import ConfigError

__all__ = ["bootstrap_ci", "normal_ci", "logit", "correlation", "correlation_ci"]

CORRELATION_METHODS = ("pearson", "spearman")


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


def logit(p, *, percent: bool = True, eps: float = 1e-4):
    """``log(p / (1 - p))`` of a proportion (in % when ``percent``), clipped to ``[eps, 1 - eps]``.

    The paper correlates bounded metrics on the logit scale, where a gain near the ceiling (95 → 97%)
    weighs as much as a larger one in the middle; the clip keeps 0% and 100% finite. pandas inputs
    keep their index and columns.
    """
    if not isinstance(p, (pd.Series, pd.DataFrame)):
        p = np.asarray(p, dtype=np.float64)
    return special.logit(np.clip(p / 100.0 if percent else p, eps, 1.0 - eps))


def _pairs(x, y, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method not in CORRELATION_METHODS:
        raise ConfigError(f"Unknown correlation method {method!r}. Known: {', '.join(CORRELATION_METHODS)}.")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"x and y must be 1-D and of equal length; got shapes {x.shape} and {y.shape}.")
    if len(x) < 3 or not np.isfinite(x).all() or not np.isfinite(y).all():
        raise ConfigError(f"A correlation needs at least 3 finite (x, y) pairs; got {len(x)} pairs "
                          f"({int((~np.isfinite(x) | ~np.isfinite(y)).sum())} not finite). Drop NaN pairs first.")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ConfigError("The correlation of a constant sequence is undefined; x or y has a single value.")
    return x, y


def correlation(x, y, method: str = "pearson") -> float:
    """Pearson r or Spearman rho of paired values (``scipy.stats``); one pair per model."""
    x, y = _pairs(x, y, method)
    test = sps.pearsonr if method == "pearson" else sps.spearmanr
    return float(test(x, y).statistic)


def correlation_ci(
    x, y, method: str = "pearson", *, n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of :func:`correlation`, resampling models (``(x, y)`` pairs).

    With 14 models the uncertainty comes from which models happen to be in the study, so models are
    what is resampled. Resamples where x or y is constant (e.g. one model drawn 14 times) have no
    correlation and are skipped, not counted as NaN.
    """
    x, y = _pairs(x, y, method)
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ConfigError(f"n_boot must be >= 1 and level in (0, 1); got n_boot={n_boot!r}, level={level!r}.")
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    xb, yb = x[idx], y[idx]
    ok = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
    if not ok.any():
        raise ConfigError("Every bootstrap resample was constant; the correlation CI is undefined.")
    xb, yb = xb[ok], yb[ok]
    if method == "spearman":  # Spearman = Pearson of the ranks within each resample (ties averaged)
        xb, yb = sps.rankdata(xb, axis=1), sps.rankdata(yb, axis=1)
    xb = xb - xb.mean(axis=1, keepdims=True)
    yb = yb - yb.mean(axis=1, keepdims=True)
    r = (xb * yb).sum(axis=1) / np.sqrt((xb**2).sum(axis=1) * (yb**2).sum(axis=1))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.clip(r, -1.0, 1.0), [alpha, 1.0 - alpha])
    return float(low), float(high)
