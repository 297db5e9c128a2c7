"""Training a detector (SGD, warmup and steps, horizontal flips) and predicting on a test set."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.models.detection import FasterRCNN
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from ...data.detection import collate
from .config import DetectionCfg

__all__ = ["lr_schedule", "train_detector", "predict_detections"]

# ------------------------------------------------------------------------------------------------
# Training and prediction


def _flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    return TF.horizontal_flip(image), {**target, "boxes": TF.horizontal_flip(boxes).as_subclass(torch.Tensor)}


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: DetectionCfg):
    """detectron2's WarmupMultiStepLR: linear warmup from ``warmup_factor``, then ×gamma at each step."""
    steps = [s - cfg.warmup_iters for s in cfg.steps if s > cfg.warmup_iters]
    decay = torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=cfg.gamma)
    if cfg.warmup_iters <= 0:
        return decay
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, cfg.warmup_factor, 1.0, total_iters=cfg.warmup_iters)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[cfg.warmup_iters])


def train_detector(
    detector: FasterRCNN, dataset: Dataset, cfg: DetectionCfg, *, seed: int = 0, device=None,
    num_workers: int = 0, progress: bool = True, desc: str = "",
) -> list[float]:
    """SGD over ``cfg``'s schedule (in place); returns the total loss of every iteration.

    Shuffling and flips draw from generators seeded with ``seed``; the RPN/ROI sampling and the
    multi-scale size choice from the global RNG, seeded here inside a fork (the caller's stream is
    untouched): the same seed gives the same weights on CPU.
    """
    device = torch.device(device) if device is not None else next(detector.parameters()).device
    detector.to(device).train()
    params = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = lr_schedule(optimizer, cfg)
    shuffle = torch.Generator().manual_seed(seed)
    flips = torch.Generator().manual_seed(seed + 1)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) >= cfg.batch_size,
                        generator=shuffle, collate_fn=collate, num_workers=num_workers)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        batches = iter(loader)
        bar = tqdm(range(cfg.iterations), desc=desc or "detection", file=sys.stderr, mininterval=10,
                   disable=not progress, leave=False)
        for _ in bar:
            try:
                images, targets = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, targets = next(batches)
            if cfg.hflip:
                coins = torch.rand(len(images), generator=flips) < 0.5
                pairs = [_flip(i, t) if c else (i, t) for i, t, c in zip(images, targets, coins)]
                images, targets = [p[0] for p in pairs], [p[1] for p in pairs]
            images = [i.to(device, non_blocking=True) for i in images]
            targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
            loss_dict = detector(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"Detection training diverged at iteration {len(losses)} (loss {loss.item()}); lower the lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    return losses


@torch.inference_mode()
def predict_detections(detector: FasterRCNN, dataset: Dataset, *, batch_size: int = 50, device=None,
                       num_workers: int = 0) -> tuple[list[dict], list[dict]]:
    """``(predictions, targets)`` per image, in order. Predictions hold ``boxes`` (n, 4), ``scores``
    and ``labels`` as numpy in original image coordinates (torchvision's transform resizes back)."""
    device = torch.device(device) if device is not None else next(detector.parameters()).device
    detector.to(device).eval()
    predictions, targets = [], []
    for images, batch_targets in DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                            num_workers=num_workers):
        for det in detector([i.to(device) for i in images]):
            predictions.append({k: det[k].cpu().numpy() for k in ("boxes", "scores", "labels")})
        targets.extend({k: v.numpy() for k, v in t.items()} for t in batch_targets)
    return predictions, targets


