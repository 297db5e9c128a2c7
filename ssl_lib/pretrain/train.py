"""The training loop: seeded backbone init, per-step views, warmup + cosine learning rate."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from .._registry import Registry
from ..exceptions import ConfigError
from ..models._arch import build_arch
from ..paths import atomic_path
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
    "TrainingState",
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


def make_views(
    images_u8: torch.Tensor, augmentation: str, n_views: int, g: torch.Generator, size: int | None = None,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """``n_views`` independently augmented, normalised views of a uint8 batch at ``size`` px,
    channels-last on ``device`` (augmentation runs on the CPU, from ``g``)."""
    spec = AUGMENTATIONS.get(augmentation)
    x = to_float(images_u8)
    views = [normalize(augment(x, spec, g, size)) for _ in range(n_views)]
    return [v.to(device or "cpu").contiguous(memory_format=torch.channels_last) for v in views]


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


@dataclass
class TrainingState:
    """What a resumed run needs to continue exactly where an epoch ended: weights and heads,
    optimiser moments, every random generator's state, the losses so far, the wall time spent."""

    epoch: int  # epochs finished
    objective: dict
    optimizer: dict
    generators: dict[str, torch.Tensor]
    epoch_losses: list[float]
    seconds: float
    identity: str

    def save(self, path: Path) -> None:
        """Atomically (a kill mid-write leaves the previous epoch's state)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(dataclasses.asdict(self), tmp)

    @classmethod
    def load(cls, path: Path | None, identity: str) -> TrainingState | None:
        """The saved state if it belongs to this recipe; anything else (absent, foreign, unreadable) is None."""
        if path is None or not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            state = cls(**blob)
        except Exception:  # an unreadable state restarts training rather than failing it
            return None
        return state if state.identity == identity else None


def _generators(objective: Objective) -> dict[str, torch.Generator]:
    """Generators an objective draws from between steps (MoCo's shuffle-BN permutation)."""
    return {name: value for name, value in vars(objective).items() if isinstance(value, torch.Generator)}


def pretrain(
    recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
    *, desc: str = "", show_progress: bool = True, state_path: Path | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, list[float], float]:
    """Train ``recipe`` on uint8 ``(N, H, W, 3)`` images; return the backbone to save, the epoch
    losses and the training wall seconds (those of earlier, resumed attempts included).

    All randomness (init, batch order, augmentations, MoCo's shuffle) derives from ``recipe.seed``.
    With ``state_path`` the state is saved after every epoch and a rerun resumes from the last one
    (losing at most the epoch in progress) and ends with the same bytes as an uninterrupted run,
    on the same device and thread count.
    """
    device = torch.device(device or "cpu")
    if recipe.epochs == 0:
        return build_backbone(recipe.seed), [], 0.0
    images = images.permute(0, 3, 1, 2).contiguous() if images.shape[-1] == 3 else images
    objective = build_objective(recipe, num_classes).to(device).to(memory_format=torch.channels_last)
    objective.train()
    optimizer = build_optimizer(recipe, objective)
    g = torch.Generator().manual_seed(recipe.seed)
    n = images.shape[0]
    steps_per_epoch = n // recipe.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"Batch size {recipe.batch_size} exceeds the {n} training images.")
    total = steps_per_epoch * recipe.epochs
    warmup = min(total, round(recipe.warmup_epochs * steps_per_epoch))
    identity = recipe.identity()
    state = TrainingState.load(state_path, identity)
    epoch_losses, first_epoch, spent = [], 0, 0.0
    if state is not None:
        objective.load_state_dict(state.objective)
        optimizer.load_state_dict(state.optimizer)
        g.set_state(state.generators["batches"])
        for name, gen in _generators(objective).items():
            gen.set_state(state.generators[name])
        epoch_losses, first_epoch, spent = list(state.epoch_losses), state.epoch, state.seconds
    bar = tqdm(total=total, initial=first_epoch * steps_per_epoch, desc=desc or recipe.objective,
               disable=not show_progress, dynamic_ncols=True, file=sys.stderr, mininterval=5)
    step = first_epoch * steps_per_epoch
    for epoch in range(first_epoch, recipe.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=g)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, recipe.lr)
            views = make_views(images[idx], recipe.augmentation, objective.n_views, g, recipe.train_size, device)
            loss = train_step(objective, optimizer, views, labels[idx].to(device), (step + 1) / total)
            running += loss
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        epoch_losses.append(running / steps_per_epoch)
        spent += time.perf_counter() - start
        if state_path is not None:
            generators = {"batches": g.get_state(), **{k: v.get_state() for k, v in _generators(objective).items()}}
            TrainingState(epoch + 1, objective.state_dict(), optimizer.state_dict(), generators, epoch_losses,
                          spent, identity).save(state_path)
    bar.close()
    backbone = objective.export_backbone().to("cpu").to(memory_format=torch.contiguous_format)
    for p in backbone.parameters():
        p.requires_grad_(True)
    return backbone.eval(), epoch_losses, spent
