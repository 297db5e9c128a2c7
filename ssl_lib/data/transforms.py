"""The evaluation transform: the paper's resize (shorter side) → centre crop → [0, 1] floats.

Normalisation is not here: :class:`ssl_lib.models.FeatureModel` applies the model's own.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from .._registry import Registry

__all__ = ["RESIZES", "PerImage", "eval_transform", "transform_cfg"]

RESIZES: Registry = Registry("resize", hint="'shorter' is the paper's text, 'square' the few-shot code.")


@RESIZES.register("shorter")
def _shorter_side(model_cfg) -> dict:
    """The paper: shorter side to the resize size with the model's interpolation, centre crop."""
    return {
        "resize": model_cfg.resize_size or model_cfg.input_size,
        "crop": model_cfg.input_size,
        "interpolation": model_cfg.interpolation,
    }


@RESIZES.register("square")
def _square(model_cfg) -> dict:
    """The official few-shot code: ``Scale([int(224 * 1.15)] * 2)`` (a square resize that ignores
    the aspect ratio, default bilinear), then centre crop."""
    side = int(model_cfg.input_size * 1.15)
    return {"resize": [side, side], "crop": model_cfg.input_size, "interpolation": "bilinear"}


def transform_cfg(model_cfg, resize: str = "shorter") -> dict:
    """The parameters that define the transform (they enter the feature-cache key)."""
    return RESIZES.get(resize)(model_cfg)


def eval_transform(model_cfg, resize: str = "shorter") -> v2.Compose:
    cfg = transform_cfg(model_cfg, resize)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            v2.Resize(cfg["resize"], interpolation=InterpolationMode(cfg["interpolation"]), antialias=True),
            v2.CenterCrop(cfg["crop"]),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class PerImage:
    """Marks a random transform: datasets that transform whole batches call it image by image,
    so every image gets its own crop and flip."""

    per_image = True

    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, image):
        return self.transform(image)

    def __repr__(self) -> str:
        return f"PerImage({self.transform!r})"
