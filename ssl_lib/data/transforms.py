"""The evaluation transform: the paper's resize (shorter side) → centre crop → [0, 1] floats.

Normalisation is not here: :class:`ssl_lib.models.FeatureModel` applies the model's own.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

__all__ = ["eval_transform", "transform_cfg"]


def transform_cfg(model_cfg) -> dict:
    """The parameters that define the transform (they enter the feature-cache key)."""
    return {
        "resize": model_cfg.resize_size or model_cfg.input_size,
        "crop": model_cfg.input_size,
        "interpolation": model_cfg.interpolation,
    }


def eval_transform(model_cfg) -> v2.Compose:
    cfg = transform_cfg(model_cfg)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            v2.Resize(cfg["resize"], interpolation=InterpolationMode(cfg["interpolation"]), antialias=True),
            v2.CenterCrop(cfg["crop"]),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
