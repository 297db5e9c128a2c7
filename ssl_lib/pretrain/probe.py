"""Source accuracy: a linear probe on frozen pooled features of the labelled source domain.

This is the mini study's analogue of the paper's ImageNet top-1 (the x-axis of its correlation
analysis), measured with the paper's linear protocol: C chosen on val, refit on train+val,
top-1 on test.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .augment import to_float
from .recipes import ARCH, MEAN, STD

__all__ = ["extract_features", "linear_probe"]


def extract_features(
    backbone: nn.Module, images_u8: np.ndarray | torch.Tensor, mean=MEAN, std=STD, batch_size: int = 512,
    device: str | torch.device | None = "cpu",
) -> np.ndarray:
    """Pooled features of uint8 ``(N, H, W, 3)`` images, normalised as the backbone expects, through
    the library's one forward path (:func:`ssl_lib.features.forward_batches`, full precision)."""
    from ..features import forward_batches
    from ..models import FeatureModel, ModelCfg

    cfg = ModelCfg(name="source-probe", zoo="mini", arch=ARCH, weights="", mean=tuple(mean), std=tuple(std),
                   input_size=32, resize_size=32, interpolation="bilinear")
    model = FeatureModel(backbone, cfg, weights_hash="")
    images = torch.as_tensor(images_u8)
    batches = (to_float(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size))
    return forward_batches(model, batches, device=device, precision="fp32").numpy().astype(np.float64)


def linear_probe(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
) -> dict:
    """The linear section's protocol (:func:`ssl_lib.evaluate.linear.evaluate_linear`) on source features.

    One protocol for one quantity: the manifest's ``source_top1`` is the number the mini study's
    linear page reports for ``mini-source``.
    """
    from ..evaluate.linear import LinearSplits, evaluate_linear

    splits = LinearSplits(*train, *val, *test, val_source="official")
    num_classes = int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    result = evaluate_linear(splits, metric="top1", multilabel=False, num_classes=num_classes, n_boot=0)
    return {"top1": result.test_score, "val_top1": float(result.val_scores.max()), "C": result.best_C}
