import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ssl_lib.correlation import (
    correlate,
    paper_settings,
    paper_source_accuracy,
    results_settings,
    table9_correlations,
    table9_printed_row,
    to_score,
)
from ssl_lib.exceptions import ConfigError
from ssl_lib.paper_tables import paper_table
from ssl_lib.results import COLUMNS, ResultRow
from ssl_lib.stats import correlation, correlation_ci, logit

X = np.array([59.5, 60.6, 61.5, 67.6, 69.3, 71.1, 73.0, 74.3, 75.2, 77.2])
Y = np.array([62.3, 62.4, 56.7, 69.1, 72.6, 72.3, 72.2, 77.1, 78.9, 73.8])


def test_logit_matches_a_hand_computation_and_clips():
    assert logit(75.0) == pytest.approx(math.log(0.75 / 0.25))
    assert logit(0.2, percent=False) == pytest.approx(math.log(0.2 / 0.8))
    assert np.allclose(logit([0.0, 100.0]), [math.log(1e-4 / (1 - 1e-4)), math.log((1 - 1e-4) / 1e-4)])
    series = logit(pd.Series([50.0, 90.0], index=["a", "b"]))
    assert list(series.index) == ["a", "b"] and series["a"] == 0.0


@pytest.mark.parametrize("method, scipy_fn", [("pearson", sps.pearsonr), ("spearman", sps.spearmanr)])
def test_correlation_and_ci_agree_with_scipy(method, scipy_fn):
    r = correlation(X, Y, method)
    assert r == pytest.approx(scipy_fn(X, Y).statistic)
    low, high = correlation_ci(X, Y, method, n_boot=2000, seed=3)
    assert low < r < high
    assert (low, high) == correlation_ci(X, Y, method, n_boot=2000, seed=3)
    assert (low, high) != correlation_ci(X, Y, method, n_boot=2000, seed=4)
    # the vectorised bootstrap equals scipy on each (non-degenerate) resample of the same draw
    idx = np.random.default_rng(3).integers(0, len(X), size=(2000, len(X)))
    boot = [scipy_fn(X[i], Y[i]).statistic for i in idx if np.ptp(X[i]) > 0 and np.ptp(Y[i]) > 0]
    assert (low, high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))


def test_ci_skips_constant_resamples():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])  # 1 in 9 resamples is constant
    low, high = correlation_ci(x, y, "pearson", n_boot=500)
    assert np.isfinite([low, high]).all() and -1.0 <= low <= high <= 1.0


@pytest.mark.parametrize("x, y, method, match", [
    ([1.0, 2.0], [2.0, 1.0], "pearson", "at least 3"),
    ([1.0, 2.0, np.nan], [2.0, 1.0, 3.0], "pearson", "at least 3 finite"),
    ([1.0, 1.0, 1.0], [2.0, 1.0, 3.0], "spearman", "constant"),
    (X, Y, "kendall", "Unknown correlation method 'kendall'"),
])
def test_correlation_rejects_bad_input(x, y, method, match):
    with pytest.raises(ConfigError, match=match):
        correlation(x, y, method)


def test_table9_correlation_row_is_reproduced():
    ours, printed = table9_correlations(), table9_printed_row()
    assert list(ours.index) == list(printed.index) and len(ours) == 11
    assert np.abs(ours - printed).max() <= 0.02, (ours - printed).round(3).to_dict()
    # The paper logit-transforms ECE (a proportion): raw ECE misses the printed value.
    raw = table9_correlations(logit_percent=False)
    assert abs(raw["ece_linear_unscaled"] - printed["ece_linear_unscaled"]) > 0.02


def test_paper_settings_shape_and_a_hand_checked_value():
    settings = paper_settings()
    assert settings.shape == (14, 12) and not settings.isna().any().any()
    assert list(settings.index) == list(paper_source_accuracy().index)
    assert {"linear", "finetune", "fewshot_kornblith_50shot", "fewshot_cdfsl_5shot", "detection_frozen",
            "detection_finetune", "surface_normals", "segmentation"} <= set(settings.columns)
    byol = paper_table("table1_linear").set_index("model").loc["BYOL"].drop(["imagenet_top1", "avg"])
    assert len(byol) == 11
    assert settings.loc["BYOL", "linear"] == pytest.approx(np.mean([math.log(v / (100 - v)) for v in byol]))
    assert settings.loc["Supervised", "segmentation"] == pytest.approx(math.log(0.2563 / (1 - 0.2563)))
    assert paper_source_accuracy()["Supervised"] == 77.2


def test_surface_normal_errors_are_negated():
    dense = paper_table("table5_dense").set_index("model")
    score = to_score(dense["sn_mean_err"], "sn_mean_err")
    assert (score == -dense["sn_mean_err"]).all()
    # a lower error is better, so its score rises with the fraction of normals within 11.25°
    assert correlation(score, to_score(dense["sn_within_11.25"], "sn_within_11.25")) > 0.9


def test_paper_correlations_have_one_row_per_setting_and_method():
    table = correlate(paper_settings(), paper_source_accuracy(), n_boot=200)
    assert list(table.columns) == ["setting", "method", "r", "ci_low", "ci_high", "n_models"]
    assert len(table) == 24 and (table.n_models == 14).all()
    assert ((table.ci_low <= table.r) & (table.r <= table.ci_high)).all()
    linear = table.set_index(["setting", "method"]).loc[("linear", "pearson")]
    assert linear.r > 0.9  # the paper's headline: ImageNet accuracy predicts many-shot linear transfer


def _row(section, model, dataset, metric, value, created="2024-01-01T00:00:00", source=50.0):
    extra = json.dumps({} if source is not None else {"skipped": "too few images"})
    return ResultRow(section=section, model=model, dataset=dataset, metric=metric, value=value,
                     created_utc=created, extra=extra, source_top1=math.nan if source is None else source)


def _results(rows):
    return pd.DataFrame([r.__dict__ for r in rows], columns=COLUMNS)


def test_results_settings_from_a_hand_made_table():
    rows = [
        _row("linear", "a", "d1", "top1", 60.0, source=40.0), _row("linear", "a", "d2", "top1", 80.0, source=40.0),
        _row("linear", "b", "d1", "top1", 10.0, source=30.0),
        _row("linear", "b", "d1", "top1", 70.0, created="2024-02-01T00:00:00", source=30.0),  # latest wins
        _row("fewshot", "a", "d1", "5way-20shot", 90.0, source=40.0),
        _row("fewshot", "a", "d2", "5way-20shot", math.nan, source=None),  # skipped setting
        _row("fewshot", "b", "d1", "5way-5shot", 55.0, source=30.0),
        _row("detection_v0", "a", "voc", "AP", 50.0, source=40.0),  # unknown section: ignored
        _row("fewshot", "a", "mini-crossdomain", "5way-20shot", 40.0, source=40.0),  # cross-domain: its own setting
        _row("fewshot", "b", "eurosat", "5way-5shot", 70.0, source=30.0),
    ]
    settings, source = results_settings(_results(rows))
    assert list(settings.columns) == ["linear", "fewshot_kornblith_5shot", "fewshot_kornblith_20shot",
                                      "fewshot_cdfsl_5shot", "fewshot_cdfsl_20shot"]  # the paper's order
    assert set(settings.columns) <= set(paper_settings().columns)  # the same names as the paper's settings
    assert settings.loc["a", "linear"] == pytest.approx((logit(60.0) + logit(80.0)) / 2)
    assert settings.loc["b", "linear"] == pytest.approx(logit(70.0))
    # the cross-domain task is not pooled into the Kornblith setting
    assert settings.loc["a", "fewshot_kornblith_20shot"] == pytest.approx(logit(90.0))
    assert settings.loc["a", "fewshot_cdfsl_20shot"] == pytest.approx(logit(40.0))
    assert math.isnan(settings.loc["b", "fewshot_kornblith_20shot"])
    assert source.to_dict() == {"a": 40.0, "b": 30.0}


def test_dense_detection_calibration_and_attention_rows_map_to_the_paper_settings():
    rows = [
        _row("linear", "a", "d1", "top1", 60.0, source=40.0),
        _row("detection", "a", "scenes", "frozen_AP50", 30.0, source=40.0),
        _row("detection", "a", "scenes", "frozen_AP", 12.0, source=40.0),  # only AP50 is a setting
        _row("dense", "a", "scenes", "seg_mean_iou", 0.25, source=40.0),  # a fraction, as Table 5
        _row("dense", "a", "normals", "sn_within_11.25", 20.0, source=40.0),
        _row("dense", "a", "normals", "sn_mean_err", 30.0, source=40.0),
        _row("calibration", "a", "d1", "ece_linear_unscaled", 8.0, source=40.0),
        _row("calibration", "a", "d1", "ece_linear_scaled_val", 3.0, source=40.0),  # not a Table 9 column
        _row("attention", "a", "src", "attentive_diffusion", 45.0, source=40.0),
    ]
    settings, _ = results_settings(_results(rows))
    assert list(settings.columns) == ["linear", "detection_frozen", "surface_normals", "segmentation",
                                      "ece_linear_unscaled", "attentive_diffusion"]  # the paper's order
    assert settings.loc["a", "segmentation"] == pytest.approx(logit(0.25, percent=False))
    assert settings.loc["a", "surface_normals"] == pytest.approx(logit(20.0))
    assert settings.loc["a", "ece_linear_unscaled"] == pytest.approx(logit(8.0))
    assert set(paper_settings().columns) >= {"detection_frozen", "segmentation", "surface_normals"}
    from ssl_lib.correlation import _PAPER_SETTING_ORDER

    assert list(paper_settings().columns) == list(_PAPER_SETTING_ORDER)


def test_results_settings_and_correlate_errors():
    with pytest.raises(ConfigError, match=r"No source_top1 .* \['a'\]"):
        results_settings(_results([_row("linear", "a", "d1", "top1", 60.0, source=None)]))
    with pytest.raises(ConfigError, match="lacks columns"):
        results_settings(pd.DataFrame({"model": ["a"]}))
    two_models = pd.DataFrame({"linear": [0.1, 0.2]}, index=["a", "b"])
    with pytest.raises(ConfigError, match="'linear' has 2 models"):
        correlate(two_models, pd.Series({"a": 40.0, "b": 30.0}))
