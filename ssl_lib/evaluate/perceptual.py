"""Perceptual distances between an image and its reconstruction (the paper's Table 9 uses LPIPS).

- ``lpips-alex`` / ``lpips-vgg`` / ``lpips-squeeze``: LPIPS (Zhang et al. 2018) through the ``lpips``
  package, the optional ``lpips`` extra. The package ships its linear layers; torchvision downloads
  the backbone's ImageNet weights on first use, so it needs internet once.
- ``random-vgg``: an offline, deterministic LPIPS-*style* distance through a fixed random-init
  network (:class:`RandomPerceptualDistance`), the mini study's. Not on LPIPS's scale.
"""

from __future__ import annotations

from functools import cache, partial

import numpy as np
import torch
import torch.nn as nn

from .._registry import Registry
from ..exceptions import ConfigError

__all__ = ["LPIPS_HINT", "PERCEPTUAL_NETS", "RandomPerceptualDistance", "perceptual_net", "perceptual_distance"]


def _as_images(images, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, bool]:
    """(B, 3, H, W) floats in [0, 1] from uint8 (0-255) or float ([0, 1]) input; and whether it was one image."""
    x = torch.as_tensor(images).detach()
    single = x.dim() == 3
    x = x.unsqueeze(0) if single else x
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"Expected images of shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}. "
                         "Channels come first, as in ArrayDataset.images.")
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255, single
    x = x.to(dtype)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"Float images must lie in [0, 1]; got values in [{x.min():.3g}, {x.max():.3g}]. "
                         "Divide 0-255 data by 255 or pass uint8.")
    return x, single


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """LPIPS's channel normalisation: each spatial position's activation vector scaled to unit length."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class RandomPerceptualDistance(nn.Module):
    """LPIPS-*style* distance through a fixed, seeded, randomly initialised VGG-like net. Not LPIPS.

    Real LPIPS needs downloaded ImageNet weights. Deep features of untrained conv nets already carry
    perceptual structure (Zhang et al. 2018 evaluate randomly initialised nets next to trained ones),
    so this gives an offline, deterministic, weight-free stand-in: four blocks of two 3x3 convs +
    ReLU (32-256 channels, 2x max-pool between blocks, Kaiming-normal init from ``seed``); at each
    block output the unit-normalised activations of the two images are compared, squared
    differences summed over channels and averaged over space, and the blocks summed (LPIPS with
    all linear weights equal to 1). Inputs in [0, 1] are mapped to [-1, 1] as LPIPS does.
    """

    def __init__(self, *, seed: int = 0, channels: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        blocks, c_in = [], 3
        for i, c in enumerate(channels):
            pool = [nn.MaxPool2d(2)] if i else []
            blocks.append(nn.Sequential(*pool, nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(c, c, 3, padding=1), nn.ReLU()))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        rng = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=rng)
                nn.init.zeros_(m.bias)
        self.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b]) * 2 - 1
        distance = torch.zeros(len(a), device=a.device)
        for block in self.blocks:
            x = block(x)
            fa, fb = _unit(x).chunk(2)
            distance = distance + (fa - fb).pow(2).sum(dim=1).mean(dim=(1, 2))
        return distance


LPIPS_HINT = ("pip install -e '.[lpips]' (the optional lpips extra); it needs internet on first use, when torchvision "
              "downloads the ImageNet weights of its backbone (the LPIPS layers ship with the package). Offline, use "
              "perceptual_net='random-vgg'.")


_LPIPS_BACKBONES = {"alex": "AlexNet", "vgg": "VGG-16", "squeeze": "SqueezeNet 1.1"}


class _LPIPS(nn.Module):
    """The ``lpips`` package: its linear layers ship with it, but its AlexNet / VGG-16 / SqueezeNet-1.1
    backbone comes from torchvision's ImageNet weights, downloaded on first use (then cached)."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise ConfigError(f"perceptual_net 'lpips-{backbone}' needs the lpips package, which is not installed: "
                              f"{LPIPS_HINT}") from None
        try:
            self.net = lpips.LPIPS(net=backbone, verbose=False).eval().requires_grad_(False)
        except OSError as err:  # urllib's URLError (no network) is an OSError
            reason = " ".join(str(getattr(err, "reason", err)).split())
            weights = f"torchvision's {_LPIPS_BACKBONES[backbone]} weights"
            raise ConfigError(f"perceptual_net 'lpips-{backbone}' could not download {weights} "
                              f"({type(err).__name__}: {reason}): {LPIPS_HINT}") from None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a, b, normalize=True).flatten()


PERCEPTUAL_NETS: Registry = Registry("perceptual network", hint="Or pass a module mapping (a, b) to distances.")
PERCEPTUAL_NETS.add("random-vgg", RandomPerceptualDistance)
for _backbone in _LPIPS_BACKBONES:
    PERCEPTUAL_NETS.add(f"lpips-{_backbone}", partial(_LPIPS, _backbone))


@cache
def perceptual_net(name: str) -> nn.Module:
    """The network of :data:`PERCEPTUAL_NETS` ``name``, built once (call it early to fail before inverting)."""
    return PERCEPTUAL_NETS.get(name)()


def perceptual_distance(a, b, *, net: str | nn.Module = "random-vgg") -> np.ndarray:
    """Perceptual distance per image pair; 0 for identical images, symmetric.

    ``net`` names an entry of :data:`PERCEPTUAL_NETS` (``random-vgg``, the offline default, or
    ``lpips-alex``/``lpips-vgg``/``lpips-squeeze`` with the optional ``lpips`` extra), or is
    a module ``(a, b) -> (B,)`` taking [0, 1] images. Shape (B,) for batches, () for single images.
    """
    x, single = _as_images(a)
    y, _ = _as_images(b)
    x, y = x.cpu(), y.cpu()
    if x.shape != y.shape:
        raise ValueError(f"Images of shape {tuple(x.shape)} and {tuple(y.shape)} cannot be compared.")
    module = perceptual_net(net) if isinstance(net, str) else net
    with torch.no_grad():
        d = module(x, y).double().numpy()
    return d[0] if single else d
