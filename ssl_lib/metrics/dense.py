"""Dense prediction metrics: segmentation counts, mIoU and pixel accuracy (the CSAIL way), and
surface-normal angular errors (the paper's Table 5 columns)."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SEG_METRICS", "NORMALS_METRICS", "THRESHOLDS", "segmentation_counts", "segmentation_metrics",
           "iou_per_class", "mean_iou", "angular_error", "normals_metrics"]

THRESHOLDS = (11.25, 22.5, 30.0)
SEG_METRICS = ("seg_mean_iou", "seg_pixel_acc")  # the paper's Table 5 columns
NORMALS_METRICS = ("sn_mean_err", "sn_median_err", "sn_within_11.25", "sn_within_22.5", "sn_within_30")


def segmentation_counts(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = -1) -> dict:
    """Per-image, per-class pixel counts, the CSAIL ``intersectionAndUnion`` and ``accuracy``.

    ``pred``, ``target``: (N, H, W) integer maps. Pixels whose target is ``ignore_index`` (or out of
    range) are left out of every count. Returns ``intersection``/``union`` (N, C) and
    ``correct``/``labelled`` (N,).
    """
    pred, target = np.asarray(pred).reshape(len(pred), -1), np.asarray(target).reshape(len(target), -1)
    n = len(target)
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    image = np.broadcast_to(np.arange(n)[:, None], target.shape)

    def per_image(classes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(image[mask] * num_classes + classes[mask], minlength=n * num_classes).reshape(n, num_classes)

    hit = valid & (pred == target)
    inter = per_image(target, hit)
    area_pred = per_image(np.clip(pred, 0, num_classes - 1), valid & (pred >= 0) & (pred < num_classes))
    area_true = per_image(target, valid)
    return {"intersection": inter, "union": area_pred + area_true - inter, "correct": hit.sum(1), "labelled": valid.sum(1)}


def iou_per_class(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """IoU per class (the last axis) from counts summed over images; NaN for a class with no union
    (absent from both the truth and the prediction)."""
    return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def mean_iou(iou: np.ndarray) -> np.ndarray:
    """The mean over the last axis of the classes present; NaN where none is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": no class present
        return np.nanmean(iou, axis=-1)


def segmentation_metrics(counts: dict) -> dict:
    """mIoU and pixel accuracy from counts accumulated over the whole test set.

    IoU per class = intersection / union summed over images; the mean is over classes with union
    > 0 (present in the truth or the prediction; the CSAIL code averages all classes, which is the
    same whenever every class appears, as on ADE20K's validation set). Pixel accuracy = % of labelled
    pixels predicted correctly. mIoU is a fraction, like the paper's Table 5.
    """
    iou = iou_per_class(counts["intersection"].sum(0), counts["union"].sum(0))
    labelled = counts["labelled"].sum()
    return {
        "seg_mean_iou": float(mean_iou(iou)),
        "seg_pixel_acc": 100.0 * float(counts["correct"].sum()) / labelled if labelled else float("nan"),
        "iou_per_class": iou,
    }


def angular_error(pred: np.ndarray, truth: np.ndarray, axis: int = -1) -> np.ndarray:
    """Angle in degrees between vectors (both renormalised; cosine clipped to [-1, 1]), float64."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    pred = pred / np.maximum(np.linalg.norm(pred, axis=axis, keepdims=True), np.finfo(np.float64).eps)
    truth = truth / np.maximum(np.linalg.norm(truth, axis=axis, keepdims=True), np.finfo(np.float64).eps)
    return np.degrees(np.arccos(np.clip((pred * truth).sum(axis), -1.0, 1.0)))


def normals_metrics(errors: np.ndarray) -> dict:
    """Mean and median angular error over all valid pixels of the test set (pooled, not per image),
    and % of pixels with error strictly below 11.25, 22.5 and 30 degrees (the paper's code)."""
    errors = np.asarray(errors, np.float64).ravel()
    out = {"sn_mean_err": float(errors.mean()), "sn_median_err": float(np.median(errors))}
    out.update({f"sn_within_{t:g}": 100.0 * float((errors < t).mean()) for t in THRESHOLDS})
    return out
