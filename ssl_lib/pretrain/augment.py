"""Batched SimCLR/MoCo-v2 augmentations with per-sample random parameters.

``torchvision.transforms.v2`` applied to a batch tensor draws one set of parameters for the whole
batch, which would make both views of every image in a step share the same crop and colour
change. Here every sample gets its own draw, all from an explicit ``torch.Generator``, and the
work is vectorised: crops through ``roi_align`` and colour jitter as per-sample tensor math.

Images are float ``(B, 3, H, W)`` in [0, 1]; outputs keep shape, dtype and range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .._registry import Registry

__all__ = [
    "AugmentSpec",
    "AUGMENTATIONS",
    "augment",
    "random_resized_crop",
    "random_flip",
    "color_jitter",
    "random_grayscale",
    "random_blur",
    "to_float",
    "rgb_to_hsv",
    "hsv_to_rgb",
]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class AugmentSpec:
    """One view's recipe. ``None``/0 switches a step off; order: crop, flip, jitter, grey, blur."""

    crop_scale: tuple[float, float] | None = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] | None = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    blur_radius: int = 1  # kernel of 2 * radius + 1 taps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


AUGMENTATIONS: Registry[AugmentSpec] = Registry("augmentation")
# The SimCLR / MoCo-v2 family as their papers set it (blur off: at 32 px the paper-scale kernel is
# a no-op or a smear).
AUGMENTATIONS.add("simclr", AugmentSpec())
# The same family tuned for the mini source domain, on pretraining loss and mini-source validation
# accuracy only (never on a downstream task): colour is the domain's dominant nuisance (every
# object and background has a random hue), so hue is jittered over the whole circle, every view
# is jittered and half are greyscale; a small blur removes the objects' fine textures.
# SimCLR at 24 px, 30 epochs: mini-source val top-1 32 (the papers' setting) -> 43 (hue 0.5, blur)
# -> 53 (every view jittered, greyscale 0.5).
AUGMENTATIONS.add("simclr-mini", AugmentSpec(jitter=(0.4, 0.4, 0.4, 0.5), jitter_p=1.0, grayscale_p=0.5, blur_p=0.5,
                                             blur_sigma=(0.1, 1.5), blur_radius=3))
# Standard supervised training: crop and flip only.
AUGMENTATIONS.add("supervised", AugmentSpec(jitter=None, jitter_p=0.0, grayscale_p=0.0))
# The invariance follow-up's ablations of the family above: spatial ("ventral") vs. appearance
# ("dorsal", its code's jitter, greyscale and blur) only.
AUGMENTATIONS.add("crop-only", AugmentSpec(jitter=None, jitter_p=0.0, grayscale_p=0.0))
AUGMENTATIONS.add("colour-only", AugmentSpec(crop_scale=None, flip_p=0.0, jitter=(0.4, 0.4, 0.4, 0.5), jitter_p=1.0,
                                             grayscale_p=0.5, blur_p=0.5, blur_sigma=(0.1, 1.5), blur_radius=3))


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` or ``(B, 3, H, W)`` → float ``(B, 3, H, W)`` in [0, 1]."""
    if images_uint8.shape[-1] == 3 and images_uint8.shape[1] != 3:
        images_uint8 = images_uint8.permute(0, 3, 1, 2)
    return images_uint8.float().div_(255.0).contiguous()


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    g: torch.Generator, tries: int = 10,
) -> torch.Tensor:
    """``(n, 4)`` boxes ``x1, y1, x2, y2`` in pixels, torchvision's RandomResizedCrop sampling.

    Up to ``tries`` candidates per sample; the first that fits wins, else the whole image
    (torchvision's fallback for a square image). Boxes are continuous (no integer rounding).
    """
    area = height * width * _uniform(n * tries, *scale, g).view(n, tries)
    log_r = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), g).view(n, tries)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect)
    h = torch.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    ok = first >= 0
    idx = first.clamp(min=0).unsqueeze(1)
    w = torch.where(ok, w.gather(1, idx).squeeze(1), torch.full((n,), float(width)))
    h = torch.where(ok, h.gather(1, idx).squeeze(1), torch.full((n,), float(height)))
    x1 = torch.rand(n, generator=g) * (width - w)
    y1 = torch.rand(n, generator=g) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def resize_crops(images: torch.Tensor, boxes: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Bilinear-resample each sample's box to ``size`` x ``size`` (default: the image's own size),
    in one ``roi_align`` call.

    One sample per output pixel at full size (the box (0, 0, W, H) then reproduces the image
    exactly); when the output is smaller, ``ceil(W / size)`` per axis, an area average that keeps
    a downscaled view from aliasing.
    """
    b, _, height, width = images.shape
    rois = torch.cat([torch.arange(b, dtype=boxes.dtype).unsqueeze(1), boxes], dim=1)
    out_size = (height, width) if size is None else (size, size)
    ratio = 1 if size is None or size >= max(height, width) else math.ceil(max(height, width) / size)
    out = roi_align(images, rois, out_size, spatial_scale=1.0, sampling_ratio=ratio, aligned=True)
    return out.clamp_(0.0, 1.0)


def random_resized_crop(
    images: torch.Tensor, spec: AugmentSpec, g: torch.Generator, size: int | None = None
) -> torch.Tensor:
    b, _, height, width = images.shape
    return resize_crops(images, crop_boxes(b, height, width, spec.crop_scale, spec.crop_ratio, g), size)


def random_flip(images: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(images.shape[0], generator=g) < p).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` luminance."""
    w = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] → HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g_, b = rgb.unbind(1)
    maxc, _ = rgb.max(1)
    minc, _ = rgb.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g_) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g_, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv` (the standard piecewise formula, via ``(n + 6h) mod 6``)."""
    h, s, v = hsv.unbind(1)
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = (n + 6.0 * h) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, 1)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * mean).clamp_(0.0, 1.0)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0.0, 1.0)


def _hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(hsv).clamp_(0.0, 1.0)


_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)


def color_jitter(
    images: torch.Tensor, strength: tuple[float, float, float, float], p: float, g: torch.Generator
) -> torch.Tensor:
    """torchvision's ColorJitter per sample: factors and the order of the four ops drawn per image.

    Brightness/contrast/saturation factors are uniform in ``[1 - s, 1 + s]``, hue in ``[-h, h]``;
    applied to a sample with probability ``p``.
    """
    b = images.shape[0]
    bri, con, sat, hue = strength
    factors = torch.stack(
        [_uniform(b, 1 - bri, 1 + bri, g), _uniform(b, 1 - con, 1 + con, g),
         _uniform(b, 1 - sat, 1 + sat, g), _uniform(b, -hue, hue, g)], dim=1
    )
    order = torch.argsort(torch.rand(b, 4, generator=g), dim=1)
    apply = torch.rand(b, generator=g) < p
    out = images.clone()
    for position in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            sel = torch.nonzero(apply & (order[:, position] == op_index)).squeeze(1)
            if sel.numel():
                out[sel] = op(out[sel], factors[sel, op_index])
    return out


def random_grayscale(images: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    gray = (torch.rand(images.shape[0], generator=g) < p).view(-1, 1, 1, 1)
    return torch.where(gray, grayscale(images).expand_as(images), images)


def random_blur(
    images: torch.Tensor, p: float, sigma: tuple[float, float], g: torch.Generator, radius: int = 1
) -> torch.Tensor:
    """Per-sample Gaussian blur (separable, reflect padding) with ``sigma`` drawn per image."""
    b, c, height, width = images.shape
    sig = _uniform(b, *sigma, g)
    blur = torch.rand(b, generator=g) < p
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sig.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    x = images.reshape(1, b * c, height, width)
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(b * c, 1, 1, -1), groups=b * c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(b * c, 1, -1, 1), groups=b * c).view_as(images)
    return torch.where(blur.view(-1, 1, 1, 1), x, images)


def augment(images: torch.Tensor, spec: AugmentSpec, g: torch.Generator, size: int | None = None) -> torch.Tensor:
    """One random view of every image in the batch at ``size`` px (default: the images' size);
    all randomness comes from ``g``."""
    x = images
    if spec.crop_scale is not None:
        x = random_resized_crop(x, spec, g, size)
    elif size is not None and size != x.shape[-1]:
        whole = torch.tensor([[0.0, 0.0, float(x.shape[-1]), float(x.shape[-2])]]).expand(x.shape[0], 4)
        x = resize_crops(x, whole, size)
    if spec.flip_p > 0:
        x = random_flip(x, spec.flip_p, g)
    if spec.jitter is not None and spec.jitter_p > 0:
        x = color_jitter(x, spec.jitter, spec.jitter_p, g)
    if spec.grayscale_p > 0:
        x = random_grayscale(x, spec.grayscale_p, g)
    if spec.blur_p > 0:
        x = random_blur(x, spec.blur_p, spec.blur_sigma, g, radius=spec.blur_radius)
    return x
