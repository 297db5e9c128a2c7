"""Recognition metrics of the paper, in percent: top-1, mean per-class accuracy, VOC07 11-point mAP."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._registry import Registry

__all__ = ["METRICS", "top1", "mean_per_class", "voc07_ap", "map11", "compute_metric"]

METRICS: Registry[Callable[[np.ndarray, np.ndarray], float]] = Registry("metric")


@METRICS.register("top1")
def top1(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Share of examples whose highest-scoring class is the label."""
    return 100.0 * float(np.mean(np.argmax(scores, axis=1) == y_true))


@METRICS.register("mean_per_class")
def mean_per_class(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Accuracy averaged over the classes present in ``y_true`` (Aircraft, Caltech, Flowers, Pets)."""
    pred = np.argmax(scores, axis=1)
    classes = np.unique(y_true)
    return 100.0 * float(np.mean([np.mean(pred[y_true == c] == c) for c in classes]))


def voc07_ap(targets: np.ndarray, scores: np.ndarray) -> float:
    """VOC2007 11-point interpolated average precision of one binary ranking (0..1)."""
    order = np.argsort(-scores, kind="stable")
    hits = targets[order] == 1
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    n_pos = max(int(hits.sum()), 1)
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.linspace(0.0, 1.0, 11):
        above = precision[recall >= t]
        ap += (above.max() if above.size else 0.0) / 11.0
    return float(ap)


@METRICS.register("map11")
def map11(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes of the 11-point AP; ``y_true`` is (n, k) of 0/1 (VOC2007 classification)."""
    return 100.0 * float(np.mean([voc07_ap(y_true[:, k], scores[:, k]) for k in range(y_true.shape[1])]))


def compute_metric(name: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    return METRICS.get(name)(np.asarray(y_true), np.asarray(scores))
