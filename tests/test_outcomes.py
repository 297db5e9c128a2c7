"""Per-example outcomes: each kind reproduces its metric, and paired differences behave as paired."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_lib.exceptions import ConfigError
from ssl_lib.metrics import compute_metric
from ssl_lib.outcomes import load_outcomes, metric_on, paired_difference, save_outcomes


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results.csv"


def _labels(n=400, k=5, accuracy=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < accuracy, y, rng.integers(0, k, n))
    return y, pred


@pytest.mark.parametrize("metric", ["top1", "mean_per_class"])
def test_labels_reproduce_the_metric_from_scores(metric):
    y, pred = _labels()
    scores = np.eye(5)[pred]
    assert metric_on("labels", {"y_true": y, "y_pred": pred}, metric) == pytest.approx(compute_metric(metric, y, scores))


def test_scores_reproduce_map11():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    s = y + rng.normal(0, 0.8, y.shape)
    assert metric_on("scores", {"y_true": y, "scores": s}, "map11") == pytest.approx(compute_metric("map11", y, s))


def test_detection_outcomes_reproduce_ap():
    from ssl_lib.evaluate.detection import match_detections, score_table

    rng = np.random.default_rng(2)
    targets, predictions = [], []
    for _ in range(30):
        boxes = rng.uniform(0, 40, (3, 2))
        boxes = np.concatenate([boxes, boxes + rng.uniform(8, 20, (3, 2))], 1)
        labels = rng.integers(1, 3, 3)
        targets.append({"boxes": boxes, "labels": labels, "difficult": np.zeros(3, bool)})
        noisy = boxes + rng.normal(0, 2, boxes.shape)
        predictions.append({"boxes": noisy, "labels": labels, "scores": rng.random(3)})
    table = match_detections(predictions, targets, 2)
    arrays = {"thresholds": np.asarray(table.thresholds), "num_classes": np.asarray(2), "label": table.label,
              "score": table.score, "image": table.image, "tp": table.tp, "ignored": table.ignored,
              "npos": table.npos, "use_07_metric": np.asarray(True)}
    expected = score_table(table)
    for metric in ("AP", "AP50", "AP75"):
        assert metric_on("detection", arrays, metric) == pytest.approx(expected[metric])
    # an image drawn twice counts twice: the weighted AP equals scoring the duplicated images
    doubled = match_detections(predictions + predictions[:1], targets + targets[:1], 2)
    idx = np.r_[np.arange(30), 0]
    assert metric_on("detection", arrays, "AP50", idx) == pytest.approx(score_table(doubled)["AP50"])
    # a batch of resamples at once gives the values of one resample at a time (AP50/AP75 from their
    # one threshold, AP from all)
    from ssl_lib.outcomes import OUTCOME_KINDS, resampled

    resamples = rng.integers(0, 30, size=(12, 30))
    for metric in ("AP", "AP50", "AP75"):
        one_by_one = [OUTCOME_KINDS.get("detection")(arrays, metric, row) for row in resamples]
        np.testing.assert_allclose(resampled("detection", arrays, metric, resamples, chunk=5), one_by_one, rtol=1e-12)


def _segmentation_counts(n=40, k=6, seed=7):
    from ssl_lib.metrics.dense import segmentation_counts

    rng = np.random.default_rng(seed)
    target = rng.integers(-1, k - 1, (n, 8, 8))  # -1: ignored pixels; class k - 1 never in the truth
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, k, target.shape))
    return segmentation_counts(pred, target, k)


@pytest.mark.parametrize("kind, metric", [("values", "fewshot_acc"), ("ratio", "sn_mean_err"),
                                          ("ratio", "sn_within_11.25"), ("segmentation", "seg_mean_iou"),
                                          ("segmentation", "seg_pixel_acc")])
def test_a_batch_of_resamples_gives_the_values_of_one_resample_at_a_time(kind, metric):
    from ssl_lib.outcomes import BATCHED, OUTCOME_KINDS, resampled

    rng = np.random.default_rng(8)
    arrays = {"values": {"values": rng.uniform(20, 90, 60)},
              "ratio": {f"{metric}:num": rng.uniform(0, 500, 60), f"{metric}:den": rng.integers(1, 64, 60).astype(float)},
              "segmentation": _segmentation_counts(n=60)}[kind]
    resamples = rng.integers(0, 60, size=(25, 60))
    one_by_one = [OUTCOME_KINDS.get(kind)(arrays, metric, row) for row in resamples]
    assert kind in BATCHED
    np.testing.assert_allclose(resampled(kind, arrays, metric, resamples, chunk=7), one_by_one, rtol=1e-12)


def test_a_segmentation_resample_without_any_class_is_nan_in_a_batch_as_alone():
    from ssl_lib.outcomes import OUTCOME_KINDS, resampled

    counts = _segmentation_counts(n=3)
    counts = {k: np.concatenate([v, np.zeros_like(v[:1])]) for k, v in counts.items()}  # image 3: no labelled pixel
    idx = np.array([[3, 3, 3, 3], [0, 1, 2, 3]])
    batch = resampled("segmentation", counts, "seg_mean_iou", idx)
    assert np.isnan(batch[0]) and np.isnan(OUTCOME_KINDS.get("segmentation")(counts, "seg_mean_iou", idx[0]))
    assert batch[1] == pytest.approx(OUTCOME_KINDS.get("segmentation")(counts, "seg_mean_iou", idx[1]), rel=1e-12)


def test_ece_outcomes_recompute_the_scaled_ece():
    from ssl_lib.evaluate.calibration import cv_scaled_ece, ece, scaled_probs

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, 300)
    logits = 3.0 * np.eye(4)[labels] + rng.normal(0, 2, (300, 4))
    cv = {"logits": logits, "labels": labels, "temperature": np.asarray(np.nan), "cv_seed": np.asarray(0)}
    assert metric_on("ece", cv, "ece_linear_scaled") == pytest.approx(cv_scaled_ece(logits, labels, seed=0)[0])
    val = {**cv, "temperature": np.asarray(1.7)}
    assert metric_on("ece", val, "ece_linear_scaled") == pytest.approx(ece(scaled_probs(logits, 1.7), labels))
    idx = rng.integers(0, 300, 300)
    assert metric_on("ece", val, "x", idx) == pytest.approx(ece(scaled_probs(logits[idx], 1.7), labels[idx]))


def test_ratio_and_segmentation_kinds_are_pixel_weighted():
    from ssl_lib.evaluate.dense import segmentation_counts, segmentation_metrics

    arrays = {"sn_mean_err:num": np.array([10.0, 30.0]), "sn_mean_err:den": np.array([1, 3]),
              "sn_within_11.25:num": np.array([1, 0]), "sn_within_11.25:den": np.array([1, 3])}
    assert metric_on("ratio", arrays, "sn_mean_err") == pytest.approx(10.0)  # 40 / 4, not the mean of 10 and 10
    assert metric_on("ratio", arrays, "sn_within_11.25") == pytest.approx(25.0)
    rng = np.random.default_rng(3)
    target = rng.integers(0, 3, (4, 8, 8))
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 3, target.shape))
    counts = segmentation_counts(pred, target, 3)
    assert metric_on("segmentation", counts, "seg_mean_iou") == pytest.approx(segmentation_metrics(counts)["seg_mean_iou"])


def test_saved_outcomes_round_trip_under_a_hashed_name(results):
    y, pred = _labels()
    relative = save_outcomes(results, "model=file:/some path/ckpt.pth?x=1", "labels", y_true=y, y_pred=pred)
    assert relative.startswith("outcomes/") and " " not in relative and relative.endswith(".npz")
    kind, arrays = load_outcomes(results, relative)
    assert kind == "labels" and np.array_equal(arrays["y_pred"], pred)


def test_paired_difference_of_a_model_with_itself_is_exactly_zero(results):
    y, pred = _labels()
    a = save_outcomes(results, "a", "labels", y_true=y, y_pred=pred)
    b = save_outcomes(results, "b", "labels", y_true=y, y_pred=pred)
    d = paired_difference(results, a, b, "top1", n_boot=200)
    assert (d.difference, d.ci_low, d.ci_high, d.sign) == (0.0, 0.0, 0.0, 0)


def test_pairing_detects_a_small_consistent_gain_that_separate_intervals_miss(results):
    """B is A with 3% of its errors fixed: always at least as good on every image. Separate 95%
    intervals overlap widely; the paired interval of the difference excludes zero."""
    from ssl_lib.stats import bootstrap_ci

    y, pred_a = _labels(n=2000, accuracy=0.6)
    wrong = np.flatnonzero(pred_a != y)
    fixed = wrong[: len(wrong) // 30]
    pred_b = pred_a.copy()
    pred_b[fixed] = y[fixed]
    a = save_outcomes(results, "a", "labels", y_true=y, y_pred=pred_a)
    b = save_outcomes(results, "b", "labels", y_true=y, y_pred=pred_b)
    d = paired_difference(results, b, a, "top1", n_boot=500, seed=1)
    assert d.sign == 1 and d.difference > 0
    top1 = lambda yy, p: 100.0 * np.mean(yy == p)  # noqa: E731
    low_b, _ = bootstrap_ci(top1, y, pred_b, n_boot=500)
    _, high_a = bootstrap_ci(top1, y, pred_a, n_boot=500)
    assert low_b < high_a  # unpaired intervals overlap: they could not call it


def test_pairing_refuses_different_test_sets(results):
    y, pred = _labels()
    a = save_outcomes(results, "a", "labels", y_true=y, y_pred=pred)
    b = save_outcomes(results, "b", "labels", y_true=y[::-1].copy(), y_pred=pred)
    c = save_outcomes(results, "c", "values", values=np.ones(len(y)))
    for other in (b, c):
        with pytest.raises(ConfigError, match="not on the same test examples"):
            paired_difference(results, a, other, "top1", n_boot=10)


def test_unreadable_outcomes_file_is_one_line(results):
    (results.parent / "outcomes").mkdir()
    (results.parent / "outcomes" / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot be read.*re-run its section"):
        load_outcomes(results, "outcomes/x.npz")
