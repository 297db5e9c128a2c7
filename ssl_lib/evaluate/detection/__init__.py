"""Object detection: Faster R-CNN + FPN on a pretrained backbone, frozen or fine-tuned (paper §3.4).

The paper trains detectron2's ``Base-RCNN-FPN`` on VOC07+12 and tests on VOC07 with two backbone
settings: ``frozen`` (``FREEZE_AT: 4``: stem and res2-res4 frozen, res5 trains with the FPN, RPN
and box head) and ``finetune`` (``FREEZE_AT: 0``). Both keep detectron2's default FrozenBN: every
backbone batch-norm is a fixed affine map carrying the checkpoint's statistics. Here the same model
is torchvision's :class:`~torchvision.models.detection.FasterRCNN` over an FPN (plus the
``LastLevelMaxPool`` level) on four levels of the evaluated model's own backbone, read by the
multi-scale adapter (:mod:`ssl_lib.models.multiscale`): a ResNet's layer1-layer4, a hierarchical
timm model's last four stages (ConvNeXt: ``stages.0-3``), or for a plain ViT a ViTDet simple
feature pyramid (trained with the FPN) from its last block at strides 4-32. ``FREEZE_AT`` counts
the adapter's stem and four stages (a ViT's blocks in four quarters). After building, the
backbone body is compared tensor by tensor with the checkpoint (:func:`check_backbone_weights`).

Scoring follows detectron2's ``PascalVOCDetectionEvaluator`` (its ``voc_eval``): per class,
detections sorted by score are matched to the ground-truth box of highest IoU in the same image;
IoU must be strictly greater than the threshold (``ovmax > ovthresh``); a match to a "difficult"
box counts neither way; a second match to an already-detected box is a false positive (ties in
score keep their order, a stable sort; detectron2 also rounds scores to 3 decimals). AP is the
VOC07 11-point AP (``use_07_metric``, as for ``voc_2007_test``) or the area under the
interpolated PR curve; ``AP`` is the mean over IoU 0.50:0.05:0.95 of the mean over classes,
``AP50`` and ``AP75`` the single-threshold means; all in %.

Known differences from detectron2 (torchvision's implementation): ROIAlign without the half-pixel
``aligned=True`` of ``ROIAlignV2``; smooth-L1 box losses with beta 1/9 (detectron2's defaults are
beta 0, i.e. L1). The box head is initialised as detectron2 does (torchvision leaves PyTorch's
default there; see :func:`_detectron2_box_init`).
"""


from __future__ import annotations

from ...metrics.detection import (IOU_THRESHOLDS, MatchTable, bootstrap_detection_ci, detection_metrics,
                                  match_detections, pairwise_iou, score_table, voc_ap)
from .config import DETECTION_PRESETS, SETTINGS, DetectionCfg
from .model import PyramidBackbone, build_detector, check_backbone_weights, freeze_at, frozen_batchnorm
from .run import CACHE_VERSION, DetectionResult, run_detection
from .train import lr_schedule, predict_detections, train_detector

__all__ = [
    "DetectionCfg", "DETECTION_PRESETS", "SETTINGS", "IOU_THRESHOLDS", "DetectionResult", "MatchTable",
    "build_detector", "PyramidBackbone", "frozen_batchnorm", "freeze_at", "check_backbone_weights", "lr_schedule", "train_detector",
    "predict_detections", "pairwise_iou", "match_detections", "voc_ap", "score_table", "detection_metrics",
    "bootstrap_detection_ci", "run_detection", "CACHE_VERSION",
]
