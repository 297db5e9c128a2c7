"""Per-task heads: what the decoder predicts, its loss, and how logits become a prediction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..._registry import Registry
from ...data.dense import DenseTask, valid_normals
from ...exceptions import ConfigError

if TYPE_CHECKING:  # config imports the heads registry
    from .config import DenseCfg

__all__ = ["HEADS", "HEAD_KINDS", "normals_vocabulary", "SegmentationHead", "NormalsClassificationHead",
           "NormalsRegressionHead"]

# --------------------------------------------------------------------------------------------
# Heads: targets, loss and prediction per task


def normals_vocabulary(normals: torch.Tensor, k: int = 40, *, n_pixels: int = 100_000, seed: int = 0) -> np.ndarray:
    """k-means centres (k, 3), unit length, of valid training normals ``(N, 3, H, W)``.

    The paper ships its centres (``vocab40.mat``); here they are refit on the task's training
    split: a seeded sample of ``n_pixels`` valid pixels, scikit-learn ``KMeans(random_state=seed)``.
    """
    from sklearn.cluster import KMeans

    flat = normals.permute(0, 2, 3, 1).reshape(-1, 3)
    flat = flat[valid_normals(flat, axis=1)].double().numpy()
    if len(flat) < k:
        raise ConfigError(f"k-means needs at least {k} valid normals, got {len(flat)}.")
    rng = np.random.default_rng(seed)
    sample = flat[rng.choice(len(flat), size=min(n_pixels, len(flat)), replace=False)]
    centres = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample).cluster_centers_
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)


class SegmentationHead:
    """Per-pixel cross-entropy over the classes; prediction = argmax."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        self.out_channels, self.ignore_index = task.num_classes, task.ignore_index
        self.info = {"head": "segmentation"}

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        return target.long()

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1)


class NormalsClassificationHead:
    """The paper's normals head: 40-way cross-entropy on the nearest k-means centre."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        vocab = normals_vocabulary(train_targets(), cfg.n_clusters, n_pixels=cfg.kmeans_pixels, seed=seed)
        self.centres = torch.from_numpy(vocab)
        self.out_channels, self.mode = cfg.n_clusters, cfg.normals_pred
        self.info = {"head": "classification", "n_clusters": cfg.n_clusters, "prediction": cfg.normals_pred}

    def targets(self, normals: torch.Tensor) -> torch.Tensor:
        """Nearest centre (largest cosine; the same as smallest distance for unit vectors), -1 if invalid."""
        labels = torch.einsum("bchw,kc->bkhw", normals, self.centres.to(normals.device)).argmax(1)
        return torch.where(valid_normals(normals, axis=1), labels, torch.full_like(labels, -1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=-1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        centres = self.centres.to(logits.device)
        if self.mode == "argmax":
            return centres[logits.argmax(1)].permute(0, 3, 1, 2)
        normals = torch.einsum("bkhw,kc->bchw", logits.softmax(1), centres)
        return F.normalize(normals, dim=1, eps=1e-12)


class NormalsRegressionHead:
    """3 channels, L2-normalised; loss = 1 - cosine over valid pixels."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        self.out_channels = 3
        self.info = {"head": "regression"}

    def targets(self, normals: torch.Tensor) -> torch.Tensor:
        return normals

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_normals(target, axis=1)
        cosine = (F.normalize(logits, dim=1) * target).sum(1)
        return (1 - cosine)[valid].mean() if valid.any() else logits.sum() * 0

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return F.normalize(logits, dim=1)


# name -> class(task, cfg, train_targets: () -> (N, ...) targets, seed) with out_channels, targets, loss, predict
HEADS: Registry[Callable] = Registry("dense head")
HEADS.add("segmentation", SegmentationHead)
HEADS.add("classification", NormalsClassificationHead)
HEADS.add("regression", NormalsRegressionHead)
HEAD_KINDS = {"segmentation": "segmentation", "classification": "normals", "regression": "normals"}


