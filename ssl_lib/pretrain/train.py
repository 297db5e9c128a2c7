"""The training loop: seeded backbone init, per-step views, warmup + cosine learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from tqdm import tqdm

from .._registry import Registry
from ..exceptions import ConfigError
from ..models._arch import build_arch
from .augment import AUGMENTATIONS, augment, to_float
from .objectives import OBJECTIVES, Objective
from .recipes import ARCH, MEAN, STD, Recipe

__all__ = [
    "OPTIMIZERS",
    "build_backbone",
    "build_objective",
    "build_optimizer",
    "lr_at",
    "make_views",
    "normalize",
    "train_step",
    "pretrain",
]

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adamw", lambda groups, lr: torch.optim.AdamW(groups, lr=lr))
OPTIMIZERS.add("sgd", lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True))


def build_backbone(seed: int, arch: str = ARCH) -> nn.Module:
    """Initialise ``arch`` from ``seed`` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_arch(arch)


def build_objective(recipe: Recipe, num_classes: int) -> Objective:
    """Backbone + heads, all initialised from ``recipe.seed`` (heads from a derived seed)."""
    cls = OBJECTIVES.get(recipe.objective)
    backbone = build_backbone(recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed + 1)
        return cls(backbone, num_classes, **recipe.objective_kwargs)


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """Weight decay on weight matrices/kernels only (not on BN parameters or biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return OPTIMIZERS.get(recipe.optimizer)(groups, recipe.lr)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def normalize(x: torch.Tensor, mean: Iterable[float] = MEAN, std: Iterable[float] = STD) -> torch.Tensor:
    m = x.new_tensor(tuple(mean)).view(1, -1, 1, 1)
    s = x.new_tensor(tuple(std)).view(1, -1, 1, 1)
    return (x - m) / s


def make_views(images_u8: torch.Tensor, augmentation: str, n_views: int, g: torch.Generator) -> list[torch.Tensor]:
    """``n_views`` independently augmented, normalised views of a uint8 batch."""
    spec = AUGMENTATIONS.get(augmentation)
    x = to_float(images_u8)
    return [normalize(augment(x, spec, g)) for _ in range(n_views)]


def train_step(
    objective: Objective, optimizer: torch.optim.Optimizer, views: list[torch.Tensor],
    labels: torch.Tensor, progress: float,
) -> float:
    loss = objective(views, labels)
    if not torch.isfinite(loss):
        raise ConfigError(f"Loss became {loss.item()} for {type(objective).__name__}; lower the learning rate.")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    objective.step_end(progress)
    return loss.item()


def pretrain(
    recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
    *, desc: str = "", show_progress: bool = True,
) -> tuple[nn.Module, list[float]]:
    """Train ``recipe`` on uint8 ``(N, H, W, 3)`` images; return the backbone to save and epoch losses.

    All randomness (init, batch order, augmentations, MoCo's shuffle) derives from ``recipe.seed``.
    """
    if recipe.epochs == 0:
        return build_backbone(recipe.seed), []
    images = images.permute(0, 3, 1, 2).contiguous() if images.shape[-1] == 3 else images
    objective = build_objective(recipe, num_classes)
    objective.train()
    optimizer = build_optimizer(recipe, objective)
    g = torch.Generator().manual_seed(recipe.seed)
    n = images.shape[0]
    steps_per_epoch = n // recipe.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"Batch size {recipe.batch_size} exceeds the {n} training images.")
    total = steps_per_epoch * recipe.epochs
    warmup = min(total, round(recipe.warmup_epochs * steps_per_epoch))
    epoch_losses: list[float] = []
    bar = tqdm(total=total, desc=desc or recipe.objective, disable=not show_progress, dynamic_ncols=True)
    step = 0
    for _ in range(recipe.epochs):
        order = torch.randperm(n, generator=g)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, recipe.lr)
            views = make_views(images[idx], recipe.augmentation, objective.n_views, g)
            loss = train_step(objective, optimizer, views, labels[idx], (step + 1) / total)
            running += loss
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
        epoch_losses.append(running / steps_per_epoch)
    bar.close()
    backbone = objective.export_backbone()
    for p in backbone.parameters():
        p.requires_grad_(True)
    return backbone.eval(), epoch_losses
