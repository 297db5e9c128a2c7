"""Training a dense decoder and scoring it: batches, cached maps, the loop and the scorer."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ...data.dense import ArrayDenseDataset, DenseTask, valid_normals
from ...metrics.dense import SEG_METRICS, THRESHOLDS, angular_error, normals_metrics, segmentation_counts, segmentation_metrics
from ...exceptions import ConfigError
from ...stats import bootstrap_ci
from .config import DenseCfg
from .model import DenseEncoder, DenseModel, _nearest, _resize

__all__ = ["trivial_prediction"]

# --------------------------------------------------------------------------------------------
# Data flow: batches, encoded maps


class _Batches:
    """Endless seeded index batches: a fresh permutation each epoch, the tail dropped."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {n} training images.")
        self.n, self.batch_size, self.generator = n, batch_size, torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            order = torch.randperm(self.n, generator=self.generator)
            for i in range(0, self.n - self.batch_size + 1, self.batch_size):
                yield order[i : i + self.batch_size].tolist()


def _as_float(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float().div_(255.0)


def _loader(data: Dataset, batch_size: int, num_workers: int, batch_sampler=None) -> Iterator:
    """Whole slices of an in-memory dataset; a DataLoader for files."""
    if isinstance(data, ArrayDenseDataset) and batch_sampler is None:
        return ((data.images[i : i + batch_size], data.targets[i : i + batch_size]) for i in range(0, len(data), batch_size))
    if isinstance(data, ArrayDenseDataset):
        return ((data.images[idx], data.targets[idx]) for idx in batch_sampler)
    if batch_sampler is not None:
        return iter(DataLoader(data, batch_sampler=batch_sampler, num_workers=num_workers))
    return iter(DataLoader(data, batch_size=batch_size, num_workers=num_workers))


@torch.inference_mode()
def _encode(encoder: DenseEncoder, data: Dataset, *, batch_size: int, device, num_workers: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stage maps of every image (on the CPU, float32) and the targets, in order."""
    maps, targets = [], []
    for images, target in _loader(data, batch_size, num_workers):
        maps.append([m.float().cpu() for m in encoder(_as_float(images, device))])
        targets.append(target)
    return [torch.cat(level) for level in zip(*maps)], torch.cat(targets)


def _train_targets(data: Dataset, num_workers: int) -> torch.Tensor:
    if isinstance(data, ArrayDenseDataset):
        return data.targets
    return torch.cat([t for _, t in DataLoader(data, batch_size=16, num_workers=num_workers)])


def trivial_prediction(task: DenseTask, train: Dataset, num_workers: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The baseline every decoder must beat: the training split's most frequent class everywhere
    (segmentation) or its mean valid normal, renormalised, everywhere (normals). One streaming pass."""
    total = None
    for _, target in _loader(train, 64, num_workers):
        if task.kind == "segmentation":
            valid = (target >= 0) & (target < task.num_classes)
            part = torch.bincount(target[valid].long(), minlength=task.num_classes).double()
        else:
            part = (target * valid_normals(target, axis=1)[:, None]).double().sum((0, 2, 3))
        total = part if total is None else total + part
    if task.kind == "segmentation":
        majority = int(total.argmax())
        return lambda target: torch.full_like(target, majority)
    mean = (total / total.norm()).float()
    return lambda target: mean.view(1, 3, 1, 1).expand_as(target).clone()


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Decay on conv/linear weights only (the CSAIL toolkit's ``group_weight``)."""
    decay, no_decay = [], []
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            conv = isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
            (decay if name == "weight" and conv else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _train(model: DenseModel, head, cfg: DenseCfg, *, step_batches: Iterator, forward: Callable,
           desc: str, progress: bool) -> list[float]:
    params = _param_groups(nn.ModuleList([model.neck, model.decoder]) if cfg.freeze else model, cfg.weight_decay)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    losses = []
    model.train()
    for it in tqdm(range(cfg.iterations), desc=desc, file=sys.stderr, mininterval=10, disable=not progress):
        lr = cfg.lr * (1 - it / cfg.iterations) ** cfg.poly_power
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, target = next(step_batches)
        logits = forward(inputs)
        loss = head.loss(logits, head.targets(_nearest(target, logits.shape[-2:])))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


class _Scorer:
    """Accumulates per-image statistics over the test set and keeps a few examples."""

    def __init__(self, task: DenseTask, n_examples: int) -> None:
        self.task, self.n_examples = task, n_examples
        self.parts: list[dict] = []
        self.errors: list[np.ndarray] = []
        self.examples: dict[str, list] = {"images": [], "targets": [], "predictions": [], "errors": []}

    @property
    def pixels(self) -> int:
        """Labelled (segmentation) or valid (normals) test pixels scored so far."""
        return int(sum(p["labelled" if self.task.kind == "segmentation" else "count"].sum() for p in self.parts))

    def add(self, images: torch.Tensor, target: torch.Tensor, pred: torch.Tensor) -> None:
        target, pred = target.cpu().numpy(), pred.cpu().numpy()
        if images.shape[-2:] != target.shape[-2:]:  # full-resolution scoring: show the image at the label's size
            images = _resize(images.float(), target.shape[-2:]).round().clamp(0, 255).to(torch.uint8)
        if self.task.kind == "segmentation":
            self.parts.append(segmentation_counts(pred, target, self.task.num_classes, self.task.ignore_index))
            err = None
        else:
            err = angular_error(pred, target, axis=1)  # (B, H, W)
            valid = valid_normals(target, axis=1)
            self.errors.append(err[valid].astype(np.float32))
            per_image = [err[i][valid[i]] for i in range(len(err))]
            self.parts.append({"sum": np.array([e.sum() for e in per_image]), "count": valid.reshape(len(err), -1).sum(1),
                               **{f"below_{t:g}": np.array([(e < t).sum() for e in per_image]) for t in THRESHOLDS}})
            err = np.where(valid, err, np.nan)
        keep = max(0, self.n_examples - len(self.examples["images"]))
        for i in range(min(keep, len(images))):
            self.examples["images"].append(images[i].permute(1, 2, 0).cpu().numpy())
            self.examples["targets"].append(target[i] if target.ndim == 3 else np.moveaxis(target[i], 0, -1))
            self.examples["predictions"].append(pred[i] if pred.ndim == 3 else np.moveaxis(pred[i], 0, -1))
            if err is not None:
                self.examples["errors"].append(err[i])

    def result(self, n_boot: int, seed: int) -> tuple[dict, dict, list]:
        stats = self.stats = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        n = len(next(iter(stats.values())))
        if self.task.kind == "segmentation":
            metrics = segmentation_metrics(stats)
            iou = [float(v) for v in metrics.pop("iou_per_class")]
            boot = {name: lambda idx, name=name: segmentation_metrics({k: v[idx] for k, v in stats.items()})[name]
                    for name in SEG_METRICS}
        else:
            metrics, iou = normals_metrics(np.concatenate(self.errors)), []
            boot = {"sn_mean_err": lambda idx: stats["sum"][idx].sum() / stats["count"][idx].sum()}
            boot.update({f"sn_within_{t:g}": lambda idx, t=t: 100.0 * stats[f"below_{t:g}"][idx].sum() / stats["count"][idx].sum()
                         for t in THRESHOLDS})
        index = np.arange(n)
        ci = {name: bootstrap_ci(lambda i, _s, f=f: f(i), index, index, n_boot=n_boot, seed=seed) for name, f in boot.items()}
        return metrics, ci, iou


