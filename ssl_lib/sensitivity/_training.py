"""Variants that train networks: fine-tune (augmentation, the grid's runner-up, training seeds),
detection and dense prediction (training seeds; frozen vs end-to-end segmentation).

They run the sections' own code with one setting changed, with the sections' resumable states
(fine-tune grid points, trained detectors) where those exist; every score is also kept in the
sensitivity cache (:mod:`ssl_lib.sensitivity.compute`), so a rerun trains nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..data import parse_accepted
from ..metrics.dense import NORMALS_METRICS, SEG_METRICS
from .variants import VARIANTS, ModelContext, Score, Variant, parse_seeds

__all__ = ["finetune_scores", "second_best", "detection_scores", "dense_scores"]


# -------------------------------------------------------------------------------------- fine-tune
def _finetune_default(ctx: ModelContext):
    from ..sections.finetune import finetune_cfg

    fp = ctx.section_params("finetune")
    return fp, finetune_cfg(fp)


def _outcome_score(dataset: str, metric: str, outcome: dict, value: float, details: dict) -> Score:
    outcome = dict(outcome)
    kind = outcome.pop("kind")
    return Score(dataset, metric, float(value), kind, {k: np.asarray(v) for k, v in outcome.items()}, details)


def finetune_scores(ctx: ModelContext, dataset: str, *, seed: int | None = None, augment: bool | None = None) -> list[Score]:
    """The fine-tune protocol (grid on val, best point refit on train+val) with its seed or its
    augmentation changed, resuming from (and saving to) the section's state files."""
    from ..evaluate.finetune import run_finetune
    from ..sections.finetune import state_path

    fp, cfg = _finetune_default(ctx)
    cfg = cfg if augment is None else replace(cfg, augment=augment)
    seed = fp.seed if seed is None else seed
    result = run_finetune(ctx.model, dataset, cfg, seed=seed, n_boot=fp.n_boot, device=ctx.device,
                          state_path=state_path(ctx.model.weights_hash, dataset, cfg, seed),
                          root=fp.data_root or None, download=fp.download, num_workers=fp.num_workers,
                          accept_sizes=dataset in parse_accepted(fp.accept_split_sizes))
    return [_outcome_score(dataset, result.metric, result.final["test_outcome"], result.test_score,
                           {"lr": result.best_lr, "wd": result.best_wd, "augment": cfg.augment, "seed": seed})]


def second_best(points: list[dict]) -> dict | None:
    """The runner-up of the grid: the best of the points other than the chosen one (the first
    best in grid order), itself the first best among them; None for a one-point grid."""
    if len(points) < 2:
        return None
    chosen = max(range(len(points)), key=lambda i: (points[i]["val_score"], -i))
    rest = [p for i, p in enumerate(points) if i != chosen]
    return max(enumerate(rest), key=lambda item: (item[1]["val_score"], -item[0]))[1]


def _runner_up(ctx: ModelContext, dataset: str, _) -> list[Score]:
    """The grid's second-best (lr, wd) on validation, refit on train+val and scored on test."""
    from ..data import get_dataset_spec
    from ..evaluate.finetune import _splits, finetune_once, predict, run_finetune
    from ..metrics import compute_metric
    from ..sections.finetune import state_path

    fp, cfg = _finetune_default(ctx)
    accept = dataset in parse_accepted(fp.accept_split_sizes)
    default = run_finetune(ctx.model, dataset, cfg, seed=fp.seed, n_boot=fp.n_boot, device=ctx.device,
                           state_path=state_path(ctx.model.weights_hash, dataset, cfg, fp.seed),
                           root=fp.data_root or None, download=fp.download, num_workers=fp.num_workers,
                           accept_sizes=accept)
    point = second_best(default.grid)
    if point is None:
        return []
    spec = get_dataset_spec(dataset)
    _, _, trainval, test, _ = _splits(dataset, ctx.model.cfg, cfg, root=fp.data_root or None, download=fp.download,
                                      accept_sizes=accept)
    net = finetune_once(ctx.model, trainval, num_classes=spec.num_classes, multilabel=spec.multilabel,
                        lr=point["lr"], wd=point["wd"], cfg=cfg, seed=fp.seed, device=ctx.device,
                        num_workers=fp.num_workers)
    scores, labels = predict(net, test, num_workers=fp.num_workers)
    kind, arrays = (("scores", {"y_true": labels, "scores": scores.astype(np.float32)}) if spec.multilabel
                    else ("labels", {"y_true": labels, "y_pred": scores.argmax(1)}))
    details = {"lr": point["lr"], "wd": point["wd"], "val_score": point["val_score"],
               "chosen": {"lr": default.best_lr, "wd": default.best_wd}}
    return [Score(dataset, spec.metric, compute_metric(spec.metric, labels, scores), kind, arrays, details)]


VARIANTS.add("finetune-no-augment", Variant(
    "finetune-no-augment", "finetune", default="RandomResizedCrop + horizontal flip in training (the code's default)",
    alternative="no augmentation: resize + centre crop, as for evaluation",
    source="official code: the --no-da flag; the paper says the augmentation was 'selected from' these two",
    compute=lambda ctx, d, _: finetune_scores(ctx, d, augment=False), settings=lambda p: {"no augmentation": False},
    retrains=True))
VARIANTS.add("finetune-second-best", Variant(
    "finetune-second-best", "finetune", default="the grid point with the best validation score, refit on train+val",
    alternative="the second-best grid point, refit on train+val",
    source="paper text: (lr, wd) chosen on validation from a 4 x 5 grid; the runner-up shows how much that choice "
           "carries", compute=_runner_up, settings=lambda p: {"second best": 2}, retrains=True))
VARIANTS.add("finetune-seed", Variant(
    "finetune-seed", "finetune", default="training seed 0 (head initialisation, batch order, augmentation draws)",
    alternative="another training seed, the whole grid and refit retrained",
    source="peer practice: results over training seeds (kaiko eva reports 5 or 20 runs; the paper reports one run)",
    compute=lambda ctx, d, seed: finetune_scores(ctx, d, seed=seed), retrains=True,
    settings=lambda p: {f"seed {s}": s for s in parse_seeds(p.train_seeds, "train_seeds")}))


# -------------------------------------------------------------------------------------- detection
def detection_scores(ctx: ModelContext, dataset: str, seed: int) -> list[Score]:
    """AP50 of both backbone settings of the detection section (the headline, and the scorecard's
    metric), trained with ``seed`` (cached detectors)."""
    from ..data.detection import get_detection_spec, open_detection
    from ..evaluate.detection import run_detection
    from ..sections.detection import detection_cfg, detection_settings, state_path

    dp = ctx.section_params("detection")
    preset, cfg = detection_cfg(dp, ctx.study)
    spec = get_detection_spec(dataset)
    root = dp.data_root or None
    train = open_detection(dataset, spec.train_split, root=root, download=dp.download)
    test = open_detection(dataset, spec.test_split, root=root, download=dp.download)
    out = []
    for setting in detection_settings(dp.settings):
        result = run_detection(ctx.model, train, test, spec.num_classes, cfg, setting, seed=seed, n_boot=0,
                               cache_path=state_path(ctx.model.weights_hash, dataset, cfg, setting, seed),
                               device=ctx.device, num_workers=dp.num_workers, progress=False)
        out.append(Score(dataset, f"{setting}_AP50", result.metrics["AP50"], "detection", result.outcome_arrays(),
                         {"seed": seed, "preset": preset, "AP": result.metrics["AP"], "AP75": result.metrics["AP75"]}))
    return out


VARIANTS.add("detection-seed", Variant(
    "detection-seed", "detection", default="training seed 0 (head initialisation, batch order, flips)",
    alternative="another training seed", compute=detection_scores, retrains=True,
    source="peer practice: results over training seeds (kaiko eva reports 5 or 20 runs; the paper reports one run)",
    settings=lambda p: {f"seed {s}": s for s in parse_seeds(p.train_seeds, "train_seeds")}))


# ------------------------------------------------------------------------------------------ dense
def dense_scores(ctx: ModelContext, dataset: str, *, seed: int | None = None, freeze: bool | None = None) -> list[Score]:
    """One dense task of the study under its section's settings, with the seed or the segmentation
    backbone's freeze changed."""
    from ..data.dense import get_dense_task
    from ..evaluate.dense import run_dense_task
    from ..sections.dense import dense_cfg

    dp = ctx.section_params("dense")
    kind = get_dense_task(dataset).kind
    cfg = dense_cfg(dp, kind, ctx.study)
    if freeze is not None:
        cfg = replace(cfg, freeze=freeze, cache_features=freeze and cfg.cache_features)
    seed = dp.seed if seed is None else seed
    result = run_dense_task(ctx.model, dataset, cfg, seed=seed, n_boot=0, root=dp.data_root or None,
                            download=dp.download, device=ctx.device, num_workers=dp.num_workers)
    outcome_kind, arrays = result.outcome_arrays()
    metrics = [m for m in (SEG_METRICS if kind == "segmentation" else NORMALS_METRICS) if m != "sn_median_err"]
    return [Score(dataset, m, float(result.metrics[m]), outcome_kind, arrays,
                  {"seed": seed, "freeze": cfg.freeze, "iterations": cfg.iterations}) for m in metrics]


def _segmentation_datasets(ctx: ModelContext) -> list[str]:
    from ..data.dense import get_dense_task

    names = list(ctx.study.section("dense").datasets) if "dense" in ctx.study.sections else []
    return [d for d in names if get_dense_task(d).kind == "segmentation"]


def _other_freeze(ctx: ModelContext, dataset: str, _) -> list[Score]:
    from ..sections.dense import dense_cfg

    default = dense_cfg(ctx.section_params("dense"), "segmentation", ctx.study).freeze
    return dense_scores(ctx, dataset, freeze=not default)


VARIANTS.add("dense-seed", Variant(
    "dense-seed", "dense", default="training seed 0 (decoder initialisation, batch order, k-means)",
    alternative="another training seed", compute=lambda ctx, d, seed: dense_scores(ctx, d, seed=seed),
    retrains=True,
    source="peer practice: results over training seeds (kaiko eva reports 5 or 20 runs; the paper reports one run)",
    settings=lambda p: {f"seed {s}": s for s in parse_seeds(p.train_seeds, "train_seeds")}))
VARIANTS.add("dense-segmentation-freeze", Variant(
    "dense-segmentation-freeze", "dense",
    default="the preset's choice: the paper preset trains the segmentation encoder end to end (the paper's code), "
            "the mini preset freezes it",
    alternative="the other choice: frozen (paper preset) or end to end (mini preset)",
    source="paper's code: the CSAIL toolkit trains the encoder (no freezing); frozen backbones are the common "
           "linear-probe practice for dense tasks (DINOv2's segmentation probes)",
    compute=_other_freeze, settings=lambda p: {"other freeze": True}, retrains=True, datasets=_segmentation_datasets,
    note="in the mini study: end-to-end segmentation on mini-scenes with the mini preset's schedule (400 "
         "iterations), against the preset's frozen encoder"))
