"""Few-shot evaluation, the paper's protocol (reference/paper.md §3.3): prototypical episodes.

Each episode draws ``n_way`` classes and, per class, ``n_shot`` support and ``n_query`` query
images from the pooled train+val+test features. A query is assigned to the nearest class mean
of the support features (negative squared Euclidean distance; features unnormalised). The score
is the mean accuracy over episodes with the official code's interval ``1.96 * std / sqrt(n)``.

Episodes are sampled for all episodes at once and classified as batched tensor operations
(:func:`episode_accuracies`); :func:`episode_accuracies_loop` is the per-episode reference the
tests and the benchmark compare against. The sampler depends only on the labels and the seed, so
every model sees the same episodes (a paired comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..stats import normal_ci

__all__ = [
    "EpisodeCfg",
    "Episodes",
    "FewShotResult",
    "shortfall",
    "sample_episodes",
    "prototype_logits",
    "episode_accuracies",
    "episode_accuracies_loop",
    "evaluate_fewshot",
]


@dataclass(frozen=True)
class EpisodeCfg:
    n_way: int = 5
    n_shot: int = 5
    n_query: int = 15
    n_episodes: int = 600

    def __post_init__(self) -> None:
        for name in ("n_way", "n_shot", "n_query", "n_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def per_class(self) -> int:
        return self.n_shot + self.n_query


@dataclass
class Episodes:
    """Indices into the pooled features; ``support[e, w]`` and ``query[e, w]`` belong to ``classes[e, w]``."""

    classes: torch.Tensor  # (E, way) class labels
    support: torch.Tensor  # (E, way, shot)
    query: torch.Tensor  # (E, way, query)


@dataclass
class FewShotResult:
    n_way: int
    n_shot: int
    n_query: int
    n_episodes: int
    accuracy: float  # mean over episodes, %
    ci95: float  # half-width, 1.96 * std / sqrt(n_episodes)
    episode_accuracies: np.ndarray  # (E,) %


def shortfall(labels: np.ndarray, cfg: EpisodeCfg) -> str | None:
    """Why ``labels`` cannot supply ``cfg``'s episodes, or None.

    As in the paper, a dataset where any class has fewer than ``n_shot + n_query`` images is left
    out of that setting (its 50-shot tables omit Caltech101, Cars and Flowers) rather than
    sampled from a subset of its classes.
    """
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(classes) < cfg.n_way:
        return f"{len(classes)} classes, fewer than the {cfg.n_way} ways"
    short = counts < cfg.per_class
    if short.any():
        return (f"{int(short.sum())} of {len(classes)} classes have fewer than {cfg.per_class} images "
                f"({cfg.n_shot} shots + {cfg.n_query} queries; smallest class {int(counts.min())})")
    return None


def sample_episodes(labels: np.ndarray, cfg: EpisodeCfg, seed: int = 0) -> Episodes:
    """All episodes at once from a seeded generator.

    Classes per episode: the first ``n_way`` of a random permutation (the official code's
    ``randperm(n_classes)[:n_way]``). Images per class: the ``n_shot + n_query`` smallest of
    per-image random keys, i.e. a uniform draw without replacement; the first ``n_shot`` are the
    support. Padding in the class-by-image table gets an infinite key, so it is never drawn.
    """
    if (reason := shortfall(labels, cfg)) is not None:
        raise ValueError(f"Cannot sample {cfg.n_way}-way {cfg.n_shot}-shot episodes: {reason}.")
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    table = np.full((len(classes), counts.max()), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for c, (start, count) in enumerate(zip(starts, counts)):
        table[c, :count] = order[start:start + count]
    table = torch.from_numpy(table)
    counts_t = torch.from_numpy(counts)

    g = torch.Generator().manual_seed(seed)
    E, W = cfg.n_episodes, cfg.n_way
    chosen = torch.rand(E, len(classes), generator=g).argsort(dim=1)[:, :W]  # (E, W) class positions
    keys = torch.rand(E, W, table.shape[1], generator=g)
    keys[torch.arange(table.shape[1]) >= counts_t[chosen].unsqueeze(-1)] = float("inf")
    picked = keys.topk(cfg.per_class, dim=-1, largest=False, sorted=True).indices  # (E, W, shot+query)
    images = torch.gather(table[chosen], 2, picked)
    return Episodes(
        classes=torch.from_numpy(classes)[chosen],
        support=images[..., :cfg.n_shot].contiguous(),
        query=images[..., cfg.n_shot:].contiguous(),
    )


def _neg_sq_distances(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``-|q - p|^2`` for ``(E, Q, D)`` queries and ``(E, W, D)`` prototypes, as one batched GEMM.

    The ``|q|^2 - 2 q.p + |p|^2`` expansion is computed in float64, so the cancellation that makes
    it unreliable in float32 on large unnormalised features costs nothing that matters (~1e-16
    relative, against ~1e-7 for float32 differences).
    """
    q, p = query.double(), prototypes.double()
    sq = (q * q).sum(-1, keepdim=True) - 2.0 * torch.bmm(q, p.transpose(1, 2)) + (p * p).sum(-1).unsqueeze(1)
    return -sq.clamp_(min=0.0).to(query.dtype)


def prototype_logits(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Negative squared distances of queries to class prototypes, batched over episodes.

    ``support`` is ``(E, way, shot, D)``, ``query`` is ``(E, Q, D)``; returns ``(E, Q, way)``.
    """
    return _neg_sq_distances(query, support.mean(dim=2))


def episode_accuracies(
    features: np.ndarray | torch.Tensor, episodes: Episodes, *, chunk: int = 64, device=None,
) -> np.ndarray:
    """Per-episode query accuracy (%) for every episode, ``chunk`` episodes per tensor op.

    Prototypes come from ``embedding_bag(mode="mean")``, which averages the support rows without
    materialising the ``(E, way, shot, D)`` gather. The nearest prototype is the argmax of
    ``2 q.p - |p|^2``: ``|q|^2`` is the same for every class, so dropping it removes the large
    cancelling term of the expansion and leaves one float32 GEMM per chunk.
    """
    feats = torch.as_tensor(features, dtype=torch.float32, device=device)
    E, W, Q = episodes.query.shape
    S = episodes.support.shape[2]
    target = torch.arange(W, device=feats.device).repeat_interleave(Q)  # queries are grouped by way
    out = []
    for lo in range(0, E, chunk):
        support = episodes.support[lo:lo + chunk].to(feats.device)
        e = support.shape[0]
        prototypes = torch.nn.functional.embedding_bag(support.reshape(e * W, S), feats, mode="mean").view(e, W, -1)
        query = feats[episodes.query[lo:lo + chunk].to(feats.device)].flatten(1, 2)  # (e, W*Q, D)
        score = 2.0 * torch.bmm(query, prototypes.transpose(1, 2)) - (prototypes * prototypes).sum(-1).unsqueeze(1)
        pred = score.argmax(dim=-1)
        out.append((pred == target).double().mean(dim=1))
    return torch.cat(out).mul(100.0).cpu().numpy()


def episode_accuracies_loop(features: np.ndarray, episodes: Episodes) -> np.ndarray:
    """The per-episode reference: one NumPy prototype classifier per episode."""
    feats = np.asarray(features, dtype=np.float64)
    accs = []
    for support_idx, query_idx in zip(episodes.support.numpy(), episodes.query.numpy()):
        prototypes = feats[support_idx].mean(axis=1)  # (W, D)
        correct = 0
        for way, rows in enumerate(query_idx):
            dist = ((feats[rows][:, None, :] - prototypes[None]) ** 2).sum(-1)
            correct += int((dist.argmin(axis=1) == way).sum())
        accs.append(100.0 * correct / query_idx.size)
    return np.array(accs)


def evaluate_fewshot(
    features: np.ndarray, labels: np.ndarray, cfg: EpisodeCfg, *, seed: int = 0, device=None,
) -> FewShotResult:
    """Sample ``cfg``'s episodes from ``labels`` and score the prototype classifier on them."""
    episodes = sample_episodes(labels, cfg, seed=seed)
    accs = episode_accuracies(features, episodes, device=device)
    mean, low, _ = normal_ci(accs)  # the official code's 1.96 * np.std(acc) / sqrt(n)
    return FewShotResult(cfg.n_way, cfg.n_shot, cfg.n_query, cfg.n_episodes, mean, mean - low, accs)
