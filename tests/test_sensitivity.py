"""The sensitivity section: variants re-score the default protocol with one choice changed, and say
how much each number, the model ranking and the scorecard's verdicts move."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ssl_lib.evaluate.fewshot import EpisodeCfg, evaluate_fewshot
from ssl_lib.evaluate.linear import LinearSplits
from ssl_lib.outcomes import OUTCOME_KINDS, metric_on, paired_difference, resampled, save_outcomes
from ssl_lib.sections import SECTIONS
from ssl_lib.sensitivity import (VARIANTS, Variant, changes, independent_difference, rank_correlations, substitute,
                                 verdict_flips, verdict_table)
from ssl_lib.sensitivity._protocols import l2_normalise, standardise
from ssl_lib.sensitivity._training import second_best
from ssl_lib.sensitivity.compare import MemoComparer
from ssl_lib.sensitivity.compute import ALTERNATIVE, BASELINE, SCORE_COLUMNS, load_scores, save_scores
from ssl_lib.sensitivity.variants import Score

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ORIGINS = ("paper text", "paper's code", "official code", "peer practice")


# ------------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_says_where_it_comes_from_and_what_it_replaces(name):
    v = VARIANTS.get(name)
    assert v.name == name and v.section in SECTIONS
    assert v.source.startswith(ORIGINS), v.source
    assert v.default and v.alternative and v.default != v.alternative
    from ssl_lib.sections.sensitivity import SensitivityParams

    settings = v.settings(SensitivityParams())
    assert settings and all(isinstance(label, str) for label in settings)
    assert v.baseline is None or v.baseline[0] not in settings


def test_the_issues_variants_are_registered():
    assert {"linear-sklearn-paper", "linear-standardised", "linear-coarse-grid", "linear-carve-seed",
            "fewshot-resize", "fewshot-l2", "fewshot-episode-seed", "finetune-no-augment", "finetune-second-best",
            "calibration-val-temperature", "dense-segmentation-freeze", "finetune-seed", "detection-seed",
            "dense-seed"} <= set(VARIANTS)
    assert not VARIANTS.get("fewshot-episode-seed").paired  # other seeds draw other episodes


def test_an_unknown_variant_names_the_close_ones():
    from ssl_lib.exceptions import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'fewshot-l2'"):
        VARIANTS.get("fewshot-l3")


# ---------------------------------------------------------------------------------- small pieces
def test_standardise_uses_the_training_split_statistics_and_leaves_constant_dimensions_centred():
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, (50, 4)).astype(np.float32)
    X[:, 2] = 7.0
    splits = LinearSplits(X[:30], np.zeros(30), X[30:40], np.zeros(10), X[40:], np.zeros(10), "official")
    out = standardise(splits)
    np.testing.assert_allclose(out.X_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.X_train[:, [0, 1, 3]].std(0), 1, atol=1e-4)
    assert np.all(out.X_train[:, 2] == 0) and np.all(out.X_test[:, 2] == 0)
    mean, std = X[:30].mean(0), X[:30].std(0)
    np.testing.assert_allclose(out.X_test[:, 0], (X[40:, 0] - mean[0]) / std[0], rtol=1e-5)


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(l2_normalise(X), [[0.6, 0.8], [0, 0], [0, 1]])


def test_second_best_is_the_runner_up_in_grid_order():
    points = [{"lr": 0.1, "val_score": 50.0}, {"lr": 0.01, "val_score": 70.0}, {"lr": 0.001, "val_score": 50.0},
              {"lr": 0.0001, "val_score": 70.0}]
    assert second_best(points)["lr"] == 0.0001  # the tie with the chosen point (the first 70) comes next
    assert second_best(points[:3])["lr"] == 0.1  # first of the tied 50s
    assert second_best(points[:1]) is None


def test_batched_resamples_equal_one_resample_at_a_time():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 300)
    arrays = {"y_true": y, "y_pred": np.where(rng.random(300) < 0.6, y, (y + 1) % 6)}
    idx = rng.integers(0, 300, size=(40, 300))
    for metric in ("top1", "mean_per_class"):
        loop = [OUTCOME_KINDS.get("labels")(arrays, metric, row) for row in idx]
        np.testing.assert_allclose(resampled("labels", arrays, metric, idx), loop, rtol=1e-12)


def test_scores_survive_the_cache_round_trip(tmp_path):
    scores = [Score("d", "top1", 55.0, "labels", {"y_true": np.arange(4), "y_pred": np.arange(4)}, {"C": 0.1}),
              Score("d", "5way-5shot", 40.0, "values", {"values": np.ones(3)}, {})]
    save_scores(tmp_path / "s.npz", scores)
    back = load_scores(tmp_path / "s.npz")
    assert [(s.metric, s.value, s.kind, s.details) for s in back] == [(s.metric, s.value, s.kind, s.details)
                                                                      for s in scores]
    np.testing.assert_array_equal(back[0].arrays["y_pred"], np.arange(4))
    assert load_scores(tmp_path / "missing.npz") is None


# ------------------------------------------------------------------------ comparisons, synthetic
def _fewshot_features(rng, unequal: bool):
    """5 classes of 40 images: class directions plus noise; ``unequal``: every image's norm scaled
    by a random factor (0.2-5), which moves points between prototypes unless features are normalised."""
    centres = rng.normal(size=(5, 16))
    labels = np.repeat(np.arange(5), 40)
    feats = centres[labels] + 0.9 * rng.normal(size=(200, 16))
    if unequal:
        feats *= np.exp(rng.uniform(np.log(0.2), np.log(5), size=(200, 1)))
    return feats.astype(np.float32), labels


def _score_line(results, variant, setting, role, model, section, dataset, metric, kind, arrays):
    rel = save_outcomes(results, f"{variant}/{setting}/{model}/{dataset}/{metric}", kind, **arrays)
    return {"variant": variant, "setting": setting, "role": role, "model": model, "section": section,
            "dataset": dataset, "metric": metric, "value": metric_on(kind, arrays, metric), "outcomes": rel,
            "details": "{}", "cached": False, "seconds": 0.0}


def _default_row(results, section, model, dataset, metric, kind, arrays, source=50.0):
    rel = save_outcomes(results, f"default/{section}/{model}/{dataset}/{metric}", kind, **arrays)
    return {"section": section, "model": model, "dataset": dataset, "metric": metric,
            "value": metric_on(kind, arrays, metric), "outcomes": rel, "created_utc": "2026-01-01T00:00:00Z",
            "extra": json.dumps({"source_top1": source})}


def test_a_variant_identical_to_the_default_reports_zero_change_and_rank_correlation_one(tmp_path):
    results = tmp_path / "results.csv"
    rng = np.random.default_rng(0)
    cfg = EpisodeCfg(5, 5, 15, 100)
    defaults, lines = [], []
    for i, model in enumerate(["a", "b", "c", "d"]):
        feats, labels = _fewshot_features(rng, unequal=True)
        feats = feats * (1 + i)  # and models differ
        acc = evaluate_fewshot(feats + i * rng.normal(size=feats.shape).astype(np.float32), labels, cfg).episode_accuracies
        defaults.append(_default_row(results, "fewshot", model, "toy", "5way-5shot", "values", {"values": acc}))
        # the same protocol again: the same episodes and features
        lines.append(_score_line(results, "fewshot-l2", "identity", ALTERNATIVE, model, "fewshot", "toy",
                                 "5way-5shot", "values", {"values": acc.copy()}))
    table = changes(pd.DataFrame(lines, columns=SCORE_COLUMNS), pd.DataFrame(defaults), results, n_boot=200)
    assert (table.change == 0).all() and (table.ci_low == 0).all() and (table.ci_high == 0).all()
    assert (table.n == 100).all() and table.interval.str.startswith("paired").all()
    ranks = rank_correlations(table)
    assert ranks.spearman.tolist() == [1.0] and ranks.n_models.tolist() == [4]


def test_l2_normalisation_on_features_with_unequal_norms_changes_the_score_on_the_same_episodes(tmp_path):
    results = tmp_path / "results.csv"
    rng = np.random.default_rng(1)
    feats, labels = _fewshot_features(rng, unequal=True)
    cfg = EpisodeCfg(5, 5, 15, 200)
    raw = evaluate_fewshot(feats, labels, cfg, seed=0)
    l2 = evaluate_fewshot(l2_normalise(feats), labels, cfg, seed=0)
    defaults = pd.DataFrame([_default_row(results, "fewshot", "m", "toy", "5way-5shot", "values",
                                          {"values": raw.episode_accuracies})])
    lines = pd.DataFrame([_score_line(results, "fewshot-l2", "L2-normalised", ALTERNATIVE, "m", "fewshot", "toy",
                                      "5way-5shot", "values", {"values": l2.episode_accuracies})], columns=SCORE_COLUMNS)
    row = changes(lines, defaults, results, n_boot=500).iloc[0]
    assert row.change == pytest.approx(l2.accuracy - raw.accuracy) and row.change > 5  # normalising helps here
    assert row.ci_low > 0  # paired over the same 200 episodes, the interval excludes zero
    # with equal norms the two classifiers nearly coincide: the change is small
    feats_eq, labels_eq = _fewshot_features(np.random.default_rng(1), unequal=False)
    feats_eq = feats_eq / np.linalg.norm(feats_eq, axis=1, keepdims=True)
    assert evaluate_fewshot(feats_eq, labels_eq, cfg).accuracy == evaluate_fewshot(l2_normalise(feats_eq),
                                                                                  labels_eq, cfg).accuracy


def test_the_paired_interval_is_narrower_than_independent_resamples_of_the_same_scores(tmp_path):
    results = tmp_path / "results.csv"
    rng = np.random.default_rng(2)
    base = rng.normal(60, 15, 600)  # episodes differ a lot in difficulty ...
    shifted = base + 1.0 + rng.normal(0, 1, 600)  # ... and the variant moves each a little
    a = save_outcomes(results, "a", "values", values=shifted)
    b = save_outcomes(results, "b", "values", values=base)
    paired = paired_difference(results, a, b, "m", n_boot=500)
    independent = independent_difference(results, a, b, "m", n_boot=500)
    assert paired.difference == pytest.approx(independent.difference)
    assert paired.ci_low > 0 and independent.ci_low < 0  # pairing sees the shift; independent resamples do not
    assert (paired.ci_high - paired.ci_low) < 0.2 * (independent.ci_high - independent.ci_low)


def test_a_computed_baseline_is_compared_with_the_variants_own_reference(tmp_path):
    results = tmp_path / "results.csv"
    y = np.arange(100) % 4
    right = lambda p: np.where(np.random.default_rng(p).random(100) < p / 100, y, (y + 1) % 4)  # noqa: E731
    lines = [_score_line(results, "linear-carve-seed", "seed 0", BASELINE, "m", "linear", "toy", "top1", "labels",
                         {"y_true": y, "y_pred": right(60)}),
             _score_line(results, "linear-carve-seed", "seed 1", ALTERNATIVE, "m", "linear", "toy", "top1", "labels",
                         {"y_true": y, "y_pred": right(80)})]
    recorded = pd.DataFrame([_default_row(results, "linear", "m", "toy", "top1", "labels",
                                          {"y_true": y, "y_pred": right(70)})])
    row = changes(pd.DataFrame(lines, columns=SCORE_COLUMNS), recorded, results, n_boot=100).iloc[0]
    assert row.default_from == "seed 0" and row.default == lines[0]["value"]
    assert row.change == pytest.approx(lines[1]["value"] - lines[0]["value"])


def test_substitute_replaces_only_the_rescored_rows():
    rows = pd.DataFrame([{"section": "linear", "model": "m", "dataset": "d", "metric": "top1", "value": 1.0,
                          "outcomes": "o1"},
                         {"section": "linear", "model": "n", "dataset": "d", "metric": "top1", "value": 2.0,
                          "outcomes": "o2"}])
    scores = pd.DataFrame([{"section": "linear", "model": "n", "dataset": "d", "metric": "top1", "value": 9.0,
                            "outcomes": "new"},
                           {"section": "linear", "model": "x", "dataset": "d", "metric": "top1", "value": 5.0,
                            "outcomes": "none"}])
    out = substitute(rows, scores)
    assert out.value.tolist() == [1.0, 9.0] and out.outcomes.tolist() == ["o1", "new"] and len(out) == 2
    assert rows.value.tolist() == [1.0, 2.0]  # the input is left alone


def test_a_flipped_verdict_is_detected(tmp_path):
    """Supervised clearly beats both SSL models on three tasks (the linear finding disagrees); under
    the variant the SSL models clearly win (it agrees): a flip of 'linear', and of nothing unrelated."""
    results = tmp_path / "results.csv"
    y = np.random.default_rng(123).integers(0, 5, 600)

    def arrays(acc, seed):
        return {"y_true": y, "y_pred": np.where(np.random.default_rng(seed).random(600) < acc, y, (y + 1) % 5)}

    datasets = ["mini-objects", "mini-textures", "mini-digits"]
    accuracy = {"supervised": 0.8, "simclr": 0.5, "byol": 0.55}
    defaults = pd.DataFrame([_default_row(results, "linear", m, d, "top1", "labels", arrays(a, 10 * i + j))
                             for i, (m, a) in enumerate(accuracy.items()) for j, d in enumerate(datasets)])
    lines = pd.DataFrame([_score_line(results, "linear-standardised", "standardised", ALTERNATIVE, m, "linear", d,
                                      "top1", "labels", arrays(a, 7 + i))
                          for m, a in {"simclr": 0.9, "byol": 0.92}.items() for i, d in enumerate(datasets)],
                         columns=SCORE_COLUMNS)
    flips = verdict_flips(defaults, lines, "mini", MemoComparer(results, n_boot=300)).set_index("finding")
    assert flips.loc["linear", "default"] == "disagrees" and flips.loc["linear", "variant_status"] == "agrees"
    assert flips.loc["linear", "flipped"] and not flips.loc["detection", "flipped"]
    table = changes(lines, defaults, results, n_boot=200)
    summary = verdict_table(table, rank_correlations(table), flips.reset_index()).iloc[0]
    assert "linear: disagrees → agrees (standardised)" in summary.verdicts
    assert summary["intervals excluding 0"] == "6 of 6"


# --------------------------------------------------------------------------- the section, end to end
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Three random mini ResNets, few-shot and linear rows on mini-digits recorded as the defaults."""
    from ssl_lib.models import build_arch
    from ssl_lib.sections.fewshot import FewShotParams, run_fewshot_section
    from ssl_lib.sections.linear import LinearParams, run_linear_section

    root = tmp_path_factory.mktemp("tiny")
    specs = []
    for i in range(3):
        torch.manual_seed(10 + i)
        path = root / f"m{i}.pth"
        torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, path)
        specs.append(f"file:{path}?arch=mini_resnet")
    study = {"name": "tiny", "zoo": "mini", "seed": 0, "models": specs, "sections": {
        "linear": {"datasets": ["mini-digits"], "params": {"n_boot": 0}},
        "fewshot": {"datasets": ["mini-digits"], "params": {"shots": "5", "n_episodes": 60}},
        "sensitivity": {"params": {"shots": "5"}}}}
    study_path = root / "tiny.yaml"
    study_path.write_text(yaml.safe_dump(study))
    results = root / "results.csv"
    for spec in specs:
        run_fewshot_section(FewShotParams(study=str(study_path), model=spec, shots="5", n_episodes=60,
                                          results_path=str(results)))
        run_linear_section(LinearParams(study=str(study_path), model=spec, n_boot=0, results_path=str(results)))
    return study_path, results, specs


@pytest.mark.slow
def test_the_section_compares_variants_with_the_recorded_rows_and_caches_its_scores(tiny_study):
    from ssl_lib.results import read_results
    from ssl_lib.sections.sensitivity import SensitivityParams, run_sensitivity

    study_path, results, specs = tiny_study
    params = SensitivityParams(study=str(study_path), variants="fewshot-episode-seed,fewshot-l2,linear-carve-seed",
                               episode_seeds="0", carve_seeds="0", shots="5", n_boot=200, results_path=str(results))
    page = run_sensitivity(params)
    same = page.changes[page.changes.variant == "fewshot-episode-seed"]  # seed 0 is the default: identical
    assert len(same) == 3 and (same.change == 0).all() and (same.ci_low == 0).all() and (same.ci_high == 0).all()
    assert page.ranks.set_index("variant").loc["fewshot-episode-seed", "spearman"] == 1.0
    carve = page.changes[page.changes.variant == "linear-carve-seed"]  # seed 0 against its own baseline, seed 0
    assert (carve.change == 0).all() and (carve.default_from == "seed 0").all()
    l2 = page.changes[page.changes.variant == "fewshot-l2"]
    assert (l2.change != 0).any() and (l2.n == 60).all()
    assert set(page.summary.verdicts) == {"verdicts unchanged"}
    rows = read_results(results)
    mine = rows[rows.section == "sensitivity"]
    assert {json.loads(e)["variant"] for e in mine[mine.model.isin(specs)].extra} == set(page.variants)
    assert (mine[mine.model.isin(specs)].outcomes.str.len() > 0).all()
    again = run_sensitivity(params)  # everything from the cache
    assert all(v == 1.0 for v in again.cached.values())
    pd.testing.assert_frame_equal(again.changes, page.changes)


@pytest.mark.slow
def test_the_sensitivity_notebook_runs_for_a_model_list(tiny_study, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import nbformat

    study_path, results, specs = tiny_study
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(root / "notebooks" / "sensitivity.ipynb"), str(out), "--cwd", str(root),
         "-k", "python3", "--no-progress-bar", "-p", "study", str(study_path), "-p", "model", ",".join(specs[:2]),
         "-p", "variants", "fewshot-l2,fewshot-resize", "-p", "n_boot", "100", "-p", "results_path", str(results)],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("data", {}).get("text/html", "") + o.get("data", {}).get("text/markdown", "")
                   for c in nb.cells for o in c.get("outputs", []))
    assert "fewshot-l2" in text and "verdicts unchanged" in text and "SimpleShot" in text
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_the_score_key_does_not_depend_on_where_the_study_file_lies(random_mini_model):
    from ssl_lib.sections.sensitivity import SensitivityParams
    from ssl_lib.sensitivity import ModelContext
    from ssl_lib.sensitivity.compute import score_key
    from ssl_lib.study import load_study

    import os

    absolute = load_study("mini").path.resolve()
    by_name, by_path = load_study(str(absolute)), load_study(os.path.relpath(absolute))
    keys = {score_key(ModelContext(st, SensitivityParams(), random_mini_model), VARIANTS.get(v), d, "s", 1)
            for st in (by_name, by_path) for v, d in [("linear-standardised", "mini-colour")]}
    assert len(keys) == 1
    ctx = ModelContext(by_name, SensitivityParams(), random_mini_model)
    assert score_key(ctx, VARIANTS.get("linear-standardised"), "mini-colour", "s", 2) not in keys


def test_a_variant_must_name_a_results_table(tmp_path):
    from ssl_lib.exceptions import ConfigError
    from ssl_lib.sections.sensitivity import SensitivityParams, run_sensitivity

    with pytest.raises(ConfigError, match="run the sections first"):
        run_sensitivity(SensitivityParams(model="byol", results_path=str(tmp_path / "none.csv")))


def test_variant_datasets_follow_the_parameter_and_reject_unknown_ones():
    from ssl_lib.exceptions import UnknownNameError
    from ssl_lib.sections.sensitivity import SensitivityParams
    from ssl_lib.sensitivity import ModelContext
    from ssl_lib.study import load_study

    study = load_study("mini")
    v = VARIANTS.get("linear-standardised")
    assert v.dataset_names(ModelContext(study, SensitivityParams(), None)) == list(study.section("linear").datasets)
    ctx = ModelContext(study, SensitivityParams(linear_datasets="mini-colour"), None)
    assert v.dataset_names(ctx) == ["mini-colour"]
    assert VARIANTS.get("calibration-val-temperature").dataset_names(ctx) == ["mini-colour"]
    with pytest.raises(UnknownNameError, match="Did you mean 'mini-colour'"):
        v.dataset_names(ModelContext(study, SensitivityParams(linear_datasets="mini-color"), None))
    assert isinstance(v, Variant)
