"""Many-shot linear evaluation, the paper's protocol (reference/paper.md §3.1).

Multinomial logistic regression on frozen, unnormalised features. C is chosen on validation
over the 45-value grid ``1 / logspace(-6, 5, 45)`` walked from C = 1e6 down to 1e-5, the first
best value winning (strict ``>``, as in the official code). Validation is the official split
where one exists (Aircraft, DTD, Flowers, VOC2007, the mini suite) and otherwise the seeded 20%
carve of train. The classifier is then refit on train+val at the chosen C and scored on test
with the dataset's metric. The test split never takes part in any choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data import carve_validation, get_dataset_spec
from ..features import Features, get_features
from ..metrics import compute_metric
from ..stats import bootstrap_ci
from .logreg import C_GRID, fit, fit_path

__all__ = ["LinearSplits", "LinearResult", "select_C", "evaluate_linear", "load_linear_splits", "run_linear"]


@dataclass
class LinearSplits:
    """Features for the three roles; ``val_source`` says where validation came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    val_source: str  # "official" or "carve20(seed=0)"
    cache_keys: dict = field(default_factory=dict)
    extract_seconds: float = 0.0


@dataclass
class LinearResult:
    metric: str
    test_score: float
    ci_low: float
    ci_high: float
    best_C: float
    val_scores: np.ndarray  # one per C, in grid order
    c_grid: np.ndarray
    solver: str
    n_train: int
    n_val: int
    n_test: int
    val_source: str
    fit_seconds: float
    test_scores_raw: np.ndarray = field(repr=False, default=None)  # decision values on test
    # decision values on val of the selection fit at the chosen C (trained on train only): the
    # validation logits that temperature scaling's "val" variant is fitted on
    val_scores_raw: np.ndarray = field(repr=False, default=None)


def select_C(c_grid: np.ndarray, val_scores: np.ndarray) -> int:
    """Index of the first best validation score in grid order (the official code's strict ``>``)."""
    best, best_idx = -np.inf, 0
    for i, score in enumerate(val_scores):
        if score > best:
            best, best_idx = score, i
    return best_idx


def evaluate_linear(
    splits: LinearSplits,
    *,
    metric: str,
    multilabel: bool,
    num_classes: int,
    solver: str = "torch",
    c_grid: np.ndarray = C_GRID,
    n_boot: int = 1000,
    seed: int = 0,
    device=None,
) -> LinearResult:
    """Select C on validation, refit on train+val, score on test."""
    start = time.perf_counter()
    kwargs = dict(solver=solver, multilabel=multilabel, num_classes=num_classes, device=device)
    path = fit_path(splits.X_train, splits.y_train, c_grid, **kwargs)
    val_scores = np.array([compute_metric(metric, splits.y_val, clf.decision_function(splits.X_val)) for clf in path])
    best = select_C(c_grid, val_scores)
    X_trainval = np.concatenate([splits.X_train, splits.X_val])
    y_trainval = np.concatenate([splits.y_train, splits.y_val])
    # The official code warm-starts the refit from the last fit of the path; only the
    # 'sklearn-paper' solver (not run to convergence) can tell the difference.
    init = path[-1] if solver == "sklearn-paper" else path[best]
    final = fit(X_trainval, y_trainval, float(c_grid[best]), init=init, **kwargs)
    scores = final.decision_function(splits.X_test)
    test_score = compute_metric(metric, splits.y_test, scores)
    low, high = bootstrap_ci(
        lambda y, s: compute_metric(metric, y, s), splits.y_test, scores, n_boot=n_boot, seed=seed
    )
    return LinearResult(
        metric=metric, test_score=test_score, ci_low=low, ci_high=high, best_C=float(c_grid[best]),
        val_scores=val_scores, c_grid=np.asarray(c_grid), solver=solver,
        n_train=len(splits.y_train), n_val=len(splits.y_val), n_test=len(splits.y_test),
        val_source=splits.val_source, fit_seconds=time.perf_counter() - start, test_scores_raw=scores,
        val_scores_raw=path[best].decision_function(splits.X_val),
    )


def load_linear_splits(model, dataset: str, *, carve_seed: int = 0, carve: bool = False,
                       **feature_kwargs) -> LinearSplits:
    """Features for train/val/test, carving validation from train when there is no official one
    (``carve=True``: carve even where there is; the official validation images are then unused)."""
    spec = get_dataset_spec(dataset)
    splits = [s for s in spec.splits if s != "val"] if carve else spec.splits
    parts: dict[str, Features] = {s: get_features(model, dataset, s, **feature_kwargs) for s in splits}
    train, test = parts["train"], parts["test"]
    if spec.has_official_val and not carve:
        val = parts["val"]
        X_tr, y_tr, X_val, y_val = train.features, train.labels, val.features, val.labels
        source = "official"
    else:
        tr_idx, val_idx = carve_validation(len(train.labels), seed=carve_seed)
        X_tr, y_tr = train.features[tr_idx], train.labels[tr_idx]
        X_val, y_val = train.features[val_idx], train.labels[val_idx]
        source = f"carve20(seed={carve_seed})"
    return LinearSplits(
        X_tr, y_tr, X_val, y_val, test.features, test.labels, source,
        cache_keys={s: f.key for s, f in parts.items()},
        extract_seconds=sum(f.seconds for f in parts.values()),
    )


def run_linear(model, dataset: str, *, solver: str = "torch", n_boot: int = 1000, seed: int = 0,
               c_grid: np.ndarray = C_GRID, device=None, **feature_kwargs) -> tuple[LinearResult, LinearSplits]:
    """Features (cached) → protocol for one model and dataset."""
    spec = get_dataset_spec(dataset)
    if spec.kind not in ("classification", "multilabel"):
        raise ValueError(f"Dataset {dataset!r} is a {spec.kind} task; the linear section needs classification data.")
    splits = load_linear_splits(model, dataset, device=device, **feature_kwargs)
    result = evaluate_linear(
        splits, metric=spec.metric, multilabel=spec.multilabel, num_classes=spec.num_classes,
        solver=solver, c_grid=c_grid, n_boot=n_boot, seed=seed, device=device,
    )
    return result, splits
