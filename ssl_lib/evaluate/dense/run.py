"""One dense task end to end: build, check, train, score (:func:`run_dense_task`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Subset

from ...data.dense import ArrayDenseDataset, get_dense_task, open_dense
from ...exceptions import ConfigError
from ...metrics.dense import THRESHOLDS
from ...models import FeatureModel
from .config import DenseCfg
from .heads import HEAD_KINDS, HEADS
from .model import DECODERS, DenseEncoder, DenseModel, _mismatches, check_encoder_weights
from .train import _Batches, _Scorer, _as_float, _encode, _loader, _train, _train_targets, trivial_prediction

__all__ = ["DenseResult", "run_dense_task"]

# --------------------------------------------------------------------------------------------
# One task


@dataclass
class DenseResult:
    task: str
    kind: str
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    losses: list[float]
    examples: dict[str, np.ndarray]  # images, targets, predictions (and errors for normals) of a few test images
    extra: dict
    cfg: DenseCfg
    n_train: int
    n_test: int
    seconds: dict[str, float] = field(default_factory=dict)
    iou_per_class: list[float] = field(default_factory=list)
    model: DenseModel | None = field(default=None, repr=False)  # the trained model, in eval mode
    head: object = field(default=None, repr=False)  # its head (``predict`` turns logits into maps)
    per_image: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # test counts per image

    def outcome_arrays(self) -> tuple[str, dict[str, np.ndarray]]:
        """``(kind, arrays)`` for :mod:`ssl_lib.outcomes`: per-image counts the metrics are sums of."""
        stats = self.per_image
        if self.kind == "segmentation":
            return "segmentation", {k: stats[k] for k in ("intersection", "union", "correct", "labelled")}
        arrays = {"sn_mean_err:num": stats["sum"], "sn_mean_err:den": stats["count"]}
        for t in THRESHOLDS:
            arrays[f"sn_within_{t:g}:num"], arrays[f"sn_within_{t:g}:den"] = stats[f"below_{t:g}"], stats["count"]
        return "ratio", arrays


def run_dense_task(
    model: FeatureModel, task_name: str, cfg: DenseCfg, *, seed: int = 0, n_boot: int = 200, root=None,
    download: bool = False, device=None, num_workers: int = 0, n_examples: int = 4, progress: bool = False,
) -> DenseResult:
    """Train a decoder for ``task_name`` on ``model``'s backbone and score it on the test split."""
    start = time.perf_counter()
    task = get_dense_task(task_name)
    if HEAD_KINDS[cfg.head] != task.kind:
        raise ConfigError(f"Head {cfg.head!r} is for {HEAD_KINDS[cfg.head]} tasks; {task_name!r} is a {task.kind} task.")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = open_dense(task_name, "train", root=root, download=download, image_size=cfg.image_size)
    test = open_dense(task_name, "test", root=root, download=download, image_size=cfg.image_size, full_resolution=True)
    if cfg.train_images is not None and cfg.train_images < len(train):
        train = train.take(cfg.train_images) if isinstance(train, ArrayDenseDataset) else Subset(train, range(cfg.train_images))

    reference = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        encoder = DenseEncoder(model, cfg.dilate, cfg.min_stride).to(device)
        weights_check = check_encoder_weights(encoder.backbone, reference)
        head = HEADS.get(cfg.head)(task, cfg, lambda: _train_targets(train, num_workers), seed)
        neck = encoder.neck()
        decoder = DECODERS.get(cfg.decoder)(neck.channels, head.out_channels, cfg.width, cfg.pool_scales)
        dense = DenseModel(encoder, decoder, cfg.freeze, neck).to(device).eval()
        seconds: dict[str, float] = {}

        batches = iter(_Batches(len(train), cfg.batch_size, seed))
        cached = cfg.freeze and cfg.cache_features
        t0 = time.perf_counter()
        if cached:  # encode once; each step indexes the maps
            train_maps, train_targets = _encode(encoder, train, batch_size=64, device=device, num_workers=num_workers)
            seconds["encode_train"] = time.perf_counter() - t0
            step_batches = (([m[idx].to(device) for m in train_maps], train_targets[idx].to(device)) for idx in batches)
            forward = dense.decode
        else:
            step_batches = ((_as_float(x, device), y.to(device)) for x, y in _loader(train, cfg.batch_size, num_workers, batches))
            forward = dense.logits
        t0 = time.perf_counter()
        desc = f"dense · {model.cfg.name} · {task_name}"
        losses = _train(dense, head, cfg, step_batches=step_batches, forward=forward, desc=desc, progress=progress)
        seconds["train"] = time.perf_counter() - t0
        if cached:
            del train_maps, train_targets

    t0 = time.perf_counter()
    dense.eval()
    scorer, trivial = _Scorer(task, n_examples), _Scorer(task, 0)
    constant = trivial_prediction(task, train, num_workers)
    with torch.inference_mode():
        # files keep their own sizes (no crop), so they cannot batch: one image at a time
        for images, target in _loader(test, 64 if isinstance(test, ArrayDenseDataset) else 1, num_workers):
            scorer.add(images, target, head.predict(dense(_as_float(images, device), target.shape[-2:])))
            trivial.add(images, target, constant(target))
    metrics, ci, iou = scorer.result(n_boot, seed)
    baseline = trivial.result(0, seed)[0]
    seconds["evaluate"] = time.perf_counter() - t0
    unchanged = not any(_mismatches(encoder.backbone, reference))  # frozen: must be True
    seconds["total"] = time.perf_counter() - start
    extra = {
        "weights_check": weights_check, "encoder_unchanged_after_training": unchanged,
        "iterations": cfg.iterations, "final_loss": float(np.mean(losses[-10:])), "decoder": cfg.decoder,
        "freeze": cfg.freeze, "cached_features": cached, "pyramid": encoder.trunk.info(neck), "scored_pixels": scorer.pixels, **head.info,
        "trivial_baseline": {"rule": "majority training class" if task.kind == "segmentation" else "mean training normal",
                             **{k: round(float(v), 4) for k, v in baseline.items()}},
    }
    examples = {k: np.stack(v) if len({x.shape for x in v}) == 1 else v for k, v in scorer.examples.items() if v}
    return DenseResult(task_name, task.kind, metrics, ci, losses, examples, extra, cfg, len(train), len(test),
                       seconds, iou, dense, head, per_image=scorer.stats)


