"""One (model, dataset, setting) detection run, resumable from its trained state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.models.detection import FasterRCNN

from ...metrics.detection import MatchTable, bootstrap_detection_ci, match_detections, score_table
from ...models import FeatureModel
from ...paths import atomic_path
from .config import DetectionCfg
from .model import build_detector, check_backbone_weights
from .train import predict_detections, train_detector

__all__ = ["CACHE_VERSION", "DetectionResult", "run_detection"]

CACHE_VERSION = 1

# ------------------------------------------------------------------------------------------------
# One (model, dataset, setting) run, resumable


@dataclass
class DetectionResult:
    setting: str
    metrics: dict  # AP, AP50, AP75 (%), AP50_per_class
    ci: dict  # metric → (low, high)
    losses: list[float]
    weights_check: dict
    n_train: int
    n_test: int
    train_seconds: float
    eval_seconds: float
    resumed: bool
    predictions: list[dict] = field(default_factory=list, repr=False)
    table: MatchTable | None = field(default=None, repr=False)  # per-image matches: paired comparisons
    use_07_metric: bool = True
    pyramid: dict = field(default_factory=dict)  # the levels the FPN read (family, modules, strides, channels)

    def outcome_arrays(self) -> dict[str, np.ndarray]:
        """The match table as plain arrays (``ssl_lib.outcomes`` kind ``detection``)."""
        t = self.table
        return {"thresholds": np.asarray(t.thresholds), "num_classes": np.asarray(t.num_classes),
                "label": t.label, "score": t.score, "image": t.image, "tp": t.tp, "ignored": t.ignored,
                "npos": t.npos, "use_07_metric": np.asarray(self.use_07_metric)}


def _load_cached(path: Path | None, detector: FasterRCNN) -> dict | None:
    """The cached trained state, loaded into ``detector``; None when absent or unreadable (retrain)."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != CACHE_VERSION:
            return None
        detector.load_state_dict(state["detector"])
        return state
    except (OSError, RuntimeError, KeyError, ValueError, EOFError):
        return None


def run_detection(
    model: FeatureModel, train: Dataset, test: Dataset, num_classes: int, cfg: DetectionCfg, setting: str, *,
    seed: int = 0, n_boot: int = 200, cache_path: Path | None = None, device=None, num_workers: int = 0,
    use_07_metric: bool = True, plus_one: bool = False, progress: bool = True,
) -> DetectionResult:
    """Build, check, train (or load the cached trained state) and score one detector."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # head initialisation
        detector = build_detector(model, num_classes, cfg, setting)
    check = check_backbone_weights(detector, model)
    state = _load_cached(cache_path, detector)
    resumed = state is not None
    start = time.perf_counter()
    if resumed:
        losses, train_seconds = list(state["losses"]), float(state["train_seconds"])
    else:
        losses = train_detector(detector, train, cfg, seed=seed, device=device, num_workers=num_workers,
                                progress=progress, desc=f"detection {setting}")
        train_seconds = time.perf_counter() - start
        if cache_path is not None:
            with atomic_path(cache_path, suffix=".pt") as tmp:
                torch.save({"detector": detector.state_dict(), "losses": losses, "train_seconds": train_seconds,
                            "version": CACHE_VERSION}, tmp)
    start = time.perf_counter()
    predictions, targets = predict_detections(detector, test, device=device, num_workers=num_workers)
    table = match_detections(predictions, targets, num_classes, plus_one=plus_one)
    metrics = score_table(table, use_07_metric=use_07_metric)
    ci = bootstrap_detection_ci(table, n_boot=n_boot, seed=seed, use_07_metric=use_07_metric)
    return DetectionResult(setting, metrics, ci, losses, check, len(train), len(test), train_seconds,
                           time.perf_counter() - start, resumed, predictions, table, use_07_metric,
                           pyramid=detector.backbone.info())
