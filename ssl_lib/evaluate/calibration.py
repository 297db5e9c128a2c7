"""Calibration of a classifier's test predictions: ECE, reliability bins and temperature scaling.

The paper (§4.7, Table 9; the official ``temperature_scaling.py``) measures the expected
calibration error with netcal's ``ECE(15)``: the top-1 confidence of each prediction falls into
one of 15 equal-width bins on [0, 1] (left-closed, the last one closed), and the ECE is the
count-weighted mean of ``|accuracy - mean confidence|`` over the bins. Here it is reported in %,
as Table 9 prints it.

Temperature scaling divides the logits by one ``T > 0`` fitted by maximum likelihood. netcal fits
it on ``log(clip(softmax, eps, 1 - eps))``; :func:`fit_temperature` does the same (so a logit more
than ``-log(eps) = 36`` below the top one, or ``-inf`` for a class absent from training, is
floored there), which changes nothing else: softmax is invariant to the per-row shift.

Two scaled variants:

``test-cv`` (the paper's)
    :func:`cv_scaled_ece`, the official ``cross_validate_temp_scaling``: the test indices are
    shuffled (``np.random.seed(0); np.random.shuffle``) and cut into 5 chunks of ``n // 5`` (the
    remainder is left out); for each chunk, T is fitted **on that chunk** and the ECE measured on
    the other four; the five ECEs are averaged. T is therefore fitted on test data.
``val``
    T fitted on validation logits (:func:`fit_temperature`) and applied to the test logits; the
    test split takes no part in the fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special

from ..exceptions import SSLLibError
from ..metrics.calibration import N_BINS, Reliability, _check, ece, reliability

__all__ = [
    "N_BINS",
    "CV_FOLDS",
    "Reliability",
    "Calibration",
    "reliability",
    "ece",
    "nll",
    "fit_temperature",
    "scaled_probs",
    "cv_folds",
    "cv_scaled_ece",
    "calibrate",
]

CV_FOLDS = 5
_LOG_EPS = float(np.log(np.finfo(np.float64).eps))  # netcal's clip of probabilities, in log space
_LOG_T_BOUNDS = (-7.0, 7.0)  # T in [1e-3, 1.1e3]


def _log_probs(logits: np.ndarray) -> np.ndarray:
    """netcal's input to its temperature fit: log-softmax floored at log(eps)."""
    return np.maximum(special.log_softmax(logits, axis=1), _LOG_EPS)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` (on netcal's floored log-probabilities)."""
    logits, labels = _check(logits, labels, "logits")
    z = _log_probs(logits) / temperature
    return float(-special.log_softmax(z, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)`` (bounded Brent search on log T).

    The NLL is convex in 1/T, hence unimodal in log T, so a scalar search finds the optimum.
    """
    logits, labels = _check(logits, labels, "logits")
    z = _log_probs(logits)
    rows = np.arange(len(labels))
    z_max = z.max(axis=1, keepdims=True)  # a positive scale keeps the arg max: max(z / T) = max(z) / T

    def objective(log_t: float) -> float:
        # scipy's log_softmax, step for step (the same floats), without its per-call array-API overhead:
        # the search calls this ~75 times a fit, and a bootstrap of the scaled ECE fits thousands
        scale = np.exp(-log_t)
        shifted = z * scale - z_max * scale
        return float(-(shifted[rows, labels] - np.log(np.exp(shifted).sum(axis=1))).mean())

    res = optimize.minimize_scalar(objective, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def scaled_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` (on the floored log-probabilities, as the fit)."""
    return special.softmax(_log_probs(np.asarray(logits, dtype=np.float64)) / temperature, axis=1)


def cv_folds(n: int, k: int = CV_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """The official code's folds: seeded legacy shuffle of ``range(n)``, ``k`` chunks of ``n // k``."""
    if n // k < 1:
        raise SSLLibError(f"Cross-validated temperature scaling needs at least {k} test predictions, got {n}.")
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    size = n // k
    return [indices[i * size:(i + 1) * size] for i in range(k)]


def cv_scaled_ece(logits: np.ndarray, labels: np.ndarray, *, k: int = CV_FOLDS, seed: int = 0,
                  n_bins: int = N_BINS) -> tuple[float, list[float], Reliability]:
    """The paper's scaled ECE: for each fold, T fitted on it, ECE on the other ``k - 1``; averaged.

    Returns ``(mean ECE %, the k temperatures, the evaluation bins pooled over folds)``; the pooled
    bins are for drawing (their ECE is close to, not equal to, the mean of the folds' ECEs).
    """
    logits, labels = _check(logits, labels, "logits")
    folds = cv_folds(len(labels), k, seed)
    eces, temperatures, parts = [], [], []
    for i, fit_idx in enumerate(folds):
        eval_idx = np.concatenate([f for j, f in enumerate(folds) if j != i])
        t = fit_temperature(logits[fit_idx], labels[fit_idx])
        bins = reliability(scaled_probs(logits[eval_idx], t), labels[eval_idx], n_bins)
        eces.append(bins.ece)
        temperatures.append(t)
        parts.append(bins)
    return float(np.mean(eces)), temperatures, Reliability.pool(parts)


@dataclass
class Calibration:
    """ECE (%) of one model's test predictions: unscaled, test-cv scaled (the paper's), val scaled."""

    unscaled: float
    scaled: float  # test-cv, the paper's
    scaled_val: float  # NaN without a validation temperature
    temperatures_cv: list[float]
    temperature_val: float
    n_bins: int
    n_test: int
    bins: dict[str, Reliability] = field(default_factory=dict)  # "unscaled" | "scaled" | "scaled_val"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready (for the fine-tune state file)."""
        out = {k: v for k, v in self.__dict__.items() if k != "bins"}
        out["bins"] = {k: b.to_dict() for k, b in self.bins.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**{**d, "bins": {k: Reliability.from_dict(b) for k, b in d["bins"].items()}})


def calibrate(logits: np.ndarray, labels: np.ndarray, *, temperature_val: float | None = None,
              n_bins: int = N_BINS, k: int = CV_FOLDS, seed: int = 0) -> Calibration:
    """All three ECEs of test ``logits``; ``temperature_val`` is T fitted on validation logits."""
    start = time.perf_counter()
    logits, labels = _check(logits, labels, "logits")
    bins = {"unscaled": reliability(scaled_probs(logits), labels, n_bins)}
    scaled, temperatures, bins["scaled"] = cv_scaled_ece(logits, labels, k=k, seed=seed, n_bins=n_bins)
    scaled_val = float("nan")
    if temperature_val is not None and np.isfinite(temperature_val):
        bins["scaled_val"] = reliability(scaled_probs(logits, temperature_val), labels, n_bins)
        scaled_val = bins["scaled_val"].ece
    return Calibration(
        unscaled=bins["unscaled"].ece, scaled=scaled, scaled_val=scaled_val, temperatures_cv=temperatures,
        temperature_val=float("nan") if temperature_val is None else float(temperature_val),
        n_bins=n_bins, n_test=len(labels), bins=bins, seconds=time.perf_counter() - start,
    )
