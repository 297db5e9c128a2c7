"""The dense prediction section: segmentation and surface normals on one model's backbone → rows."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.dense import get_dense_task
from .._registry import Registry
from ..evaluate.dense import DECODERS, PRESETS, DenseCfg, DenseResult, cfg_dict, preset_cfg, run_dense_task
from ..exceptions import ConfigError
from ..metrics.dense import NORMALS_METRICS, SEG_METRICS
from ..models import create_model, get_model_cfg, require_multiscale
from ..results import append_rows, params_hash
from ..study import Study, load_study
from ._common import RowStamp, section_datasets
from ._record import SECTIONS, Section
from .summary import SummaryParams

__all__ = ["DenseParams", "DenseRun", "PROTOCOL", "METRICS", "dense_cfg", "dense_datasets", "freeze_source",
           "run_dense_section", "loss_table"]

PROTOCOL = {
    "encoder": "the evaluated backbone's four levels (a ResNet's layer1-layer4, a hierarchical timm model's last four "
               "stages, a plain ViT's last-block token grid), its parameters and buffers checked bit for bit against "
               "the model",
    "pyramid": "ResNets and hierarchical models: their levels as they are; a plain ViT: a ViTDet simple feature "
               "pyramid (deconvolutions, identity, max-pool) to strides 4-32, trained with the decoder",
    "dilation": "the preset's dilated stages (normals: layer3+layer4 in the paper, layer4 in the mini study): ResNets "
                "by dilated convolutions; hierarchical timm models by timm's output_stride; a plain ViT cannot "
                "dilate, so its dilated levels are pyramid levels built at the finer stride (stride 8 for the "
                "paper's normals)",
    "decoder": "UPerNet (PPM + FPN + fuse conv) for segmentation, PPM on the last level for normals (the paper's codes)",
    "normals head": "40-way classification over k-means centres of training normals; prediction = "
                    "probability-weighted centre, renormalised (the paper's code); or regression",
    "optimiser": "SGD momentum 0.9, weight decay 1e-4 (weights only), poly schedule (1 - it/max_it)^0.9",
    "backbone": "per task, the preset's choice unless freeze is set: the paper preset trains segmentation end to "
                "end and freezes the normals encoder (the paper's codes); the mini preset freezes both (maps cached)",
    "loss resolution": "the decoder's own (targets resized nearest, as the CSAIL toolkit)",
    "test resolution": "no crop: shorter side to the preset's image size (mini: native), logits upsampled to each "
                       "label's native size, every labelled pixel scored",
    "selection": "none: one fixed schedule per task, scored once on test",
    "metrics": "mIoU and pixel accuracy accumulated over the test set; angular error over all valid test pixels",
    "uncertainty": "95% percentile bootstrap over test images",
}
METRICS = {"segmentation": SEG_METRICS, "normals": NORMALS_METRICS}


@dataclass(frozen=True)
class DenseParams:
    """Parameters of ``notebooks/dense.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name>, hf-hub:<repo> or file:<path>
    dataset: str = "all"  # "all" (the study's dense datasets) or one dataset name
    preset: str = ""  # "mini" or "paper" ("" = the study's setting, else "mini" for the mini zoo, "paper" otherwise)
    decoder: str = ""  # "upernet" or "ppm" for both tasks ("" = the preset's: upernet for segmentation, ppm for normals)
    normals_head: str = "classification"  # the paper's 40-way k-means classification, or "regression"
    # None = the preset's choice per task (paper: segmentation trained end to end, normals frozen; mini: both
    # frozen); True / False = frozen / trained end to end for every task of the run
    freeze: bool | None = None
    iterations: int | None = None  # None = the preset's
    batch_size: int | None = None  # None = the preset's
    n_boot: int = 200  # bootstrap resamples of test images for the CIs (0: none)
    seed: int = 0
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""  # root of ADE20K / NYUv2 ("" = $SSL_LIB_DATA or the cache)
    download: bool = False
    device: str = ""  # "" = CUDA when present, else CPU
    num_workers: int = 0  # DataLoader workers for the paper's image files


@dataclass
class DenseRun:
    rows: pd.DataFrame
    results: dict[str, DenseResult]


def dense_datasets(study: Study, dataset: str) -> list[str]:
    """``"all"`` (the study's dense datasets) or one name; every name checked against the dense registry."""
    names = section_datasets(study, "dense", dataset)
    for name in names:
        get_dense_task(name)
    return names


def dense_cfg(params: DenseParams, kind: str, study: Study | None = None) -> DenseCfg:
    """The protocol for one task kind: the parameters (the notebook's ``setup`` has filled unset ones
    from the study file), the preset's settings for the rest; the preset defaults by zoo."""
    study = study or load_study(params.study)

    def pick(name):
        value = getattr(params, name)
        return None if value in (None, "") else value

    preset = pick("preset") or ("mini" if study.zoo == "mini" else "paper")
    head = "segmentation" if kind == "segmentation" else params.normals_head
    if head not in ("segmentation", "classification", "regression"):
        raise ConfigError(f"normals_head must be 'classification' or 'regression', got {params.normals_head!r}.")
    freeze = pick("freeze")
    if freeze is not None and not isinstance(freeze, bool):
        raise ConfigError(f"freeze must be True, False or None (the preset's choice per task), got {freeze!r}.")
    return preset_cfg(preset, kind, decoder=pick("decoder"), iterations=pick("iterations"),
                      batch_size=pick("batch_size"), head=head, freeze=freeze)


def freeze_source(params: DenseParams) -> str:
    """Who chose ``freeze`` for the rows: a parameter (the notebook's, or the study file's, which the
    runner passes as one) or the preset."""
    return "preset" if params.freeze is None else "parameter"


def _row_values(result: DenseResult) -> list[tuple[str, float, float, float]]:
    nan = (float("nan"), float("nan"))
    return [(m, result.metrics[m], *result.ci.get(m, nan)) for m in METRICS[result.kind]]


def run_dense_section(params: DenseParams) -> DenseRun:
    """Each dense dataset of the study: decoder trained on the model's frozen (or trained) backbone, test rows."""
    study = load_study(params.study)
    datasets = dense_datasets(study, params.dataset)
    device = params.device or None
    require_multiscale(get_model_cfg(params.model, zoo=study.zoo), "dense")
    model = create_model(params.model, zoo=study.zoo, device=device)
    stamp = RowStamp("dense", model, params.seed, device)
    rows, results = [], {}
    for name in tqdm(datasets, desc=f"dense · {model.cfg.name}", file=sys.stderr, mininterval=10):
        kind = get_dense_task(name).kind
        cfg = dense_cfg(params, kind, study)
        start = time.perf_counter()
        result = run_dense_task(model, name, cfg, seed=params.seed, n_boot=params.n_boot, root=params.data_root or None,
                                download=params.download, device=device, num_workers=params.num_workers,
                                progress=True)
        results[name] = result
        protocol = {**cfg_dict(cfg), "n_boot": params.n_boot}
        extra = {"study": study.name, **result.extra,
                 "freeze_set_by": freeze_source(params),
                 "seconds": {k: round(v, 3) for k, v in result.seconds.items()}}
        if result.iou_per_class:
            extra["iou_per_class"] = [None if np.isnan(v) else round(v, 6) for v in result.iou_per_class]
        kind, arrays = result.outcome_arrays()
        outcomes = stamp.save_outcomes(params.results_path, name, kind, params_hash(protocol), kind, **arrays)
        for metric, value, low, high in _row_values(result):
            rows.append(stamp.row(
                dataset=name, metric=metric, value=float(value), protocol=kind, ci_low=float(low), ci_high=float(high),
                ci_method=f"bootstrap{params.n_boot} over test images" if params.n_boot and not np.isnan(low) else "",
                train_split="train", eval_split="test", n_train=result.n_train, n_eval=result.n_test,
                protocol_params=json.dumps(protocol, sort_keys=True), hyperparams="{}",
                selected_on="none: fixed schedule", params_hash=params_hash(protocol),
                wall_seconds=time.perf_counter() - start, extra=json.dumps(extra, sort_keys=True),
                outcomes=outcomes if metric != "sn_median_err" else "",  # a median is not a per-image sum
            ))
    if params.results_path:
        append_rows(params.results_path, rows)
    return DenseRun(pd.DataFrame([asdict(r) for r in rows]), results)


def loss_table(run: DenseRun) -> pd.DataFrame:
    """Long table of training loss per (dataset, iteration) for the loss curves."""
    return pd.DataFrame([{"dataset": name, "iteration": i, "loss": loss}
                         for name, r in run.results.items() for i, loss in enumerate(r.losses)])


_SETTINGS = {"sn_within_11.25": "surface_normals", "seg_mean_iou": "segmentation"}  # the paper's Fig 1
_NORMALS_HEADS: Registry[str] = Registry("normals head")  # the normals task's two heads (segmentation has one)
_NORMALS_HEADS.add("classification", "the paper's 40-way k-means classification")
_NORMALS_HEADS.add("regression", "3 channels, L2-normalised, cosine loss")
SECTIONS.add("dense", Section(
    "dense", "Dense prediction", 50, DenseParams, run_dense_section, reads=("dense",), tasks=("segmentation", "normals"),
    setting=lambda dataset, metric: _SETTINGS.get(metric), summary=SummaryParams,
    choices={"preset": PRESETS, "decoder": DECODERS, "normals_head": _NORMALS_HEADS},
))
