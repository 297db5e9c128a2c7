"""Variants of the protocols that run on cached features: linear, calibration and few-shot.

None of them extracts a feature the sections have not: the linear features (shorter-side resize)
and the few-shot features (the study's resize) come from the feature cache, and the few-shot
``shorter`` variant reads the linear section's features.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..data import get_dataset_spec, parse_accepted
from ..evaluate.calibration import cv_scaled_ece, ece, fit_temperature, scaled_probs
from ..evaluate.fewshot import EpisodeCfg, evaluate_fewshot, shortfall
from ..evaluate.linear import LinearSplits, evaluate_linear, load_linear_splits
from ..evaluate.logreg import C_GRID
from .variants import VARIANTS, ModelContext, Score, Variant, parse_seeds

__all__ = ["COARSE_GRID", "linear_score", "fewshot_scores", "standardise", "l2_normalise"]

#: The coarse grid: the paper's range, 1/logspace(-6, 5, 9) (1.375 decades a step instead of 0.25).
COARSE_GRID: np.ndarray = 1.0 / np.logspace(-6, 5, 9)


# ----------------------------------------------------------------------------------------- linear
def _linear_splits(ctx: ModelContext, dataset: str, **kwargs) -> LinearSplits:
    lp = ctx.section_params("linear")
    return load_linear_splits(ctx.model, dataset, device=ctx.device, root=lp.data_root or None,
                              download=lp.download, progress=False, batch_size=lp.batch_size,
                              num_workers=lp.num_workers,
                              accept_sizes=dataset in parse_accepted(lp.accept_split_sizes), **kwargs)


def _label_outcome(dataset: str, y_test: np.ndarray, scores: np.ndarray) -> tuple[str, dict]:
    """The linear section's outcomes: predicted labels, or the scores for a multi-label task."""
    if get_dataset_spec(dataset).multilabel:
        return "scores", {"y_true": y_test, "scores": scores.astype(np.float32)}
    return "labels", {"y_true": y_test, "y_pred": scores.argmax(1)}


def _run_linear(ctx: ModelContext, dataset: str, splits: LinearSplits, *, solver: str | None = None,
                c_grid: np.ndarray = C_GRID):
    spec = get_dataset_spec(dataset)
    lp = ctx.section_params("linear")
    return evaluate_linear(splits, metric=spec.metric, multilabel=spec.multilabel, num_classes=spec.num_classes,
                           solver=solver or lp.solver, c_grid=c_grid, n_boot=0, seed=lp.seed, device=ctx.device)


def linear_score(ctx: ModelContext, dataset: str, splits: LinearSplits, **kwargs) -> Score:
    """The linear protocol on ``splits`` (the study's solver unless ``solver``) as a :class:`Score`."""
    result = _run_linear(ctx, dataset, splits, **kwargs)
    kind, arrays = _label_outcome(dataset, splits.y_test, result.test_scores_raw)
    return Score(dataset, result.metric, result.test_score, kind, arrays,
                 {"C": result.best_C, "solver": result.solver, "grid": len(result.c_grid),
                  "val_source": splits.val_source})


def standardise(splits: LinearSplits) -> LinearSplits:
    """Features z-scored with the training features' mean and standard deviation (a constant
    dimension is only centred)."""
    mean = splits.X_train.mean(axis=0, dtype=np.float64)
    std = splits.X_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0

    def z(x):
        return ((x - mean) / std).astype(np.float32)

    return replace(splits, X_train=z(splits.X_train), X_val=z(splits.X_val), X_test=z(splits.X_test))


def _solver(ctx, dataset, solver):
    return [linear_score(ctx, dataset, _linear_splits(ctx, dataset), solver=solver)]


def _standardised(ctx, dataset, _):
    return [linear_score(ctx, dataset, standardise(_linear_splits(ctx, dataset)))]


def _grid(ctx, dataset, size):
    return [linear_score(ctx, dataset, _linear_splits(ctx, dataset), c_grid=1.0 / np.logspace(-6, 5, size))]


def _carve(ctx, dataset, seed):
    return [linear_score(ctx, dataset, _linear_splits(ctx, dataset, carve=True, carve_seed=seed))]


VARIANTS.add("linear-sklearn-paper", Variant(
    "linear-sklearn-paper", "linear", default="the study's solver run to convergence (torch L-BFGS, tested against "
    "converged scikit-learn)", alternative="scikit-learn lbfgs at its defaults, warm-started down the grid",
    source="official code: LogisticRegression(lbfgs, warm_start=True) at max_iter=100, tol=1e-4, not converged",
    compute=_solver, settings=lambda p: {"sklearn-paper": "sklearn-paper"}))
VARIANTS.add("linear-standardised", Variant(
    "linear-standardised", "linear", default="raw pooled features (the paper's code)",
    alternative="features z-scored with the training split's mean and standard deviation",
    source="peer practice: SynCLR's downstream linear evaluation standardises the features",
    compute=_standardised, settings=lambda p: {"standardised": True}))
VARIANTS.add("linear-coarse-grid", Variant(
    "linear-coarse-grid", "linear", default="45 values of C, 1/logspace(-6, 5, 45) (the paper's code)",
    alternative="9 values over the same range, 1/logspace(-6, 5, 9)",
    source="peer practice: coarse C grids (NeWT's 8 values; Kornblith's linear_eval sweeps 7 values, then bisects)",
    compute=_grid, settings=lambda p: {"9 values": 9}))
VARIANTS.add("linear-carve-seed", Variant(
    "linear-carve-seed", "linear", default="validation carved as 20% of train with seed 0",
    alternative="the same carve with another seed",
    source="official code: np.random.seed(0) shuffles train and its first 20% is validation, where a dataset has "
           "no official validation split (CIFAR, Caltech101, Cars, Food, Pets, SUN397)",
    compute=_carve, baseline=("seed 0", 0),
    settings=lambda p: {f"seed {s}": s for s in parse_seeds(p.carve_seeds, "carve_seeds")},
    note="every mini dataset ships a validation split, which the default uses; here both seed 0 and the other "
         "seeds carve 20% of train instead (the official validation images are unused), so the comparison is "
         "seed against seed"))


# ------------------------------------------------------------------------------------ calibration
def _temperature(ctx: ModelContext, dataset: str, where: str) -> list[Score]:
    """The default linear fit's test logits, scaled by T fitted on 5-fold test splits (the paper) or
    on the validation logits of the selection fit at the chosen C."""
    key = ("linear-default", dataset)
    if key not in ctx.memo:
        splits = _linear_splits(ctx, dataset)
        ctx.memo[key] = (splits, _run_linear(ctx, dataset, splits))
    splits, result = ctx.memo[key]
    logits, labels = result.test_scores_raw, splits.y_test
    seed = ctx.section_params("linear").seed
    if where == "test-cv":
        value, temperatures, _ = cv_scaled_ece(logits, labels, seed=seed)
        t, details = float("nan"), {"T_folds": temperatures}
    else:
        t = fit_temperature(result.val_scores_raw, splits.y_val)
        value, details = ece(scaled_probs(logits, t), labels), {"T": t}
    arrays = {"logits": logits.astype(np.float64), "labels": labels, "temperature": np.asarray(t),
              "cv_seed": np.asarray(seed)}
    return [Score(dataset, "ece_linear_scaled", float(value), "ece", arrays, {"C": result.best_C, **details})]


VARIANTS.add("calibration-val-temperature", Variant(
    "calibration-val-temperature", "calibration",
    default="temperature fitted on 5-fold splits of the test logits, ECE on the other folds (the paper's code)",
    alternative="temperature fitted on the validation logits, ECE on all test logits",
    source="peer practice: temperature scaling fits T on held-out validation data (Guo et al., 2017)",
    compute=_temperature, baseline=("test-cv", "test-cv"), settings=lambda p: {"val": "val"},
    section_of_data="linear",
    datasets=lambda ctx: [d for d in ctx.study.section("linear").datasets if not get_dataset_spec(d).multilabel],
    note="the linear classifiers' ECE (the paper skips multi-label tasks); the scorecard's calibration finding "
         "reads the unscaled ECE, which no temperature changes"))


# --------------------------------------------------------------------------------------- few-shot
def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Each feature vector divided by its Euclidean norm (a zero vector stays zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def fewshot_scores(ctx: ModelContext, dataset: str, *, resize: str | None = None, normalise: bool = False,
                   seed: int | None = None) -> list[Score]:
    """The few-shot protocol for the sensitivity shots (``params.shots``), one setting changed."""
    from ..sections._common import parse_numbers
    from ..sections.fewshot import metric_name, pooled_features

    fp = ctx.section_params("fewshot")
    fp = replace(fp, resize=resize or fp.resize, device=ctx.device or "")
    features, labels, _, _ = pooled_features(ctx.model, dataset, fp)
    if normalise:
        features = l2_normalise(features)
    seed = fp.seed if seed is None else seed
    out = []
    for n_shot in parse_numbers(ctx.params.shots, "shots", int):
        cfg = EpisodeCfg(fp.n_way, n_shot, fp.n_query, fp.n_episodes)
        if shortfall(labels, cfg) is not None:
            continue  # the section skipped it too
        result = evaluate_fewshot(features, labels, cfg, seed=seed, device=ctx.device)
        out.append(Score(dataset, metric_name(cfg.n_way, n_shot), result.accuracy, "values",
                         {"values": result.episode_accuracies},
                         {"resize": fp.resize, "l2": normalise, "episode_seed": seed}))
    return out


VARIANTS.add("fewshot-resize", Variant(
    "fewshot-resize", "fewshot", default="square resize to 1.15x the input size, centre crop (the official code)",
    alternative="shorter side resized, centre crop (the linear section's features)",
    source="paper text: shorter side resized to 224 (bicubic), then a 224 centre crop",
    compute=lambda ctx, d, resize: fewshot_scores(ctx, d, resize=resize),
    settings=lambda p: {"shorter": "shorter"}))
VARIANTS.add("fewshot-l2", Variant(
    "fewshot-l2", "fewshot", default="raw features (the paper's code)", alternative="L2-normalised features",
    source="peer practice: SimpleShot (Wang et al., 2019) L2-normalises features for nearest-centroid few-shot",
    compute=lambda ctx, d, _: fewshot_scores(ctx, d, normalise=True), settings=lambda p: {"L2-normalised": True}))
VARIANTS.add("fewshot-episode-seed", Variant(
    "fewshot-episode-seed", "fewshot", default="episodes drawn with the study's seed (0)",
    alternative="600 other episodes, drawn with another seed",
    source="peer practice: few-shot results over several sampling seeds (shots x seeds {0, 1, 2} in VTAB-style "
           "suites); the paper's CD-FSL loaders are unseeded",
    compute=lambda ctx, d, seed: fewshot_scores(ctx, d, seed=seed), paired=False,
    settings=lambda p: {f"seed {s}": s for s in parse_seeds(p.episode_seeds, "episode_seeds")}))
