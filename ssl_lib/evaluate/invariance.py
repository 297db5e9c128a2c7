"""Synthetic invariance, the follow-up's measure (reference/paper.md §5, ``eval_synthetic_invariance.py``).

Features of clean and transformed images are centred with the mean and whitened with the Cholesky
factor ``L`` of the inverse covariance (``Σ⁻¹ = L Lᵀ``) of a reference feature set,
``w(f) = (f − μ) @ L``. **Invariance** is the mean cosine similarity between ``w(clean)`` and
``w(transformed)``; the mean **Mahalanobis distance** between them is their Euclidean distance in
whitened space. Whitening keeps a few high-variance directions from dominating the cosine.

Each transform is probed on a grid of ``k`` magnitudes (fixed levels for the binary ones and
posterize), and every row of the result is one magnitude averaged over the images. Differences
from the code, which worked on 224 px crops of full-size ImageNet images:

- Magnitudes that depend on resolution (translation, crop, blur, deform) are fractions of the
  image side, so one grid serves 32 px and 224 px inputs.
- Spatial changes act on the image itself, so uncovered areas are black (the code transformed the
  full image and then centre-cropped it, so translations brought in real content).
- One scalar per magnitude: translation is diagonal and shear acts on the x axis (the code used 2-D
  grids), and resized_crop takes a top-left crop of a given side.
- Interpolation is bilinear (the code used PIL's nearest, before a downsampling resize).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as TF
from scipy import stats

from .._registry import unknown_name_message
from ..data import open_split
from ..exceptions import ConfigError, SSLLibError, UnknownNameError
from ..features import forward_batches
from .synthetic_transforms import APPEARANCE, SPATIAL, TRANSFORMS, SyntheticTransform

__all__ = [
    "Whitener",
    "SyntheticTransform",
    "TRANSFORMS",
    "SPATIAL",
    "APPEARANCE",
    "CORRELATIONS",
    "sample_images",
    "image_features",
    "invariance",
    "invariance_profile",
    "invariance_vs_transfer",
]


# --------------------------------------------------------------------------------------- whitening
@dataclass(frozen=True)
class Whitener:
    """``w(f) = (f − mean) @ L`` with ``L Lᵀ = (Σ + ridge·I)⁻¹``, all in float64.

    ``ridge = eps · trace(Σ) / D`` (shrinkage towards the mean eigenvalue) keeps a nearly singular
    Σ invertible (random-init nets; the code patched its random model with ``1e-10·I``). It cannot
    stand in for missing data: from N ≤ D reference features Σ has rank below D, and the ridge
    directions, magnified by ``1/sqrt(ridge)``, then carry most of every whitened vector, so the
    cosine measures them rather than the features (with power-law spectra this reorders models;
    see the tests). Such a fit is refused unless ``allow_rank_deficient`` is set; the follow-up
    estimated Σ on all 50,000 ImageNet validation images, the paper study uses 10,000.
    """

    mean: torch.Tensor  # (D,)
    L: torch.Tensor  # (D, D), lower triangular
    eps: float = 0.0

    @classmethod
    def fit(cls, features: torch.Tensor | np.ndarray, *, eps: float = 1e-4,
            allow_rank_deficient: bool = False) -> Whitener:
        x = torch.as_tensor(features, dtype=torch.float64)
        if x.ndim != 2 or len(x) < 2:
            raise SSLLibError(f"Whitener.fit needs (N, D) features with N >= 2, got shape {tuple(x.shape)}.")
        if eps < 0:
            raise SSLLibError(f"eps must be >= 0, got {eps!r}.")
        n, d = x.shape
        if n <= d and not allow_rank_deficient:
            raise SSLLibError(
                f"Whitening from {n} reference features in {d} dimensions: their covariance has rank at most "
                f"{n - 1}, so the ridge directions would dominate the whitened cosine. Use more reference images "
                f"(n_reference > {d}; 10x the dimension is accurate to about 0.001)."
            )
        cov = torch.cov(x.T).reshape(d, d)  # ddof=1, as np.cov
        cov = cov + eps * cov.trace() / d * torch.eye(d, dtype=torch.float64)
        eigenvalues = torch.linalg.eigvalsh(cov)
        if not eigenvalues[0] > 1e-12 * eigenvalues[-1].clamp(min=1e-300):  # also catches NaN
            raise SSLLibError(
                f"The covariance of {len(x)} reference features in {d} dimensions is singular "
                f"(eps={eps!r}). Pass eps > 0 (e.g. 1e-4) or more reference images."
            )
        precision = torch.cholesky_inverse(torch.linalg.cholesky(cov))
        return cls(mean=x.mean(0), L=torch.linalg.cholesky(precision), eps=float(eps))

    def transform(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(features, dtype=torch.float64) - self.mean) @ self.L


# ------------------------------------------------------------------------------------ measurement
def sample_images(
    dataset: str, split: str, n: int, seed: int = 0, *, transform=None, replace: bool = True,
    accept_sizes: bool = False,
) -> torch.Tensor:
    """``n`` images drawn with replacement (``default_rng(seed).choice``), float (n, 3, H, W) in [0, 1].

    The code drew its 1000 ImageNet-val images the same way (legacy ``np.random.choice``, seed 0).
    ``replace=False`` draws distinct images (whitening references: a repeat adds no information).
    Datasets held in memory are used as they are; others need ``transform`` (e.g.
    ``ssl_lib.data.eval_transform(model.cfg)``) to bring them to one size.
    """
    data = open_split(dataset, split, transform=transform, accept_sizes=accept_sizes)
    if not replace and n > len(data):
        raise SSLLibError(f"Cannot draw {n} distinct images from {dataset}/{split}, which has {len(data)}.")
    idx = np.random.default_rng(seed).choice(len(data), size=n, replace=replace)
    if transform is None:
        if not hasattr(data, "images"):
            raise SSLLibError(
                f"Dataset {dataset!r} is not held in memory, so its images may differ in size. "
                "Pass transform=ssl_lib.data.eval_transform(model.cfg)."
            )
        return TF.to_dtype(data.images[torch.as_tensor(idx)], torch.float32, scale=True)
    return TF.to_dtype(torch.stack([data[int(i)][0] for i in idx]), torch.float32, scale=True)


def image_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(N, D) float32 features of ``transform(images)``, batch by batch on ``device`` (the transform
    runs there too), through the library's one forward path.

    Full precision on purpose: whitening magnifies low-variance directions, so bf16 rounding
    would read as a lack of invariance.
    """
    return forward_batches(model, images.split(batch_size), device=device, precision="fp32", transform=transform)


def _scores(clean: torch.Tensor, changed: torch.Tensor) -> tuple[float, float]:
    """Mean cosine similarity and mean Euclidean distance of paired whitened features."""
    cosine = nnf.cosine_similarity(clean, changed, dim=1).mean().item()
    return cosine, (clean - changed).norm(dim=1).mean().item()


_COLUMNS = ["transform", "magnitude", "cosine", "mahalanobis"]


def _rows(model, images, name, magnitudes, whitener, clean, **kw) -> list[tuple]:
    """One ``_COLUMNS`` tuple per magnitude; ``clean`` are the whitened clean features."""
    entry = TRANSFORMS.get(name)
    rows = []
    for m in magnitudes:
        changed = whitener.transform(image_features(model, images, transform=lambda x: entry(x, m), **kw))
        rows.append((name, float(m), *_scores(clean, changed)))
    return rows


def invariance(
    model: nn.Module,
    images: torch.Tensor,
    transform: str,
    *,
    whitener: Whitener,
    k: int = 8,
    magnitudes: Sequence[float] | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """One row per magnitude of ``transform``: columns transform, magnitude, cosine, mahalanobis.

    ``magnitudes`` overrides the transform's ``grid(k)``. The code summarises a transform by the
    mean of ``cosine`` over its grid (the identity magnitude included).
    """
    entry = TRANSFORMS.get(transform)
    kw = {"batch_size": batch_size, "device": device}
    clean = whitener.transform(image_features(model, images, **kw))
    grid = entry.grid(k) if magnitudes is None else list(magnitudes)
    return pd.DataFrame(_rows(model, images, transform, grid, whitener, clean, **kw), columns=_COLUMNS)


def invariance_profile(
    model: nn.Module,
    images: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    reference_images: torch.Tensor,
    k: int = 8,
    eps: float = 1e-4,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """:func:`invariance` for every transform in ``names`` (default: all), whitened with statistics
    of ``reference_images``' features (the code used all of ImageNet val)."""
    names = list(TRANSFORMS) if names is None else list(names)
    for name in names:
        TRANSFORMS.get(name)  # fail before any forward pass
    kw = {"batch_size": batch_size, "device": device}
    whitener = Whitener.fit(image_features(model, reference_images, **kw), eps=eps)
    clean = whitener.transform(image_features(model, images, **kw))
    rows = []
    for name in names:
        rows += _rows(model, images, name, TRANSFORMS.get(name).grid(k), whitener, clean, **kw)
    return pd.DataFrame(rows, columns=_COLUMNS)


# --------------------------------------------------------------------------- invariance vs transfer
CORRELATIONS: dict[str, Callable] = {
    "spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr,
}


def _require(frame: pd.DataFrame, what: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}.")


def invariance_vs_transfer(
    profile: pd.DataFrame,
    transfer: pd.DataFrame,
    method: str = "spearman",
    *,
    invariance_col: str = "cosine",
    score_col: str = "value",
    min_models: int = 3,
) -> pd.DataFrame:
    """Across models, the rank correlation of invariance to each transform with each downstream score.

    ``profile`` is long (model, transform, ``invariance_col``; several magnitudes per pair are
    averaged), ``transfer`` is long (model, dataset, ``score_col``, e.g. result rows). Only models
    in both enter. A positive correlation means the more invariant models transfer better to that
    dataset. Pairs with fewer than ``min_models`` models, or a constant column, give NaN.
    """
    if method not in CORRELATIONS:
        raise UnknownNameError(unknown_name_message("correlation", method, list(CORRELATIONS)))
    _require(profile, "profile", ["model", "transform", invariance_col])
    _require(transfer, "transfer", ["model", "dataset", score_col])
    inv = profile.groupby(["model", "transform"], sort=False)[invariance_col].mean().unstack("transform")
    perf = transfer.groupby(["model", "dataset"], sort=False)[score_col].mean().unstack("dataset")
    inv, perf = inv.align(perf, join="inner", axis=0)
    rows = []
    for t in inv.columns:
        for d in perf.columns:
            pair = pd.concat([inv[t], perf[d]], axis=1).dropna()
            rho = p = np.nan
            if len(pair) >= min_models:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", stats.ConstantInputWarning)
                    rho, p = CORRELATIONS[method](pair.iloc[:, 0], pair.iloc[:, 1])
            rows.append({"transform": t, "dataset": d, "method": method, "correlation": float(rho),
                         "p_value": float(p), "n_models": len(pair)})
    return pd.DataFrame(rows)
