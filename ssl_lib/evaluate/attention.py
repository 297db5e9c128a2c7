"""Task-agnostic occlusion saliency and attentive diffusion (the paper's §4.9, A.9 and Table 9).

A ``mask x mask`` window of the occlusion value (0, applied *after* normalisation, i.e. the
normalised mean colour, as the 3rd-party ``saliency.py``) slides over the image with ``stride``.
Each position scores ``||f(x) - f(x_occ)|| / ||f(x)||`` on the pooled features, and a pixel's
saliency is the mean score of the windows that cover it. So that every pixel of the image is covered
by the same number of windows, ``(mask / stride)^2`` (``mask^2`` at the paper's stride 1), the
windows run over a margin of ``mask - stride`` pixels on each side, which is then cropped off:

``"crop"`` (the paper / ``saliency.py``)
    the image is loaded with the margin (242 px for a 224 px map and a 10 px mask) and the map is
    cropped to the central part;
``"pad"``
    the normalised image is zero-padded by the margin (the pad is the occlusion value, so it reads as
    "already occluded"); for images that exist only at one size (the mini suite's 32 px).

*Attentive diffusion* is the % of a map's values above the map's mean: low = focused saliency.

All windows of all images are scored in batches of ``batch_size`` forward passes; the per-pixel
average is a transposed convolution of the score grid with an all-ones ``mask x mask`` kernel.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from .._registry import Registry
from ..data import eval_transform, open_split
from ..exceptions import ConfigError
from ..models import FeatureModel

__all__ = ["BORDERS", "Occlusion", "coverage", "occlusion_saliency", "attentive_diffusion", "fixed_pattern_share",
           "attention_images", "image_transform"]


@dataclass(frozen=True)
class Border:
    """How the margin around the image is obtained."""

    pads: bool  # True: zero-pad the normalised image; False: the image is loaded with the margin
    description: str


BORDERS: Registry[Border] = Registry("border", hint="'crop' is the paper's saliency.py, 'pad' pads with zeros.")
BORDERS.add("crop", Border(False, "image loaded mask - stride px larger on each side, map cropped back (saliency.py)"))
BORDERS.add("pad", Border(True, "normalised image zero-padded by mask - stride px on each side, map cropped back"))


@dataclass(frozen=True)
class Occlusion:
    """The occlusion protocol; ``size`` arguments are the side of the saliency map (the image)."""

    mask: int = 10
    stride: int = 1
    border: str = "crop"
    value: float = 0.0  # after normalisation

    def __post_init__(self) -> None:
        BORDERS.get(self.border)
        if self.mask < 1 or self.stride < 1 or self.mask % self.stride:
            raise ConfigError(f"The occlusion mask ({self.mask}) must be a positive multiple of the stride "
                              f"({self.stride}) so that every pixel is covered equally often.")

    @property
    def margin(self) -> int:
        return self.mask - self.stride

    def load_size(self, size: int) -> int:
        """Side of the image to load: with the margin for ``crop``, as it is for ``pad``."""
        return size + (0 if BORDERS.get(self.border).pads else 2 * self.margin)

    def positions(self, size: int) -> int:
        """Window positions per axis over the map plus its margins."""
        if size % self.stride:
            raise ConfigError(f"The image side ({size}) must be a multiple of the occlusion stride ({self.stride}).")
        return (size + 2 * self.margin - self.mask) // self.stride + 1

    def average(self, grid: torch.Tensor, size: int) -> torch.Tensor:
        """``(N, n, n)`` window scores → ``(N, size, size)`` per-pixel sums of the covering windows."""
        kernel = torch.ones(1, 1, self.mask, self.mask, dtype=grid.dtype, device=grid.device)
        total = F.conv_transpose2d(grid[:, None], kernel, stride=self.stride)[:, 0]
        return total[:, self.margin:self.margin + size, self.margin:self.margin + size]


def coverage(size: int, occlusion: Occlusion) -> torch.Tensor:
    """How many windows cover each pixel of a ``size`` map: ``(mask / stride)^2`` everywhere."""
    n = occlusion.positions(size)
    return occlusion.average(torch.ones(1, n, n, dtype=torch.float64), size)[0]


@torch.inference_mode()
def occlusion_saliency(model: FeatureModel, images: torch.Tensor, occlusion: Occlusion, *, batch_size: int = 256,
                       progress: bool = False) -> torch.Tensor:
    """Saliency maps ``(N, S, S)`` of float images ``(N, 3, H, W)`` in [0, 1].

    ``H = S`` for the ``pad`` border, ``H = S + 2 (mask - stride)`` for ``crop``. The backbone
    sees ``model.normalize(x)`` with the window set to ``occlusion.value``.
    """
    model.eval()
    device = model.mean.device  # FeatureModel's normalisation buffers (a backbone may have no parameters)
    x = model.normalize(images.to(device, torch.float32))
    if BORDERS.get(occlusion.border).pads:
        size = x.shape[-1]
        x = F.pad(x, [occlusion.margin] * 4, value=occlusion.value)
    else:
        size = x.shape[-1] - 2 * occlusion.margin
    if size < 1 or x.shape[-1] != x.shape[-2]:
        raise ConfigError(f"Occlusion saliency needs square images larger than 2 x (mask - stride); "
                          f"got {tuple(x.shape)}.")
    side, n = x.shape[-1], occlusion.positions(size)
    base = torch.cat([model.backbone(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).float()
    base_norm = base.norm(dim=1).clamp_min(1e-12)
    per_image = n * n
    scores = torch.empty(len(x) * per_image, device=device)
    pixels = torch.arange(side, device=device)
    starts = range(0, len(scores), batch_size)
    for start in tqdm(starts, desc="occlusions", file=sys.stderr, mininterval=10, disable=not progress):
        idx = torch.arange(start, min(start + batch_size, len(scores)), device=device)
        image, pos = idx // per_image, idx % per_image
        top, left = (pos // n) * occlusion.stride, (pos % n) * occlusion.stride
        rows = (pixels >= top[:, None]) & (pixels < top[:, None] + occlusion.mask)
        cols = (pixels >= left[:, None]) & (pixels < left[:, None] + occlusion.mask)
        window = (rows[:, :, None] & cols[:, None, :])[:, None]
        features = model.backbone(torch.where(window, occlusion.value, x[image])).float()
        scores[idx] = (features - base[image]).norm(dim=1) / base_norm[image]
    grid = scores.view(len(x), n, n).double()
    return (occlusion.average(grid, size) / coverage(size, occlusion).to(grid.device)).float().cpu()


def attentive_diffusion(saliency) -> np.ndarray:
    """% of each map's values above that map's mean; ``(N, H, W)`` → ``(N,)`` (a 2-D map → shape ``()``)."""
    maps = torch.as_tensor(saliency, dtype=torch.float64)
    mean = maps.mean(dim=(-2, -1), keepdim=True)
    return (100.0 * (maps > mean).double().mean(dim=(-2, -1))).numpy()


def fixed_pattern_share(saliency) -> float:
    """Share of the maps' variance that one image-independent map explains (0: none, 1: all).

    Each map is divided by its mean; the share is the variance of the mean map over the mean
    within-map variance. A strided backbone can weigh pixels on a lattice of its total stride more
    than others whatever the image (its strided 1x1 shortcuts sample the input there); this says
    how much of the saliency is that. With N independent maps it is at least about 1/N.
    """
    maps = torch.as_tensor(saliency, dtype=torch.float64)
    maps = maps / maps.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    within = maps.var(dim=(-2, -1), unbiased=False).mean()
    return float(maps.mean(dim=0).var(unbiased=False) / within) if within > 0 else float("nan")


def attention_images(dataset: str, split: str, n: int, *, size: int, transform=None, seed: int = 0,
                     accept_sizes: bool = False) -> torch.Tensor:
    """``n`` distinct images (seeded draw without replacement), float ``(n, 3, size, size)`` in [0, 1].

    Images held in memory at ``size`` are used as they are; others go through ``transform`` (see
    :func:`image_transform`).
    """
    data = open_split(dataset, split, accept_sizes=accept_sizes)
    if n < 1 or n > len(data):
        raise ConfigError(f"n_images must be between 1 and {len(data)} (the size of {dataset}/{split}), got {n}.")
    idx = np.sort(np.random.default_rng(seed).choice(len(data), size=n, replace=False))
    if hasattr(data, "images") and data.images.shape[-1] == data.images.shape[-2] == size:
        return TF.to_dtype(data.images[torch.as_tensor(idx)], torch.float32, scale=True)
    if transform is None:
        raise ConfigError(f"Images of {dataset!r} must be brought to {size} px: pass a transform (image_transform).")
    return torch.stack([transform(data[int(i)][0]) for i in idx])


def image_transform(model_cfg, occlusion: Occlusion):
    """The model's evaluation transform (``pad``), or for ``crop`` a resize + centre crop straight to
    the side with the margin (``saliency.py``: ``Resize(242)``, ``CenterCrop(242)`` for a 224 px map)."""
    if BORDERS.get(occlusion.border).pads:
        return eval_transform(model_cfg)
    size = occlusion.load_size(model_cfg.input_size)
    return eval_transform(replace(model_cfg, input_size=size, resize_size=size))
