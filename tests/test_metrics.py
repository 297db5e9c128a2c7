import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ssl_lib.metrics import compute_metric, map11, mean_per_class, top1, voc07_ap
from ssl_lib.stats import bootstrap_ci, normal_ci


def test_top1_and_mean_per_class_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    scores = rng.normal(size=(300, 5))
    scores[np.arange(300), y] += 0.8
    pred = scores.argmax(1)
    assert top1(y, scores) == pytest.approx(100 * accuracy_score(y, pred))
    assert mean_per_class(y, scores) == pytest.approx(100 * balanced_accuracy_score(y, pred))


def test_voc07_11_point_ap_by_hand():
    # ranking: TP (P=1, R=.5), FP (P=.5, R=.5), TP (P=2/3, R=1), FP (P=.5, R=1)
    # thresholds 0..0.5 → max precision 1; 0.6..1.0 → 2/3.  AP = (6 + 5 * 2/3) / 11
    ap = voc07_ap(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert ap == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert voc07_ap(np.array([0, 1]), np.array([0.1, 0.9])) == pytest.approx(1.0)


def test_map11_is_the_mean_over_classes():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.3], [0.2, 0.9]])
    expected = 100 * np.mean([voc07_ap(y[:, 0], s[:, 0]), voc07_ap(y[:, 1], s[:, 1])])
    assert map11(y, s) == pytest.approx(expected)
    assert compute_metric("map11", y, s) == pytest.approx(expected)


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    s = rng.normal(size=(400, 3))
    s[np.arange(400), y] += 1.0
    low, high = bootstrap_ci(top1, y, s, n_boot=300, seed=0)
    assert low < top1(y, s) < high
    assert (low, high) == bootstrap_ci(top1, y, s, n_boot=300, seed=0)
    assert np.isnan(bootstrap_ci(top1, y, s, n_boot=0)[0])


def test_normal_ci_is_the_papers_formula():
    values = np.array([0.2, 0.4, 0.6, 0.8])
    mean, low, high = normal_ci(values)
    half = 1.96 * np.std(values) / 2
    assert (mean, low, high) == pytest.approx((0.5, 0.5 - half, 0.5 + half))
