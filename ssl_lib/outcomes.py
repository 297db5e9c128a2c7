"""Per-example outcomes beside the results table, for paired comparisons between models.

A result row holds one number; "A beats B" is a claim about the difference between two models on
the *same* test images (or the same few-shot episodes). So every run also saves the per-example
evidence its metric is computed from, as ``<results dir>/outcomes/<name>.npz``, and names the file
in the row's ``outcomes`` column. :func:`paired_difference` draws one set of bootstrap resamples
of the examples and scores both models on each, so the interval is that of the difference.

Each file holds a ``kind`` (how the metric is recomputed on a resample) and its arrays:

- ``labels``: ``y_true``, ``y_pred`` (top-1, mean per-class accuracy)
- ``scores``: ``y_true`` (N, K) 0/1, ``scores`` (N, K) (VOC 11-point mAP)
- ``values``: ``values`` (N,): one number per example or episode, the metric is their mean
- ``ratio``: ``<metric>:num``, ``<metric>:den`` (N,): the metric is 100·Σnum / Σden, or Σnum / Σden
  for errors (pixel-weighted dense metrics)
- ``segmentation``: ``intersection``, ``union`` (N, K), ``correct``, ``labelled`` (N,)
- ``detection``: a :class:`~ssl_lib.evaluate.detection.MatchTable`'s arrays
- ``ece``: ``logits`` (N, K), ``labels`` (N,), ``temperature`` (a scalar; NaN: the paper's 5-fold
  cross-validated scaling on the test logits, folds seeded by ``cv_seed``): the ECE (%) after scaling
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._registry import Registry
from .exceptions import ConfigError
from .paths import atomic_path

__all__ = ["OUTCOME_KINDS", "OUTCOMES_DIR", "save_outcomes", "load_outcomes", "metric_on", "PairedDifference",
           "paired_difference", "outcome_name", "n_examples", "resampled", "BATCHED"]

OUTCOMES_DIR = "outcomes"

Statistic = Callable[[dict[str, np.ndarray], str, np.ndarray], float]  # (arrays, metric, example idx) -> value
OUTCOME_KINDS: Registry[Statistic] = Registry("outcome kind")


@OUTCOME_KINDS.register("labels")
def _labels(arrays: dict, metric: str, idx: np.ndarray) -> float:
    y, p = arrays["y_true"][idx], arrays["y_pred"][idx]
    if metric == "mean_per_class":
        return 100.0 * float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))
    return 100.0 * float(np.mean(p == y))


@OUTCOME_KINDS.register("scores")
def _scores(arrays: dict, metric: str, idx: np.ndarray) -> float:
    from .metrics import compute_metric

    return compute_metric(metric, arrays["y_true"][idx], arrays["scores"][idx])


@OUTCOME_KINDS.register("values")
def _values(arrays: dict, metric: str, idx: np.ndarray) -> float:
    return float(np.mean(arrays["values"][idx]))


@OUTCOME_KINDS.register("ratio")
def _ratio(arrays: dict, metric: str, idx: np.ndarray) -> float:
    num, den = arrays[f"{metric}:num"][idx].sum(), arrays[f"{metric}:den"][idx].sum()
    return float(num / den) * (1.0 if metric.endswith("_err") else 100.0)


@OUTCOME_KINDS.register("segmentation")
def _segmentation(arrays: dict, metric: str, idx: np.ndarray) -> float:
    from .metrics.dense import segmentation_metrics

    return float(segmentation_metrics({k: arrays[k][idx] for k in ("intersection", "union", "correct", "labelled")})[metric])


@OUTCOME_KINDS.register("detection")
def _detection(arrays: dict, metric: str, idx: np.ndarray) -> float:
    from .metrics.detection import MatchTable, summaries, weighted_class_ap

    table = MatchTable(thresholds=tuple(arrays["thresholds"].tolist()), num_classes=int(arrays["num_classes"]),
                       **{k: arrays[k] for k in ("label", "score", "image", "tp", "ignored", "npos")})
    weights = np.bincount(idx, minlength=table.npos.shape[0]).astype(np.float64)[None]
    return float(summaries(weighted_class_ap(table, weights, bool(arrays["use_07_metric"])), table.thresholds)[metric][0])


Batched = Callable[[dict[str, np.ndarray], str, np.ndarray], np.ndarray]  # (arrays, metric, (B, n) idx) -> (B,)
#: Kinds whose statistic also has a form over a batch of resamples at once (the same values as one
#: resample at a time, computed as array operations): what makes 1000 paired resamples of AP cheap.
BATCHED: dict[str, Batched] = {}


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each example is drawn in each resample (a resample's sums are ``counts @ x``)."""
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)


def _labels_batch(arrays: dict, metric: str, idx: np.ndarray) -> np.ndarray:
    y, p = arrays["y_true"][idx], arrays["y_pred"][idx]
    if metric != "mean_per_class":
        return 100.0 * np.mean(p == y, axis=1)
    classes = np.unique(arrays["y_true"])
    present = np.stack([(y == c).sum(1) for c in classes], 1)  # (B, C) examples of each class
    right = np.stack([((y == c) & (p == c)).sum(1) for c in classes], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.nanmean(np.where(present > 0, right / present, np.nan), axis=1)


def _detection_batch(arrays: dict, metric: str, idx: np.ndarray) -> np.ndarray:
    from .metrics.detection import MatchTable, summaries, weighted_class_ap

    thresholds = tuple(arrays["thresholds"].tolist())
    rows = slice(None)
    if metric in ("AP50", "AP75"):  # one threshold's AP: the others are not computed
        t = thresholds.index(0.5 if metric == "AP50" else 0.75)
        rows, thresholds = slice(t, t + 1), (thresholds[t],)
    table = MatchTable(thresholds=thresholds, num_classes=int(arrays["num_classes"]), label=arrays["label"],
                       score=arrays["score"], image=arrays["image"], tp=arrays["tp"][rows],
                       ignored=arrays["ignored"][rows], npos=arrays["npos"])
    n = table.npos.shape[0]
    weights = _counts(idx, n)
    return summaries(weighted_class_ap(table, weights, bool(arrays["use_07_metric"])), thresholds)[metric]


def _values_batch(arrays: dict, metric: str, idx: np.ndarray) -> np.ndarray:
    return np.mean(arrays["values"][idx], axis=1)


def _ratio_batch(arrays: dict, metric: str, idx: np.ndarray) -> np.ndarray:
    num, den = arrays[f"{metric}:num"][idx].sum(1), arrays[f"{metric}:den"][idx].sum(1)
    return num / den * (1.0 if metric.endswith("_err") else 100.0)


def _segmentation_batch(arrays: dict, metric: str, idx: np.ndarray) -> np.ndarray:
    """The counts are integers, so ``counts @ x`` sums them exactly as one resample at a time."""
    from .metrics.dense import iou_per_class, mean_iou

    weights = _counts(idx, len(arrays["correct"]))
    if metric == "seg_pixel_acc":
        labelled = weights @ arrays["labelled"]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(labelled > 0, 100.0 * (weights @ arrays["correct"]) / labelled, np.nan)
    if metric != "seg_mean_iou":
        raise ConfigError(f"Segmentation outcomes give seg_mean_iou or seg_pixel_acc, not {metric!r}.")
    return mean_iou(iou_per_class(weights @ arrays["intersection"], weights @ arrays["union"]))


BATCHED.update(labels=_labels_batch, detection=_detection_batch, values=_values_batch, ratio=_ratio_batch,
               segmentation=_segmentation_batch)


@OUTCOME_KINDS.register("ece")
def _ece(arrays: dict, metric: str, idx: np.ndarray) -> float:
    from .evaluate.calibration import cv_scaled_ece, ece, scaled_probs

    logits, labels, t = arrays["logits"][idx], arrays["labels"][idx], float(arrays["temperature"])
    if np.isnan(t):
        return cv_scaled_ece(logits, labels, seed=int(arrays.get("cv_seed", 0)))[0]
    return ece(scaled_probs(logits, t), labels)


def n_examples(kind: str, arrays: dict) -> int:
    """How many test examples (images, episodes) an outcomes file holds."""
    key = {"labels": "y_true", "scores": "y_true", "values": "values", "segmentation": "correct",
           "detection": "npos", "ece": "labels"}.get(kind)
    if key is None:  # ratio: any numerator
        key = next(k for k in arrays if k.endswith(":num"))
    return len(arrays[key])


def save_outcomes(results_path: str | Path, name: str, kind: str, **arrays: np.ndarray) -> str:
    """Write one run's per-example arrays atomically; returns the path relative to the results dir.

    ``name`` identifies the run and setting (e.g. section, model hash, dataset, params hash); the
    file name is a hash of it, so any model spec (paths, URLs) makes a valid file name.
    """
    OUTCOME_KINDS.get(kind)
    stem = hashlib.sha256(name.encode()).hexdigest()[:24]
    relative = f"{OUTCOMES_DIR}/{stem}.npz"
    path = Path(results_path).parent / relative
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"Cannot create {path.parent} for the outcomes ({err.strerror}); "
                          "pass a results_path in a folder you can write.") from None
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, kind=np.asarray(kind), name=np.asarray(name),
                            **{k: np.asarray(v) for k, v in arrays.items()})
    return relative


def load_outcomes(results_path: str | Path, relative: str) -> tuple[str, dict[str, np.ndarray]]:
    """``(kind, arrays)`` of a row's outcomes file."""
    path = Path(results_path).parent / relative
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"Outcomes file {path} cannot be read ({type(err).__name__}); re-run its section.") from None
    kind = str(arrays.pop("kind"))
    arrays.pop("name", None)
    return kind, arrays


def metric_on(kind: str, arrays: dict[str, np.ndarray], metric: str, idx: np.ndarray | None = None) -> float:
    """The metric recomputed from the outcomes on examples ``idx`` (all when None)."""
    n = n_examples(kind, arrays)
    return OUTCOME_KINDS.get(kind)(arrays, metric, np.arange(n) if idx is None else np.asarray(idx))


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` on the same examples, with a percentile interval from shared resamples."""

    difference: float
    ci_low: float
    ci_high: float
    n_examples: int
    n_boot: int

    @property
    def sign(self) -> int:
        """+1 if the interval lies above zero (a beats b), −1 if below, 0 if it contains zero."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0

    def describe(self, digits: int = 1) -> str:
        return f"{self.difference:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


def _same_examples(kind: str, a: dict, b: dict) -> bool:
    """Pairing needs the same examples in the same order: equal counts and equal ground truth."""
    if n_examples(kind, a) != n_examples(kind, b):
        return False
    truth = {"labels": ("y_true",), "scores": ("y_true",), "segmentation": ("labelled",), "detection": ("npos",),
             "ece": ("labels",)}
    return all(np.array_equal(a[k], b[k]) for k in truth.get(kind, ()))


def paired_difference(
    results_path: str | Path, outcomes_a: str, outcomes_b: str, metric: str, *,
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> PairedDifference:
    """Bootstrap the difference ``metric(a) − metric(b)`` resampling the shared test examples.

    The same resample of example indices scores both models, so what the two share (the hard
    images, the easy episodes) cancels, and the interval is narrower than two separate ones
    would suggest. Percentile interval (a difference of two upward-biased APs is roughly unbiased).
    """
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"n_boot must be >= 1 and level in (0, 1); got {n_boot!r} and {level!r}.")
    kind_a, a = load_outcomes(results_path, outcomes_a)
    kind_b, b = load_outcomes(results_path, outcomes_b)
    if kind_a != kind_b or not _same_examples(kind_a, a, b):
        raise ConfigError(f"Outcomes {outcomes_a} and {outcomes_b} are not on the same test examples; "
                          "a paired comparison needs both models scored on the same split.")
    n = n_examples(kind_a, a)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # the resamples, one per row
    diffs = resampled(kind_a, a, metric, idx) - resampled(kind_a, b, metric, idx)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    point = metric_on(kind_a, a, metric) - metric_on(kind_b, b, metric)
    return PairedDifference(float(point), float(low), float(high), n, n_boot)


def resampled(kind: str, arrays: dict[str, np.ndarray], metric: str, idx: np.ndarray, chunk: int = 100) -> np.ndarray:
    """The metric on each resample (row) of ``idx``: batched where the kind allows, else one by one."""
    batch = BATCHED.get(kind)
    if batch is None:
        statistic = OUTCOME_KINDS.get(kind)
        return np.array([statistic(arrays, metric, row) for row in idx], dtype=np.float64)
    return np.concatenate([batch(arrays, metric, idx[i:i + chunk]) for i in range(0, len(idx), chunk)])


def outcome_name(**fields) -> str:
    """A stable identity for an outcomes file from the run's fields (sorted JSON)."""
    return json.dumps(fields, sort_keys=True, default=str)
