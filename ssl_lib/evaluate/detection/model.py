"""The detector: torchvision Faster R-CNN + FPN on the evaluated backbone's four levels (the
multi-scale adapter of :mod:`ssl_lib.models.multiscale`), FrozenBN, detectron2's FREEZE_AT, and the
check that the backbone holds the evaluated weights."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ...exceptions import ConfigError
from ...models import FeatureModel, MultiScale, multiscale
from ...models.multiscale import frozen_batchnorm
from .config import SETTINGS, DetectionCfg

__all__ = ["frozen_batchnorm", "freeze_at", "PyramidBackbone", "build_detector", "check_backbone_weights"]

# ------------------------------------------------------------------------------------------------
# The detector


def freeze_at(body: MultiScale, at: int) -> None:
    """detectron2's ``FREEZE_AT``: 0 trains all; k >= 1 freezes the stem and the first k - 1 stages
    (ResNets: conv1/bn1 and layer1..; ConvNeXt: stem and stages.0..; a ViT: patch and position
    embeddings and the first quarters of its blocks)."""
    body.freeze_at(at)


class PyramidBackbone(nn.Module):
    """``body`` (the adapter: images → maps) → ``neck`` (a ViT's simple pyramid; else identity) →
    FPN with a max-pooled fifth level: torchvision's ``BackboneWithFPN`` for any family."""

    def __init__(self, body: MultiScale, neck: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body, self.neck = body, neck
        self.fpn = FeaturePyramidNetwork(neck.channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.neck(self.body(x))
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))

    def info(self) -> dict:
        """The levels the FPN reads, for the rows."""
        return self.body.info(self.neck)


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
    body = multiscale(model, section="detection")
    body.freeze_batchnorm()
    backbone = PyramidBackbone(body, body.neck(), cfg.fpn_channels)
    try:
        body.backbone.load_state_dict(model.backbone.state_dict(), strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ConfigError(f"Checkpoint of {model.cfg.name!r} does not load strictly into the detector's backbone: "
                          f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    freeze_at(body, at)
    names = [str(i) for i in range(len(backbone.neck.channels))]
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
    body = detector.backbone.body.backbone.state_dict()
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


