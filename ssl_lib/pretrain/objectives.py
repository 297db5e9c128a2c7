"""Pretraining objectives: one loss function and one small module (heads, EMA, queue) per method.

Each objective wraps the backbone it trains and maps a list of augmented, normalised views (and
the source labels, which only ``supervised`` reads) to a scalar loss. ``step_end`` runs after the
optimiser step (momentum encoders, queues); ``export_backbone`` is the network that is saved
(the teacher for DINO, as its authors release; the online/query encoder otherwise).

The losses are plain functions so that tests can check them against hand computations.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import Registry

__all__ = [
    "OBJECTIVES",
    "Objective",
    "nt_xent",
    "info_nce",
    "byol_loss",
    "barlow_twins_loss",
    "sinkhorn",
    "swav_loss",
    "dino_loss",
    "ema_update",
    "cosine_momentum",
    "mlp",
]

OBJECTIVES: Registry[type["Objective"]] = Registry("objective")


# ---------------------------------------------------------------------------------------------
# Loss functions
# ---------------------------------------------------------------------------------------------


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the other 2N - 1."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, targets)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: the positive key (index 0) against the queue's negatives; inputs unit-norm."""
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE, ``2 - 2 cos(p, z)``, averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float) -> torch.Tensor:
    """Push the batch cross-correlation of standardised embeddings towards the identity.

    Standardisation is batch-norm style (biased std), as the paper's affine-free BatchNorm1d.
    """
    n = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / z1.std(0, unbiased=False).clamp_min(1e-6)
    z2 = (z2 - z2.mean(0)) / z2.std(0, unbiased=False).clamp_min(1e-6)
    c = z1.T @ z2 / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + off_diagonal_weight * off


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes: ``(B, K)`` rows sum to 1, prototypes share the batch equally."""
    q = torch.exp((scores - scores.max()) / epsilon).T  # (K, B)
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(1, keepdim=True) / k
        q = q / q.sum(0, keepdim=True) / b
    return (q * b).T


def swav_loss(
    scores1: torch.Tensor, scores2: torch.Tensor, codes1: torch.Tensor, codes2: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Swapped prediction: view 1's codes from view 2's scores and vice versa (mean of both)."""
    l1 = -(codes1 * F.log_softmax(scores2 / temperature, dim=1)).sum(1).mean()
    l2 = -(codes2 * F.log_softmax(scores1 / temperature, dim=1)).sum(1).mean()
    return (l1 + l2) / 2


def dino_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
    student_temp: float, teacher_temp: float,
) -> torch.Tensor:
    """Cross-entropy from the centred, sharpened teacher to the student, over pairs of different views."""
    targets = [F.softmax((t - center) / teacher_temp, dim=1) for t in teacher]
    logps = [F.log_softmax(s / student_temp, dim=1) for s in student]
    terms = [
        -(t * lp).sum(1).mean()
        for i, t in enumerate(targets) for j, lp in enumerate(logps) if i != j
    ]
    return torch.stack(terms).mean()


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def mlp(dims: tuple[int, ...], batch_norm: bool = True, last_bn: bool = False) -> nn.Sequential:
    """Linear layers with (BN +) ReLU between them; the projection/prediction heads of the methods."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=not (batch_norm and not last)))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
        elif last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = m * target + (1 - m) * online`` for parameters (buffers follow their own forward)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL/DINO's schedule: from ``base`` at the start to 1 at the end of training."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class Objective(nn.Module):
    """Base: holds ``backbone`` (features of dim ``backbone.feature_dim``); subclasses add heads."""

    n_views: int = 2

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.dim = backbone.feature_dim

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step_end(self, progress: float) -> None:
        """Called after each optimiser step with ``progress`` in [0, 1]."""

    def export_backbone(self) -> nn.Module:
        return self.backbone


# ---------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------


@OBJECTIVES.register("supervised")
class Supervised(Objective):
    """Cross-entropy on the source labels through a linear head."""

    n_views = 1

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(backbone, num_classes)
        self.head = nn.Linear(self.dim, num_classes)

    def forward(self, views, labels):
        return F.cross_entropy(self.head(self.backbone(views[0])), labels)


@OBJECTIVES.register("simclr")
class SimCLR(Objective):
    def __init__(self, backbone, num_classes, temperature: float = 0.2, proj_dim: int = 128) -> None:
        super().__init__(backbone, num_classes)
        self.temperature = temperature
        self.projector = mlp((self.dim, self.dim, proj_dim))

    def forward(self, views, labels):
        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        return nt_xent(z1, z2, self.temperature)


def _shuffled_forward(net: nn.Module, x: torch.Tensor, chunks: int, g: torch.Generator) -> torch.Tensor:
    """Forward a shuffled batch in ``chunks`` BN groups and unshuffle: MoCo's shuffle-BN on one device."""
    perm = torch.randperm(x.shape[0], generator=g)
    out = torch.cat([net(part) for part in x[perm].chunk(chunks)])
    return out[torch.argsort(perm)]


@OBJECTIVES.register("moco-v2")
class MoCoV2(Objective):
    """Momentum key encoder, a queue of past keys, InfoNCE; symmetrised over the two views."""

    def __init__(
        self, backbone, num_classes, temperature: float = 0.2, momentum: float = 0.99,
        queue_size: int = 4096, proj_dim: int = 128, bn_chunks: int = 4, seed: int | None = None,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.temperature, self.momentum, self.bn_chunks = temperature, momentum, bn_chunks
        self.projector = mlp((self.dim, self.dim, proj_dim), batch_norm=False)
        self.key_backbone = _frozen_copy(backbone)
        self.key_projector = _frozen_copy(self.projector)
        # The queue and shuffle generator follow the recipe's seed: build_objective seeds the
        # global RNG before constructing heads, so the default draws from it.
        if seed is None:
            seed = int(torch.randint(2**31 - 1, ()))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim, generator=g), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._shuffle_gen = g
        self._pending: list[torch.Tensor] = []

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        key_net = nn.Sequential(self.key_backbone, self.key_projector)
        with torch.no_grad():
            return F.normalize(_shuffled_forward(key_net, x, self.bn_chunks, self._shuffle_gen), dim=1)

    def forward(self, views, labels):
        q1, q2 = (F.normalize(self.projector(self.backbone(v)), dim=1) for v in views)
        k1, k2 = self._keys(views[0]), self._keys(views[1])
        queue = self.queue.clone()
        loss = (info_nce(q1, k2, queue, self.temperature) + info_nce(q2, k1, queue, self.temperature)) / 2
        self._pending = [k1, k2]
        return loss

    @torch.no_grad()
    def step_end(self, progress):
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)
        for keys in self._pending:
            self.enqueue(keys)
        self._pending = []

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries (a ring buffer)."""
        size = self.queue.shape[0]
        idx = (int(self.queue_ptr) + torch.arange(keys.shape[0])) % size
        self.queue[idx] = keys
        self.queue_ptr.fill_((int(self.queue_ptr) + keys.shape[0]) % size)


@OBJECTIVES.register("byol")
class BYOL(Objective):
    """Online network + predictor regresses an EMA target's projection of the other view."""

    def __init__(self, backbone, num_classes, momentum: float = 0.99, proj_dim: int = 128, hidden: int = 512) -> None:
        super().__init__(backbone, num_classes)
        self.base_momentum = momentum
        self.projector = mlp((self.dim, hidden, proj_dim))
        self.predictor = mlp((proj_dim, hidden, proj_dim))
        self.target_backbone = _frozen_copy(backbone)
        self.target_projector = _frozen_copy(self.projector)

    def forward(self, views, labels):
        p1, p2 = (self.predictor(self.projector(self.backbone(v))) for v in views)
        with torch.no_grad():
            z1, z2 = (self.target_projector(self.target_backbone(v)) for v in views)
        return (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2

    @torch.no_grad()
    def step_end(self, progress):
        m = cosine_momentum(self.base_momentum, progress)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)


@OBJECTIVES.register("swav")
class SwAV(Objective):
    """Online clustering: Sinkhorn codes of one view are predicted from the other's prototype scores."""

    def __init__(
        self, backbone, num_classes, prototypes: int = 100, temperature: float = 0.1,
        epsilon: float = 0.05, sinkhorn_iterations: int = 3, proj_dim: int = 128, hidden: int = 512,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, sinkhorn_iterations
        self.projector = mlp((self.dim, hidden, proj_dim))
        self.prototypes = nn.Linear(proj_dim, prototypes, bias=False)

    def forward(self, views, labels):
        with torch.no_grad():  # prototypes live on the unit sphere
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        s1, s2 = (self.prototypes(F.normalize(self.projector(self.backbone(v)), dim=1)) for v in views)
        c1 = sinkhorn(s1.detach(), self.epsilon, self.iterations)
        c2 = sinkhorn(s2.detach(), self.epsilon, self.iterations)
        return swav_loss(s1, s2, c1, c2, self.temperature)


@OBJECTIVES.register("barlow-twins")
class BarlowTwins(Objective):
    def __init__(self, backbone, num_classes, off_diagonal_weight: float = 5e-3, proj_dims: tuple[int, ...] = (512, 512, 512)) -> None:
        super().__init__(backbone, num_classes)
        self.off_diagonal_weight = off_diagonal_weight
        self.projector = mlp((self.dim, *proj_dims))

    def forward(self, views, labels):
        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        return barlow_twins_loss(z1, z2, self.off_diagonal_weight)


class _DinoHead(nn.Module):
    """MLP → bottleneck → L2-normalise → weight-normalised linear layer (norm fixed at 1)."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 512, bottleneck: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.last = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1) @ F.normalize(self.last.weight, dim=1).T


@OBJECTIVES.register("dino")
class DINO(Objective):
    """Student matches an EMA teacher whose outputs are centred (running mean) and sharpened."""

    def __init__(
        self, backbone, num_classes, out_dim: int = 1024, student_temp: float = 0.1,
        teacher_temp: float = 0.04, center_momentum: float = 0.9, momentum: float = 0.99,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.base_momentum = center_momentum, momentum
        self.head = _DinoHead(self.dim, out_dim)
        self.teacher_backbone = _frozen_copy(backbone)
        self.teacher_head = _frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._teacher_out: torch.Tensor | None = None

    def forward(self, views, labels):
        student = [self.head(self.backbone(v)) for v in views]
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)) for v in views]
        self._teacher_out = torch.cat(teacher)
        return dino_loss(student, teacher, self.center, self.student_temp, self.teacher_temp)

    @torch.no_grad()
    def step_end(self, progress):
        m = cosine_momentum(self.base_momentum, progress)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_head, self.head, m)
        if self._teacher_out is not None:
            batch_center = self._teacher_out.mean(0, keepdim=True)
            self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
            self._teacher_out = None

    def export_backbone(self) -> nn.Module:
        return self.teacher_backbone
