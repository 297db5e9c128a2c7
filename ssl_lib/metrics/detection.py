"""Detection metrics: detectron2's ``PascalVOCDetectionEvaluator`` (its ``voc_eval``).

Per class, detections sorted by score are matched to the ground-truth box of highest IoU in the
same image; IoU must be strictly greater than the threshold (``ovmax > ovthresh``); a match to a
"difficult" box counts neither way; a second match to an already-detected box is a false positive
(ties in score keep their order, a stable sort). AP is the VOC07 11-point AP (``use_07_metric``)
or the area under the interpolated PR curve; ``AP`` is the mean over IoU 0.50:0.05:0.95 of the
mean over classes, ``AP50`` and ``AP75`` the single-threshold means; all in %. A
:class:`MatchTable` keeps every detection's fate per image, so any resample of test images
re-scores without matching again (bootstrap intervals, paired comparisons).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torchvision.ops import box_iou

__all__ = ["IOU_THRESHOLDS", "MatchTable", "pairwise_iou", "match_detections", "voc_ap", "score_table",
           "detection_metrics", "bootstrap_detection_ci", "weighted_class_ap", "summaries"]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # detectron2: range(50, 100, 5) / 100


def pairwise_iou(a, b, plus_one: bool = False) -> np.ndarray:
    """IoU matrix (float64, ``torchvision.ops.box_iou``).

    Without ``plus_one`` (the default) boxes are pixel-edge coordinates with exclusive x2/y2 (width
    = x2 - x1): the mini boxes, and VOC boxes as :mod:`ssl_lib.data.detection` loads them
    (detectron2's ``xmin - 1``, ``ymin - 1``). ``plus_one`` is the VOC devkit convention for boxes
    in inclusive pixel indices (width = x2 - x1 + 1), i.e. raw XML boxes. detectron2's evaluator
    shifts predictions back by +1 and applies ``plus_one`` to the raw XML; on the loader's shifted
    boxes, plain IoU gives the same numbers.
    """
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if plus_one:  # [x1, y1, x2 + 1, y2 + 1] in edge coordinates has the +1 widths and intersections
        ta, tb = ta + torch.tensor([0, 0, 1, 1.0]), tb + torch.tensor([0, 0, 1, 1.0], dtype=torch.float64)
    return box_iou(ta, tb).numpy()


@dataclass
class MatchTable:
    """Every detection's fate at every IoU threshold, so any subset of images re-scores cheaply.

    Matching in ``voc_eval`` never looks across images, so a detection's TP/FP/ignored status
    depends only on its own image: a bootstrap resample of images re-uses it unchanged.
    """

    thresholds: tuple[float, ...]
    num_classes: int
    label: np.ndarray  # (D,) class 1..K of each detection
    score: np.ndarray  # (D,)
    image: np.ndarray  # (D,) image index
    tp: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool: matched a difficult box (neither TP nor FP)
    npos: np.ndarray  # (N, K) non-difficult ground-truth boxes per image and class


def match_detections(
    predictions: list[dict], targets: list[dict], num_classes: int, *,
    thresholds: tuple[float, ...] = IOU_THRESHOLDS, plus_one: bool = False,
) -> MatchTable:
    """``voc_eval``'s greedy matching, per image and class, at every threshold.

    Detections go in descending score (stable for ties); each takes the ground-truth box of highest
    IoU in its image (difficult ones included). If that IoU > threshold: a difficult box makes it
    ignored, an undetected box makes it a TP (and marks the box), a detected one makes it a FP.
    Otherwise it is a FP.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    n_t = len(thresholds)
    labels, scores, images, tps, ign = [], [], [], [], []
    npos = np.zeros((len(targets), num_classes), np.int64)
    for i, (pred, gt) in enumerate(zip(predictions, targets)):
        g_boxes, g_labels = np.asarray(gt["boxes"], np.float64).reshape(-1, 4), np.asarray(gt["labels"])
        g_diff = np.asarray(gt.get("difficult", np.zeros(len(g_labels), bool)), bool)
        np.add.at(npos[i], g_labels[~g_diff] - 1, 1)
        p_boxes, p_scores = np.asarray(pred["boxes"], np.float64).reshape(-1, 4), np.asarray(pred["scores"])
        p_labels = np.asarray(pred["labels"])
        for c in np.unique(p_labels):
            sel = np.flatnonzero(p_labels == c)
            sel = sel[np.argsort(-p_scores[sel], kind="stable")]
            tp, ignored = np.zeros((n_t, len(sel)), bool), np.zeros((n_t, len(sel)), bool)
            gsel = np.flatnonzero(g_labels == c)
            if len(gsel):
                iou = pairwise_iou(p_boxes[sel], g_boxes[gsel], plus_one)
                best, jbest = iou.max(axis=1), iou.argmax(axis=1)
                for t, thr in enumerate(thresholds):
                    taken = np.zeros(len(gsel), bool)
                    for d in np.flatnonzero(best > thr):
                        j = jbest[d]
                        if g_diff[gsel[j]]:
                            ignored[t, d] = True
                        elif not taken[j]:
                            tp[t, d] = taken[j] = True
            labels.append(np.full(len(sel), c))
            scores.append(p_scores[sel])
            images.append(np.full(len(sel), i))
            tps.append(tp)
            ign.append(ignored)
    cat = lambda xs, dtype: np.concatenate(xs) if xs else np.zeros(0, dtype)  # noqa: E731
    return MatchTable(
        thresholds=tuple(thresholds), num_classes=num_classes, label=cat(labels, np.int64),
        score=cat(scores, np.float64), image=cat(images, np.int64),
        tp=np.concatenate(tps, axis=1) if tps else np.zeros((n_t, 0), bool),
        ignored=np.concatenate(ign, axis=1) if ign else np.zeros((n_t, 0), bool), npos=npos,
    )


def voc_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, npos, use_07_metric: bool = True) -> np.ndarray:
    """AP from cumulative TP/FP counts along descending score, batched over leading axes.

    ``tp_cum``/``fp_cum``: (..., D); ``npos``: (...). As ``voc_ap``: recall = tp / npos, precision
    = tp / max(tp + fp, eps); 11-point: mean over t in {0, 0.1, ..., 1} of the best precision at
    recall >= t (0 where none); otherwise the area under the monotone precision envelope. A class
    without positives scores 0, as in ``voc_eval`` (its recall is undefined).
    """
    tp_cum, fp_cum = np.asarray(tp_cum, np.float64), np.asarray(fp_cum, np.float64)
    npos = np.asarray(npos, np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(npos > 0, tp_cum / npos, np.nan)
    prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    if use_07_metric:
        points = [np.where(rec >= t, prec, 0.0).max(axis=-1, initial=0.0) for t in np.arange(0.0, 1.1, 0.1)]
        return np.mean(points, axis=0)
    envelope = np.flip(np.maximum.accumulate(np.flip(prec, -1), axis=-1), -1)
    rec0 = np.nan_to_num(rec, nan=0.0)
    step = np.diff(rec0, axis=-1, prepend=0.0)
    return (step * envelope).sum(axis=-1)


def weighted_class_ap(table: MatchTable, weights: np.ndarray, use_07_metric: bool) -> np.ndarray:
    """(B, T, K) AP for B weightings of the images (``weights``: (B, N) copies of each image)."""
    b, n_t = weights.shape[0], len(table.thresholds)
    out = np.zeros((b, n_t, table.num_classes))
    npos = weights @ table.npos  # (B, K)
    for k in range(table.num_classes):
        sel = np.flatnonzero(table.label == k + 1)
        sel = sel[np.argsort(-table.score[sel], kind="stable")]
        w = weights[:, table.image[sel]]  # (B, D_k)
        tp = table.tp[:, sel][None] * w[:, None]  # (B, T, D_k)
        fp = (~table.tp[:, sel] & ~table.ignored[:, sel])[None] * w[:, None]
        out[:, :, k] = voc_ap(np.cumsum(tp, -1), np.cumsum(fp, -1), npos[:, None, k].repeat(n_t, 1), use_07_metric)
    return out


def summaries(class_ap: np.ndarray, thresholds: tuple[float, ...]) -> dict[str, np.ndarray]:
    per_thr = class_ap.mean(axis=-1) * 100.0  # (B, T)
    out = {"AP": per_thr.mean(axis=-1)}
    for name, thr in (("AP50", 0.5), ("AP75", 0.75)):
        if thr in thresholds:
            out[name] = per_thr[:, thresholds.index(thr)]
    return out


def score_table(table: MatchTable, *, use_07_metric: bool = True) -> dict:
    """``AP``, ``AP50``, ``AP75`` (%) and ``AP50_per_class`` (%) of all images of ``table``."""
    class_ap = weighted_class_ap(table, np.ones((1, table.npos.shape[0])), use_07_metric)
    out = {k: float(v[0]) for k, v in summaries(class_ap, table.thresholds).items()}
    if 0.5 in table.thresholds:
        out["AP50_per_class"] = (class_ap[0, table.thresholds.index(0.5)] * 100.0).tolist()
    return out


def detection_metrics(
    predictions: list[dict], targets: list[dict], num_classes: int, *, use_07_metric: bool = True,
    plus_one: bool = False, thresholds: tuple[float, ...] = IOU_THRESHOLDS,
) -> dict:
    """``AP``, ``AP50``, ``AP75`` (%) and ``AP50_per_class`` (%), as detectron2's VOC evaluator."""
    table = match_detections(predictions, targets, num_classes, thresholds=thresholds, plus_one=plus_one)
    return score_table(table, use_07_metric=use_07_metric)


def bootstrap_detection_ci(
    table: MatchTable, *, n_boot: int = 200, level: float = 0.95, seed: int = 0, use_07_metric: bool = True,
    method: str = "BCa", batch: int = 50,
) -> dict[str, tuple[float, float]]:
    """Bootstrap CIs of AP/AP50/AP75 resampling test *images* (``scipy.stats.bootstrap``).

    A resample draws N images with replacement; an image drawn m times contributes its detections
    and ground truth m times, and AP is recomputed from them (as weights on the fixed per-image
    matches: with distinct scores this equals re-running voc_eval on the duplicated images, since a
    run of tied copies adds no PR point beyond its ends). The interpolated AP is biased upwards
    under resampling (a max over a noisier PR curve), so the default is the bias-corrected BCa
    interval; a degenerate metric (e.g. AP75 = 0 in every resample) falls back to percentiles.
    """
    if n_boot <= 0:
        return {}
    n = table.npos.shape[0]
    names = ("AP", "AP50", "AP75")

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx)
        flat = idx.reshape(-1, idx.shape[-1])  # resamples (length n) or jackknife samples (n - 1)
        weights = np.stack([np.bincount(row, minlength=n) for row in flat]).astype(np.float64)
        values = summaries(weighted_class_ap(table, weights, use_07_metric), table.thresholds)
        return np.stack([values[k] for k in names]).reshape((len(names),) + idx.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(n),), statistic, vectorized=True, n_resamples=n_boot, batch=batch,
                              confidence_level=level, method=method, random_state=np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    out = {}
    for i, name in enumerate(names):
        low, high = res.confidence_interval.low[i], res.confidence_interval.high[i]
        if not (np.isfinite(low) and np.isfinite(high)):
            low, high = np.quantile(res.bootstrap_distribution[i], [alpha, 1.0 - alpha])
        out[name] = (float(low), float(high))
    return out


