"""Calibration metrics: reliability bins and the expected calibration error (netcal's ``ECE(15)``).

The top-1 confidence of each prediction falls into one of 15 equal-width bins on [0, 1]
(left-closed, the last one closed); the ECE is the count-weighted mean of ``|accuracy - mean
confidence|`` over the bins, in % as the paper's Table 9 prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import SSLLibError

__all__ = ["N_BINS", "Reliability", "reliability", "ece"]

N_BINS = 15  # the paper's ECE(15)


@dataclass(frozen=True)
class Reliability:
    """Per-bin mean confidence, accuracy (both in [0, 1]; NaN for an empty bin) and count."""

    edges: np.ndarray  # (n_bins + 1,)
    confidence: np.ndarray  # (n_bins,)
    accuracy: np.ndarray  # (n_bins,)
    count: np.ndarray  # (n_bins,) int

    @property
    def ece(self) -> float:
        """Count-weighted mean |accuracy - confidence| over the bins, in %."""
        filled = self.count > 0
        gap = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(100.0 * (gap * self.count[filled]).sum() / self.count.sum())

    def to_dict(self) -> dict:
        """JSON-ready (empty bins as ``None``) for a result row's ``extra``."""
        as_list = lambda a: [float(v) if np.isfinite(v) else None for v in a]  # noqa: E731
        return {"edges": as_list(self.edges), "confidence": as_list(self.confidence),
                "accuracy": as_list(self.accuracy), "count": [int(c) for c in self.count]}

    @classmethod
    def from_dict(cls, d: dict) -> Reliability:
        as_array = lambda a: np.array([np.nan if v is None else v for v in a], dtype=np.float64)  # noqa: E731
        return cls(as_array(d["edges"]), as_array(d["confidence"]), as_array(d["accuracy"]),
                   np.asarray(d["count"], dtype=np.int64))

    @classmethod
    def pool(cls, parts: list[Reliability]) -> Reliability:
        """Bins of several prediction sets merged (count-weighted means), e.g. the 5 CV folds."""
        count = np.sum([p.count for p in parts], axis=0)
        with np.errstate(invalid="ignore"):
            conf = np.sum([np.nan_to_num(p.confidence) * p.count for p in parts], axis=0) / count
            acc = np.sum([np.nan_to_num(p.accuracy) * p.count for p in parts], axis=0) / count
        return cls(parts[0].edges, np.where(count > 0, conf, np.nan), np.where(count > 0, acc, np.nan), count)


def _check(probs_or_logits: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(probs_or_logits, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise SSLLibError(f"Calibration needs {what} of shape (n, classes) and integer labels of shape (n,), "
                          f"got {x.shape} and {y.shape}; multi-label tasks have no ECE here (as in the paper).")
    if not np.issubdtype(y.dtype, np.integer):
        raise SSLLibError(f"Calibration needs integer class labels, got dtype {y.dtype}.")
    return x, y


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    """Bins of the top-1 confidence (equal width on [0, 1], as netcal): mean confidence, accuracy, count."""
    probs, labels = _check(probs, labels, "probabilities")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # scipy's binned_statistic bins: [e_i, e_i+1), the last one closed; confidences lie in (0, 1]
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean = np.bincount(which, confidence, n_bins) / count
        acc_mean = np.bincount(which, correct, n_bins) / count
    return Reliability(edges, conf_mean, acc_mean, count.astype(np.int64))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error in % (netcal's ``ECE(n_bins).measure`` x 100)."""
    return reliability(probs, labels, n_bins).ece
