"""The detection section: Faster R-CNN + FPN on one model's backbone, frozen and fine-tuned → rows."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.detection import get_detection_spec, open_detection
from ..evaluate.detection import (
    CACHE_VERSION,
    DETECTION_PRESETS,
    IOU_THRESHOLDS,
    SETTINGS,
    DetectionCfg,
    DetectionResult,
    run_detection,
)
from ..exceptions import ConfigError
from ..models import create_model, get_model_cfg, require_multiscale
from ..paths import cache_dir
from ..results import append_rows, params_hash
from ..study import Study, load_study
from ._common import RowStamp, section_datasets, split_names
from ._record import SECTIONS, Section
from .summary import SummaryParams

__all__ = [
    "DetectionParams", "DetectionRun", "PROTOCOL", "METRICS", "detection_cfg", "detection_datasets",
    "detection_settings", "run_detection_section", "state_path",
]

METRICS = ("AP", "AP50", "AP75")  # row metric names are "<setting>_<metric>", as Table 4's columns
DEFAULT_PRESET = {"mini": "mini"}  # any other zoo: the paper's detectron2 schedule

PROTOCOL = {
    "model": "torchvision Faster R-CNN, FPN over four levels of the model's own backbone + a max-pooled level: "
             "a ResNet's layer1-layer4, a hierarchical timm model's last four stages (forward_intermediates), or for "
             "a plain ViT a ViTDet simple feature pyramid (trained with the FPN) from its last block at strides 4-32",
    "settings": "frozen = detectron2 FREEZE_AT 4 (stem and the first three of four stages frozen: ResNets layer1-3, "
                "ConvNeXt stages.0-2, ViTs the first three quarters of the blocks; the last stage + FPN + RPN + box "
                "head train); finetune = FREEZE_AT 0 (all train)",
    "batch-norm": "every backbone BatchNorm is a FrozenBatchNorm2d with the checkpoint's statistics (detectron2's "
                  "default); LayerNorms (ViT, ConvNeXt) train where their stage trains",
    "weights check": "after building, every backbone tensor of the detector is compared with the checkpoint's",
    "optimiser": "SGD, momentum 0.9, weight decay 1e-4, linear warmup then x0.1 steps (detectron2's WarmupMultiStepLR)",
    "metric": "detectron2's PascalVOCDetectionEvaluator: VOC07 11-point AP per class; AP = mean over IoU "
              "0.50:0.05:0.95, AP50, AP75 (%); difficult boxes ignored",
    "selection": "none: a fixed schedule, the test split is scored once",
    "CI": "BCa bootstrap over test images (AP recomputed from each resample's detections and boxes; "
          "bias-corrected because the interpolated AP of a resample is biased upwards)",
}


@dataclass(frozen=True)
class DetectionParams:
    """Parameters of ``notebooks/detection.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name>, hf-hub:<repo> or file:<path>
    dataset: str = "all"  # "all" (the study's detection datasets) or one dataset name
    # preset: "" = the zoo's (mini for the mini study, else the paper's detectron2 Base-RCNN-FPN schedule)
    preset: str = ""
    settings: str = "frozen,finetune"  # backbone settings, each a Table 4 column group
    iterations: int | None = None  # None = the preset's (the lr steps keep their fractions)
    batch_size: int | None = None  # None = the preset's
    seed: int = 0
    n_boot: int = 200  # bootstrap resamples of test images for the CIs (0: none)
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""  # root holding VOCdevkit/ ("" = $SSL_LIB_DATA or the cache)
    download: bool = False
    device: str = ""  # "" = CUDA when present, else CPU
    num_workers: int = 0  # DataLoader workers (use several for real images)


@dataclass
class DetectionRun:
    rows: pd.DataFrame
    results: dict[tuple[str, str], DetectionResult]  # (dataset, setting) → result
    cfg: DetectionCfg
    preset: str


def detection_cfg(params: DetectionParams, study: Study | None = None) -> tuple[str, DetectionCfg]:
    """``(preset name, cfg)``: the named preset (default by zoo), with the schedule overrides."""
    study = study or load_study(params.study)
    name = params.preset or DEFAULT_PRESET.get(study.zoo, "paper")
    for value, label in ((params.iterations, "iterations"), (params.batch_size, "batch_size")):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ConfigError(f"Parameter {label!r} must be a positive integer or None, got {value!r}.")
    return name, DETECTION_PRESETS.get(name).with_schedule(params.iterations, params.batch_size)


def detection_settings(value: str) -> list[str]:
    """``"frozen,finetune"`` → checked names (an unknown one lists the known)."""
    names = split_names(value)
    if not names:
        raise ConfigError(f"Parameter 'settings' needs at least one of {list(SETTINGS)}, got {value!r}.")
    for name in names:
        SETTINGS.get(name)
    return names


def detection_datasets(study: Study, dataset: str) -> list[str]:
    """``"all"`` (the study's detection datasets) or one name; every name checked up front."""
    names = section_datasets(study, "detection", dataset)
    for name in names:
        get_detection_spec(name)
    return names


def state_path(weights_hash: str, dataset: str, cfg: DetectionCfg, setting: str, seed: int):
    """Where the trained detector of one (weights, dataset, protocol, setting, seed) is kept."""
    payload = json.dumps({"w": weights_hash, "d": dataset, "data": get_detection_spec(dataset).fingerprint,
                          "cfg": asdict(cfg), "setting": setting, "seed": seed, "v": CACHE_VERSION}, sort_keys=True)
    return cache_dir("detection") / f"{hashlib.sha256(payload.encode()).hexdigest()[:32]}.pt"


def run_detection_section(params: DetectionParams) -> DetectionRun:
    study = load_study(params.study)
    preset, cfg = detection_cfg(params, study)
    settings = detection_settings(params.settings)
    datasets = detection_datasets(study, params.dataset)
    device = params.device or None
    require_multiscale(get_model_cfg(params.model, zoo=study.zoo), "detection")
    model = create_model(params.model, zoo=study.zoo, device=device)
    stamp = RowStamp("detection", model, params.seed, device)
    rows, results = [], {}
    bar = tqdm(total=len(datasets) * len(settings), desc=f"detection · {model.cfg.name}", file=sys.stderr,
               mininterval=10)
    for name in datasets:
        spec = get_detection_spec(name)
        root = params.data_root or None
        train = open_detection(name, spec.train_split, root=root, download=params.download)
        test = open_detection(name, spec.test_split, root=root, download=params.download)
        for setting in settings:
            protocol = {"preset": preset, **asdict(cfg), "setting": setting, "freeze_at": SETTINGS.get(setting),
                        "n_boot": params.n_boot, "ap": "voc07_11point", "iou_thresholds": list(IOU_THRESHOLDS)}
            result = run_detection(
                model, train, test, spec.num_classes, cfg, setting, seed=params.seed, n_boot=params.n_boot,
                cache_path=state_path(model.weights_hash, name, cfg, setting, params.seed), device=device,
                num_workers=params.num_workers,
            )
            results[(name, setting)] = result
            tail = result.losses[-10:]
            extra = {
                "study": study.name, "weights_check": result.weights_check,
                "iterations": len(result.losses), "final_loss": float(np.mean(tail)) if tail else float("nan"),
                "resumed": result.resumed, "train_seconds": result.train_seconds,
                "eval_seconds": result.eval_seconds, "pyramid": result.pyramid,
                "AP50_per_class": dict(zip(spec.classes, result.metrics["AP50_per_class"])),
            }
            outcomes = stamp.save_outcomes(params.results_path, name, setting, params_hash(protocol), "detection",
                                           **result.outcome_arrays())
            for metric in METRICS:
                low, high = result.ci.get(metric, (float("nan"), float("nan")))
                rows.append(stamp.row(
                    dataset=name, metric=f"{setting}_{metric}", value=result.metrics[metric], protocol=setting, ci_low=low,
                    ci_high=high, ci_method=f"BCa bootstrap{params.n_boot} over test images" if params.n_boot else "",
                    train_split=spec.train_split, eval_split=spec.test_split, n_train=result.n_train,
                    n_eval=result.n_test, protocol_params=json.dumps(protocol, sort_keys=True),
                    selected_on="none: fixed schedule", params_hash=params_hash(protocol),
                    wall_seconds=result.train_seconds + result.eval_seconds, extra=json.dumps(extra, sort_keys=True),
                    outcomes=outcomes,
                ))
            bar.update(1)
    bar.close()
    if params.results_path:
        append_rows(params.results_path, rows)
    return DetectionRun(pd.DataFrame([asdict(r) for r in rows]), results, cfg, preset)


_SETTINGS = {"frozen_AP50": "detection_frozen", "finetune_AP50": "detection_finetune"}  # the paper's Fig 1
SECTIONS.add("detection", Section(
    "detection", "Detection", 40, DetectionParams, run_detection_section, reads=("detection",), tasks=("detection",),
    setting=lambda dataset, metric: _SETTINGS.get(metric), summary=SummaryParams,
    choices={"preset": DETECTION_PRESETS},
))
