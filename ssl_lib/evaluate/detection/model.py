"""The detector: torchvision Faster R-CNN + FPN built on the evaluated backbone, FrozenBN,
detectron2's FREEZE_AT, and the check that the backbone holds the evaluated weights."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ...exceptions import ConfigError
from ...models import FeatureModel
from .config import SETTINGS, STAGES, STEM, DetectionCfg

__all__ = ["frozen_batchnorm", "freeze_at", "build_detector", "check_backbone_weights"]

# ------------------------------------------------------------------------------------------------
# The detector


def frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` by torchvision's ``FrozenBatchNorm2d`` with the same statistics
    and affine values (detectron2's FrozenBN); returns ``module`` (changed in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict(child.state_dict())  # drops num_batches_tracked
            setattr(module, name, frozen.to(child.running_mean.device))
        else:
            frozen_batchnorm(child)
    return module


def freeze_at(body: nn.Module, at: int) -> None:
    """detectron2's ``FREEZE_AT``: 0 trains all; k >= 1 freezes the stem and the first k - 1 stages."""
    frozen = (STEM + STAGES[: at - 1]) if at >= 1 else ()
    for name, child in body.named_children():
        child.requires_grad_(name not in frozen)


def _stage_channels(body: nn.Module) -> list[int]:
    """Output channels of layer1..layer4, read from a tiny forward pass (any ResNet-like body)."""
    with torch.no_grad():
        param = next(body.parameters())
        out = body(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
    return [out[str(i)].shape[1] for i in range(len(STAGES))]


def _detectron2_box_init(head: TwoMLPHead, predictor: FastRCNNPredictor) -> None:
    """detectron2's box-head initialisation (torchvision keeps PyTorch's Linear default): FC layers
    ``c2_xavier_fill`` (kaiming-uniform, a=1), class scores N(0, 0.01), box deltas N(0, 0.001),
    zero biases. The RPN and FPN initialisations already agree."""
    for fc in (head.fc6, head.fc7):
        nn.init.kaiming_uniform_(fc.weight, a=1)
        nn.init.zeros_(fc.bias)
    for layer, std in ((predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def build_detector(model: FeatureModel, num_classes: int, cfg: DetectionCfg, setting: str) -> FasterRCNN:
    """Faster R-CNN + FPN on a copy of ``model``'s backbone (FrozenBN, frozen per ``setting``).

    ``num_classes`` counts object classes (background is added). The body is loaded strictly
    from ``model``'s state dict, so a checkpoint whose keys do not fit raises here.
    """
    at = SETTINGS.get(setting)
    source = model.backbone
    children = [name for name, _ in source.named_children()]
    missing = [n for n in STEM + STAGES if n not in children]
    if missing:
        raise ConfigError(f"Detection needs a ResNet-like backbone with {STEM + STAGES}; "
                          f"{model.cfg.name!r} lacks {missing}.")
    return_layers = {s: str(i) for i, s in enumerate(STAGES)}
    trunk = frozen_batchnorm(copy.deepcopy(source))
    channels = _stage_channels(IntermediateLayerGetter(trunk, return_layers))
    backbone = BackboneWithFPN(trunk, return_layers, channels, cfg.fpn_channels, extra_blocks=LastLevelMaxPool())
    try:
        backbone.body.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ConfigError(f"Checkpoint of {model.cfg.name!r} does not load strictly into the detector's backbone: "
                          f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    freeze_at(backbone.body, at)
    names = [str(i) for i in range(len(STAGES))]
    roi_pool = MultiScaleRoIAlign(names, cfg.roi_output_size, cfg.roi_sampling_ratio,
                                  canonical_scale=cfg.roi_canonical_scale, canonical_level=cfg.roi_canonical_level)
    head = TwoMLPHead(cfg.fpn_channels * cfg.roi_output_size**2, cfg.representation)
    predictor = FastRCNNPredictor(cfg.representation, num_classes + 1)
    _detectron2_box_init(head, predictor)
    detector = FasterRCNN(
        backbone, num_classes=None, min_size=cfg.min_size_train, max_size=cfg.max_size,
        image_mean=list(model.cfg.mean), image_std=list(model.cfg.std),
        rpn_anchor_generator=AnchorGenerator(cfg.anchor_sizes, (cfg.aspect_ratios,) * len(cfg.anchor_sizes)),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_test,
        rpn_nms_thresh=cfg.rpn_nms, rpn_fg_iou_thresh=cfg.rpn_fg_iou, rpn_bg_iou_thresh=cfg.rpn_bg_iou,
        rpn_batch_size_per_image=cfg.rpn_batch_per_image,
        rpn_positive_fraction=cfg.rpn_positive_fraction, box_roi_pool=roi_pool, box_head=head,
        box_predictor=predictor,
        box_score_thresh=cfg.score_thresh, box_nms_thresh=cfg.nms_thresh,
        box_detections_per_img=cfg.detections_per_img, box_batch_size_per_image=cfg.roi_batch_per_image,
        box_positive_fraction=cfg.roi_positive_fraction,
    )
    return detector


def check_backbone_weights(detector: FasterRCNN, model: FeatureModel) -> dict:
    """Every tensor of ``model``'s backbone must equal the detector body's tensor of the same name.

    Guards against a detector silently running on random or partly loaded weights (a failure the
    paper's own dense-prediction code is suspected of). Raises :class:`ConfigError` otherwise;
    returns what was compared, for the result row.
    """
    body = detector.backbone.body.state_dict()
    source = {k: v for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in source if k not in body]
    different = [k for k in source if k in body and (body[k].shape != source[k].shape
                                                    or not torch.equal(body[k].cpu(), source[k].cpu()))]
    if missing or different:
        raise ConfigError(
            f"The detector's backbone does not carry the weights of {model.cfg.name!r}: {len(missing)} tensors "
            f"missing (e.g. {missing[:2]}), {len(different)} differ (e.g. {different[:2]}). "
            "Check the checkpoint's keys."
        )
    return {"ok": True, "tensors_compared": len(source), "weights_sha256": model.weights_hash}


