"""Calibration: ECE and reliability bins against hand computations, temperature scaling, the paper's
cross-validated variant, and the rows the linear and fine-tune runs write."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax

from ssl_lib.evaluate import calibration as C


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _probs(top, n_classes=3):
    """Rows whose top-1 probability is ``top`` (on class 0), the rest spread evenly."""
    top = np.asarray(top, dtype=np.float64)
    return np.column_stack([top] + [(1 - top) / (n_classes - 1)] * (n_classes - 1))


def _overconfident(n=4000, k=5, factor=3.0, seed=0):
    """Labels drawn from softmax(z), logits ``factor * z``: T = factor calibrates them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, k))
    labels = (rng.random(n)[:, None] > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    return factor * z, labels


# ---------------------------------------------------------------------------- ECE and bins


def test_ece_is_zero_when_each_bins_accuracy_equals_its_confidence():
    probs = _probs([0.8] * 10 + [0.5] * 10)
    labels = np.array([0] * 8 + [1] * 2 + [0] * 5 + [2] * 5)  # 80% right at 0.8, 50% right at 0.5
    assert C.ece(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_known_miscalibration():
    # 60% right at confidence 0.9 (gap 0.30) and 60% right at 0.62 (gap 0.02), equal weights: 16%
    probs = _probs([0.9] * 10 + [0.62] * 10)
    labels = np.array(([0] * 6 + [1] * 4) * 2)
    assert C.ece(probs, labels) == pytest.approx(16.0)
    # confidences sharing a bin ([0.667, 0.733)) are averaged first: |0.5 - 0.71| = 21%, not the
    # per-prediction mean gap (0.3 + 0.72) / 2 = 51%
    assert C.ece(_probs([0.70] * 5 + [0.72] * 5), np.array([0] * 5 + [1] * 5)) == pytest.approx(21.0)


def test_reliability_bins_count_average_and_leave_empty_bins_empty():
    bins = C.reliability(_probs([0.9] * 10 + [0.62] * 10 + [1.0] * 2), np.array(([0] * 6 + [1] * 4) * 2 + [0, 0]))
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 16))
    expected = np.zeros(15, dtype=int)
    expected[[9, 13, 14]] = [10, 10, 2]  # 0.62 in [0.600, 0.667); 0.9 in [0.867, 0.933); 1.0 in the closed last bin
    np.testing.assert_array_equal(bins.count, expected)
    assert bins.confidence[13] == pytest.approx(0.9) and bins.accuracy[13] == pytest.approx(0.6)
    assert bins.accuracy[14] == 1.0 and np.isnan(bins.accuracy[0]) and np.isnan(bins.confidence[0])
    pooled = C.Reliability.pool([bins, bins])
    np.testing.assert_array_equal(pooled.count, 2 * expected)
    assert pooled.ece == pytest.approx(bins.ece)


def test_bad_inputs_fail_with_one_line():
    with pytest.raises(ValueError, match="multi-label tasks have no ECE"):
        C.ece(np.full((4, 3), 1 / 3), np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match="integer class labels"):
        C.ece(np.full((4, 3), 1 / 3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 5 test predictions"):
        C.cv_scaled_ece(np.zeros((4, 3)), np.zeros(4, dtype=int))


# ---------------------------------------------------------------------------- temperature


def test_temperature_scaling_recovers_the_factor_that_made_logits_overconfident():
    logits, labels = _overconfident()
    t = C.fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.08)
    assert C.nll(logits, labels, t) < C.nll(logits, labels) - 0.1
    assert C.nll(logits, labels, t) <= min(C.nll(logits, labels, t * 1.05), C.nll(logits, labels, t / 1.05))
    assert C.ece(C.scaled_probs(logits, t), labels) < C.ece(softmax(logits, axis=1), labels) / 3
    assert C.fit_temperature(logits / 3.0, labels) == pytest.approx(1.0, rel=0.08)  # already calibrated


def test_a_class_never_predicted_minus_inf_logit_keeps_everything_finite():
    logits, labels = _overconfident(n=300, k=4)
    logits[:, 3] = -np.inf  # a class absent from the training labels (intercept -inf)
    labels[:5] = 3  # ...that still occurs in test
    t = C.fit_temperature(logits, labels)
    assert np.isfinite(t) and t > 0 and np.isfinite(C.nll(logits, labels, t))
    assert np.isfinite(C.calibrate(logits, labels, temperature_val=t).scaled)


# ---------------------------------------------------------------------------- the paper's test-cv


def test_cv_folds_are_the_official_codes():
    n = 103
    state = np.random.get_state()
    try:  # temperature_scaling.py: np.random.seed(0); shuffle(list); tensor.split(int(n / k))[:k]
        indices = list(range(n))
        np.random.seed(0)
        np.random.shuffle(indices)
        official = [t.numpy() for t in torch.tensor(indices).split(int(n / 5))[:5]]
    finally:
        np.random.set_state(state)
    folds = C.cv_folds(n, 5, seed=0)
    assert len(folds) == 5 and all(np.array_equal(a, b) for a, b in zip(folds, official))


def test_cv_scaled_ece_fits_on_one_fold_and_scores_the_other_four(monkeypatch):
    logits, labels = _overconfident(n=1000)
    fitted = []
    real = C.fit_temperature
    monkeypatch.setattr(C, "fit_temperature", lambda z, y: fitted.append(len(y)) or real(z, y))
    mean, temperatures, pooled = C.cv_scaled_ece(logits, labels)
    assert fitted == [200] * 5 and pooled.count.sum() == 5 * 800
    assert all(t == pytest.approx(3.0, rel=0.25) for t in temperatures)
    folds = C.cv_folds(1000)
    by_hand = [C.ece(C.scaled_probs(logits[rest], t), labels[rest])
               for t, rest in ((t, np.concatenate(folds[:i] + folds[i + 1:])) for i, t in enumerate(temperatures))]
    assert mean == pytest.approx(np.mean(by_hand))
    assert mean < C.ece(softmax(logits, axis=1), labels) / 3


def test_calibrate_reports_three_variants_and_survives_json():
    logits, labels = _overconfident(n=500)
    cal = C.calibrate(logits, labels, temperature_val=3.0)
    assert cal.unscaled == pytest.approx(C.ece(softmax(logits, axis=1), labels))
    assert cal.scaled_val == pytest.approx(C.ece(C.scaled_probs(logits, 3.0), labels)) and cal.temperature_val == 3.0
    assert cal.scaled == pytest.approx(C.cv_scaled_ece(logits, labels)[0]) and cal.n_test == 500
    back = C.Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.scaled == cal.scaled and back.bins["scaled_val"].ece == pytest.approx(cal.scaled_val)
    without = C.calibrate(logits, labels)
    assert np.isnan(without.scaled_val) and "scaled_val" not in without.bins


# ---------------------------------------------------------------------------- rows from the runs


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, random_mini_spec):
    path = tmp_path_factory.mktemp("study") / "tiny.yaml"
    path.write_text("name: tiny\nzoo: mini\nseed: 0\nmodels: [random]\nsections:\n"
                    "  linear: {datasets: [mini-digits, mini-multilabel], params: {n_boot: 0}}\n")
    return path


def test_the_linear_run_writes_calibration_rows_for_classification_only(tiny_study, random_mini_spec, tmp_path,
                                                                        monkeypatch):
    from functools import partial

    import ssl_lib.sections.linear as L
    from ssl_lib.data.mini import load
    from ssl_lib.evaluate.logreg import C_GRID

    monkeypatch.setattr(L, "run_linear", partial(L.run_linear, c_grid=C_GRID[20:29]))  # a shorter C path: speed
    results = tmp_path / "results.csv"
    run = L.run_linear_section(L.LinearParams(study=str(tiny_study), model=random_mini_spec, n_boot=0,
                                              results_path=str(results)))
    table = pd.read_csv(results)
    linear, cal = table[table.section == "linear"], table[table.section == "calibration"].set_index("metric")
    assert sorted(linear.dataset) == ["mini-digits", "mini-multilabel"] and len(run.rows) == 2
    assert set(cal.dataset) == {"mini-digits"}  # none for the multi-label task
    assert sorted(cal.index) == ["ece_linear_scaled", "ece_linear_scaled_val", "ece_linear_unscaled"]
    assert set(cal.run_id) == set(linear.run_id) and cal.value.between(0, 100).all()
    assert cal.loc["ece_linear_scaled", "selected_on"] == "test (5-fold CV, as the paper)"
    assert cal.loc["ece_linear_scaled_val", "selected_on"].startswith("val")
    # the unscaled ECE is that of the refit's test logits; T_val comes from the chosen C's val logits
    result, y_test = run.results["mini-digits"], load("mini-digits", "test")["labels"]
    unscaled = C.ece(softmax(result.test_scores_raw, axis=1), y_test)
    assert cal.loc["ece_linear_unscaled", "value"] == pytest.approx(unscaled)
    t_val = C.fit_temperature(result.val_scores_raw, load("mini-digits", "val")["labels"])
    assert json.loads(cal.loc["ece_linear_scaled_val", "hyperparams"])["T"] == pytest.approx(t_val)
    extra = json.loads(cal.loc["ece_linear_unscaled", "extra"])
    assert sum(extra["bins"]["count"]) == len(y_test) and extra["protocol"] == "linear"
    assert len(json.loads(cal.loc["ece_linear_scaled", "extra"])["T_folds"]) == 5


def test_fine_tune_keeps_calibration_in_its_resumable_state(random_mini_model, tmp_path, monkeypatch):
    import ssl_lib.evaluate.finetune as FT

    cfg = FT.FinetuneCfg(steps=2, batch_size=16, lrs=(0.1, 0.01), wds=(0.0,))
    state = tmp_path / "state.json"
    result = FT.run_finetune(random_mini_model, "mini-digits", cfg, n_boot=0, state_path=state)
    saved = json.loads(state.read_text())
    temps = [p["val_temperature"] for p in saved["points"].values()]
    assert len(temps) == 2 and all(t > 0 for t in temps)
    best = next(p for p in saved["points"].values() if p["lr"] == result.best_lr)
    cal = C.Calibration.from_dict(result.calibration)
    assert cal.temperature_val == best["val_temperature"] and cal.n_test == result.n_test
    monkeypatch.setattr(FT, "finetune_once", lambda *a, **k: pytest.fail("a finished run must not retrain"))
    again = FT.run_finetune(random_mini_model, "mini-digits", cfg, n_boot=0, state_path=state)
    assert again.calibration == result.calibration


def test_fine_tune_has_no_calibration_for_a_multilabel_task(random_mini_model):
    import ssl_lib.evaluate.finetune as FT

    cfg = FT.FinetuneCfg(steps=1, batch_size=8, lrs=(0.1,), wds=(0.0,))
    result = FT.run_finetune(random_mini_model, "mini-multilabel", cfg, n_boot=0)
    assert result.calibration is None and result.grid[0]["val_temperature"] is None


def test_reliability_bins_are_scipys_binned_statistic_bins_including_confidences_on_the_edges():
    from scipy import stats

    rng = np.random.default_rng(3)
    top = np.r_[np.arange(1, 16) / 15, rng.uniform(1 / 3, 1, 200), np.ones(3)]  # every edge, and the closed last one
    probs, labels = _probs(top), rng.integers(0, 3, len(top))
    bins = C.reliability(probs, labels)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    for got, statistic, values in ((bins.count, "count", correct), (bins.confidence, "mean", confidence),
                                   (bins.accuracy, "mean", correct)):
        np.testing.assert_array_equal(got, stats.binned_statistic(confidence, values, statistic, bins=bins.edges)[0])


def test_temperature_fit_is_the_search_on_scipys_log_softmax_to_the_last_bit():
    from scipy import optimize, special

    logits, labels = _overconfident(n=500, k=7, factor=2.5, seed=5)
    z, rows = C._log_probs(logits), np.arange(len(labels))
    reference = optimize.minimize_scalar(
        lambda log_t: float(-special.log_softmax(z * np.exp(-log_t), axis=1)[rows, labels].mean()),
        bounds=C._LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    assert C.fit_temperature(logits, labels) == float(np.exp(reference.x))
