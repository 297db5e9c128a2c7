"""Object detection: Faster R-CNN + FPN on a pretrained backbone, frozen or fine-tuned (paper §3.4).

The paper trains detectron2's ``Base-RCNN-FPN`` on VOC07+12 and tests on VOC07 with two backbone
settings: ``frozen`` (``FREEZE_AT: 4``: stem and res2-res4 frozen, res5 trains with the FPN, RPN
and box head) and ``finetune`` (``FREEZE_AT: 0``). Both keep detectron2's default FrozenBN: every
backbone batch-norm is a fixed affine map carrying the checkpoint's statistics. Here the same model
is torchvision's :class:`~torchvision.models.detection.FasterRCNN` over a
:class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN` (layer1-layer4 plus the
``LastLevelMaxPool`` level) built on the evaluated model's own backbone; after building, the
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

import copy
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy import stats
from torch.utils.data import DataLoader, Dataset
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision import tv_tensors
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from .._registry import Registry
from ..data.detection import collate
from ..exceptions import ConfigError
from ..models import FeatureModel
from ..paths import atomic_path

__all__ = [
    "DetectionCfg", "DETECTION_PRESETS", "SETTINGS", "IOU_THRESHOLDS", "DetectionResult", "MatchTable",
    "build_detector", "frozen_batchnorm", "freeze_at", "check_backbone_weights", "lr_schedule", "train_detector",
    "predict_detections", "pairwise_iou", "match_detections", "voc_ap", "score_table", "detection_metrics",
    "bootstrap_detection_ci", "run_detection",
]

STAGES = ("layer1", "layer2", "layer3", "layer4")  # detectron2's res2..res5
STEM = ("conv1", "bn1")
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # detectron2: range(50, 100, 5) / 100
CACHE_VERSION = 1

# Setting name → detectron2 MODEL.BACKBONE.FREEZE_AT (the paper's detectron2-configs/{frozen,finetune}).
SETTINGS: Registry[int] = Registry("detection setting")
SETTINGS.add("frozen", 4)  # stem + res2..res4 frozen; res5, FPN, RPN, ROI heads train
SETTINGS.add("finetune", 0)  # everything trains


@dataclass(frozen=True)
class DetectionCfg:
    """Detector and schedule. The ``paper`` preset is detectron2's ``Base-RCNN-FPN`` with the
    paper's solver (§3.4); ``mini`` shrinks it for 64 px scenes on a CPU."""

    min_size_train: tuple[int, ...] = tuple(range(480, 801, 32))  # one drawn per batch
    min_size_test: int = 800  # torchvision tests at the last training size: must equal it
    max_size: int = 1333
    hflip: bool = True  # detectron2's default RandomFlip in training
    fpn_channels: int = 256
    anchor_sizes: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))  # per FPN level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_train: int = 2000  # per level
    rpn_post_nms_train: int = 1000  # per image
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rpn_nms: float = 0.7
    rpn_fg_iou: float = 0.7  # anchors above are objects, below rpn_bg_iou background
    rpn_bg_iou: float = 0.3
    rpn_batch_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    roi_batch_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_output_size: int = 7
    roi_sampling_ratio: int = 0  # detectron2 POOLER_SAMPLING_RATIO 0 (adaptive)
    roi_canonical_scale: int = 224  # a box this size pools from level roi_canonical_level
    roi_canonical_level: int = 4
    representation: int = 1024  # two FC layers (detectron2 NUM_FC 2, FC_DIM 1024)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    lr: float = 0.0025
    batch_size: int = 2
    iterations: int = 144_000
    steps: tuple[int, ...] = (96_000, 128_000)
    gamma: float = 0.1
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1:
            raise ConfigError(f"Detection iterations and batch_size must be positive, got {self.iterations} "
                              f"and {self.batch_size}.")
        if self.min_size_test != self.min_size_train[-1]:
            raise ConfigError(f"min_size_test ({self.min_size_test}) must be the last of min_size_train "
                              f"{self.min_size_train}: torchvision's transform tests at that size.")
        if len(self.anchor_sizes) != len(STAGES) + 1:
            raise ConfigError(f"anchor_sizes needs one tuple per FPN level (5), got {len(self.anchor_sizes)}.")

    def with_schedule(self, iterations: int | None = None, batch_size: int | None = None) -> "DetectionCfg":
        """Another length or batch; the lr steps keep their fractions of the schedule (96k/128k of 144k)."""
        new_iters = int(iterations or self.iterations)
        scale = new_iters / self.iterations
        return replace(self, iterations=new_iters, batch_size=int(batch_size or self.batch_size),
                       steps=tuple(max(1, round(s * scale)) for s in self.steps),
                       warmup_iters=min(self.warmup_iters, new_iters))


DETECTION_PRESETS: Registry[DetectionCfg] = Registry("detection preset")
DETECTION_PRESETS.add("paper", DetectionCfg())
DETECTION_PRESETS.add("mini", DetectionCfg(
    # 64 px scenes, objects 10-33 px: no resizing; square anchors (the shapes' aspect is 0.85-1.18),
    # two scales per level from 8 px at stride 2; RPN positives from IoU 0.5 (at 0.7 a 20 px object
    # has one positive anchor at best); boxes of 16-32 px pool from the stride-4 level. Sized to
    # train both settings and score 200 test images in about 20 s on one CPU thread.
    min_size_train=(64,), min_size_test=64, max_size=64, fpn_channels=32,
    anchor_sizes=((8, 11), (16, 22), (32, 45), (64, 90), (128, 181)), aspect_ratios=(1.0,),
    rpn_pre_nms_train=200, rpn_post_nms_train=50, rpn_pre_nms_test=100, rpn_post_nms_test=50,
    rpn_fg_iou=0.5, rpn_batch_per_image=64, roi_batch_per_image=32, roi_output_size=7, roi_sampling_ratio=1,
    roi_canonical_scale=32, roi_canonical_level=3, representation=256, detections_per_img=20,
    lr=0.02, batch_size=8, iterations=90, steps=(60, 80), warmup_iters=20,
))


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


# ------------------------------------------------------------------------------------------------
# Training and prediction


def _flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    return TF.horizontal_flip(image), {**target, "boxes": TF.horizontal_flip(boxes).as_subclass(torch.Tensor)}


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: DetectionCfg):
    """detectron2's WarmupMultiStepLR: linear warmup from ``warmup_factor``, then ×gamma at each step."""
    steps = [s - cfg.warmup_iters for s in cfg.steps if s > cfg.warmup_iters]
    decay = torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=cfg.gamma)
    if cfg.warmup_iters <= 0:
        return decay
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, cfg.warmup_factor, 1.0, total_iters=cfg.warmup_iters)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[cfg.warmup_iters])


def train_detector(
    detector: FasterRCNN, dataset: Dataset, cfg: DetectionCfg, *, seed: int = 0, device=None,
    num_workers: int = 0, progress: bool = True, desc: str = "",
) -> list[float]:
    """SGD over ``cfg``'s schedule (in place); returns the total loss of every iteration.

    Shuffling and flips draw from generators seeded with ``seed``; the RPN/ROI sampling and the
    multi-scale size choice from the global RNG, seeded here inside a fork (the caller's stream is
    untouched): the same seed gives the same weights on CPU.
    """
    device = torch.device(device) if device is not None else next(detector.parameters()).device
    detector.to(device).train()
    params = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = lr_schedule(optimizer, cfg)
    shuffle = torch.Generator().manual_seed(seed)
    flips = torch.Generator().manual_seed(seed + 1)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) >= cfg.batch_size,
                        generator=shuffle, collate_fn=collate, num_workers=num_workers)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        batches = iter(loader)
        bar = tqdm(range(cfg.iterations), desc=desc or "detection", file=sys.stderr, mininterval=10,
                   disable=not progress, leave=False)
        for _ in bar:
            try:
                images, targets = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, targets = next(batches)
            if cfg.hflip:
                coins = torch.rand(len(images), generator=flips) < 0.5
                pairs = [_flip(i, t) if c else (i, t) for i, t, c in zip(images, targets, coins)]
                images, targets = [p[0] for p in pairs], [p[1] for p in pairs]
            images = [i.to(device, non_blocking=True) for i in images]
            targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
            loss_dict = detector(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"Detection training diverged at iteration {len(losses)} (loss {loss.item()}); lower the lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    return losses


@torch.inference_mode()
def predict_detections(detector: FasterRCNN, dataset: Dataset, *, batch_size: int = 50, device=None,
                       num_workers: int = 0) -> tuple[list[dict], list[dict]]:
    """``(predictions, targets)`` per image, in order. Predictions hold ``boxes`` (n, 4), ``scores``
    and ``labels`` as numpy in original image coordinates (torchvision's transform resizes back)."""
    device = torch.device(device) if device is not None else next(detector.parameters()).device
    detector.to(device).eval()
    predictions, targets = [], []
    for images, batch_targets in DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                            num_workers=num_workers):
        for det in detector([i.to(device) for i in images]):
            predictions.append({k: det[k].cpu().numpy() for k in ("boxes", "scores", "labels")})
        targets.extend({k: v.numpy() for k, v in t.items()} for t in batch_targets)
    return predictions, targets


# ------------------------------------------------------------------------------------------------
# The metric (detectron2's PascalVOCDetectionEvaluator / voc_eval)


def pairwise_iou(a, b, plus_one: bool = False) -> np.ndarray:
    """IoU matrix (float64, ``torchvision.ops.box_iou``).

    Without ``plus_one`` (the default) boxes are pixel-edge coordinates with exclusive x2/y2 (width
    = x2 - x1): the mini boxes, and VOC boxes as :mod:`ssl_lib.data.detection` loads them
    (detectron2's ``xmin - 1``, ``ymin - 1``). ``plus_one`` is the VOC devkit convention for boxes
    in inclusive pixel indices (width = x2 - x1 + 1), i.e. raw XML boxes. detectron2's evaluator
    shifts predictions back by +1 and applies ``plus_one`` to the raw XML; on the loader's shifted
    boxes, plain IoU gives the same numbers.
    """
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if plus_one:  # [x1, y1, x2 + 1, y2 + 1] in edge coordinates has the +1 widths and intersections
        ta, tb = ta + torch.tensor([0, 0, 1, 1.0]), tb + torch.tensor([0, 0, 1, 1.0], dtype=torch.float64)
    return box_iou(ta, tb).numpy()


@dataclass
class MatchTable:
    """Every detection's fate at every IoU threshold, so any subset of images re-scores cheaply.

    Matching in ``voc_eval`` never looks across images, so a detection's TP/FP/ignored status
    depends only on its own image: a bootstrap resample of images re-uses it unchanged.
    """

    thresholds: tuple[float, ...]
    num_classes: int
    label: np.ndarray  # (D,) class 1..K of each detection
    score: np.ndarray  # (D,)
    image: np.ndarray  # (D,) image index
    tp: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool: matched a difficult box (neither TP nor FP)
    npos: np.ndarray  # (N, K) non-difficult ground-truth boxes per image and class


def match_detections(
    predictions: list[dict], targets: list[dict], num_classes: int, *,
    thresholds: tuple[float, ...] = IOU_THRESHOLDS, plus_one: bool = False,
) -> MatchTable:
    """``voc_eval``'s greedy matching, per image and class, at every threshold.

    Detections go in descending score (stable for ties); each takes the ground-truth box of highest
    IoU in its image (difficult ones included). If that IoU > threshold: a difficult box makes it
    ignored, an undetected box makes it a TP (and marks the box), a detected one makes it a FP.
    Otherwise it is a FP.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    n_t = len(thresholds)
    labels, scores, images, tps, ign = [], [], [], [], []
    npos = np.zeros((len(targets), num_classes), np.int64)
    for i, (pred, gt) in enumerate(zip(predictions, targets)):
        g_boxes, g_labels = np.asarray(gt["boxes"], np.float64).reshape(-1, 4), np.asarray(gt["labels"])
        g_diff = np.asarray(gt.get("difficult", np.zeros(len(g_labels), bool)), bool)
        np.add.at(npos[i], g_labels[~g_diff] - 1, 1)
        p_boxes, p_scores = np.asarray(pred["boxes"], np.float64).reshape(-1, 4), np.asarray(pred["scores"])
        p_labels = np.asarray(pred["labels"])
        for c in np.unique(p_labels):
            sel = np.flatnonzero(p_labels == c)
            sel = sel[np.argsort(-p_scores[sel], kind="stable")]
            tp, ignored = np.zeros((n_t, len(sel)), bool), np.zeros((n_t, len(sel)), bool)
            gsel = np.flatnonzero(g_labels == c)
            if len(gsel):
                iou = pairwise_iou(p_boxes[sel], g_boxes[gsel], plus_one)
                best, jbest = iou.max(axis=1), iou.argmax(axis=1)
                for t, thr in enumerate(thresholds):
                    taken = np.zeros(len(gsel), bool)
                    for d in np.flatnonzero(best > thr):
                        j = jbest[d]
                        if g_diff[gsel[j]]:
                            ignored[t, d] = True
                        elif not taken[j]:
                            tp[t, d] = taken[j] = True
            labels.append(np.full(len(sel), c))
            scores.append(p_scores[sel])
            images.append(np.full(len(sel), i))
            tps.append(tp)
            ign.append(ignored)
    cat = lambda xs, dtype: np.concatenate(xs) if xs else np.zeros(0, dtype)  # noqa: E731
    return MatchTable(
        thresholds=tuple(thresholds), num_classes=num_classes, label=cat(labels, np.int64),
        score=cat(scores, np.float64), image=cat(images, np.int64),
        tp=np.concatenate(tps, axis=1) if tps else np.zeros((n_t, 0), bool),
        ignored=np.concatenate(ign, axis=1) if ign else np.zeros((n_t, 0), bool), npos=npos,
    )


def voc_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, npos, use_07_metric: bool = True) -> np.ndarray:
    """AP from cumulative TP/FP counts along descending score, batched over leading axes.

    ``tp_cum``/``fp_cum``: (..., D); ``npos``: (...). As ``voc_ap``: recall = tp / npos, precision
    = tp / max(tp + fp, eps); 11-point: mean over t in {0, 0.1, ..., 1} of the best precision at
    recall >= t (0 where none); otherwise the area under the monotone precision envelope. A class
    without positives scores 0, as in ``voc_eval`` (its recall is undefined).
    """
    tp_cum, fp_cum = np.asarray(tp_cum, np.float64), np.asarray(fp_cum, np.float64)
    npos = np.asarray(npos, np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(npos > 0, tp_cum / npos, np.nan)
    prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    if use_07_metric:
        points = [np.where(rec >= t, prec, 0.0).max(axis=-1, initial=0.0) for t in np.arange(0.0, 1.1, 0.1)]
        return np.mean(points, axis=0)
    envelope = np.flip(np.maximum.accumulate(np.flip(prec, -1), axis=-1), -1)
    rec0 = np.nan_to_num(rec, nan=0.0)
    step = np.diff(rec0, axis=-1, prepend=0.0)
    return (step * envelope).sum(axis=-1)


def _class_ap(table: MatchTable, weights: np.ndarray, use_07_metric: bool) -> np.ndarray:
    """(B, T, K) AP for B weightings of the images (``weights``: (B, N) copies of each image)."""
    b, n_t = weights.shape[0], len(table.thresholds)
    out = np.zeros((b, n_t, table.num_classes))
    npos = weights @ table.npos  # (B, K)
    for k in range(table.num_classes):
        sel = np.flatnonzero(table.label == k + 1)
        sel = sel[np.argsort(-table.score[sel], kind="stable")]
        w = weights[:, table.image[sel]]  # (B, D_k)
        tp = table.tp[:, sel][None] * w[:, None]  # (B, T, D_k)
        fp = (~table.tp[:, sel] & ~table.ignored[:, sel])[None] * w[:, None]
        out[:, :, k] = voc_ap(np.cumsum(tp, -1), np.cumsum(fp, -1), npos[:, None, k].repeat(n_t, 1), use_07_metric)
    return out


def _summaries(class_ap: np.ndarray, thresholds: tuple[float, ...]) -> dict[str, np.ndarray]:
    per_thr = class_ap.mean(axis=-1) * 100.0  # (B, T)
    out = {"AP": per_thr.mean(axis=-1)}
    for name, thr in (("AP50", 0.5), ("AP75", 0.75)):
        if thr in thresholds:
            out[name] = per_thr[:, thresholds.index(thr)]
    return out


def score_table(table: MatchTable, *, use_07_metric: bool = True) -> dict:
    """``AP``, ``AP50``, ``AP75`` (%) and ``AP50_per_class`` (%) of all images of ``table``."""
    class_ap = _class_ap(table, np.ones((1, table.npos.shape[0])), use_07_metric)
    out = {k: float(v[0]) for k, v in _summaries(class_ap, table.thresholds).items()}
    if 0.5 in table.thresholds:
        out["AP50_per_class"] = (class_ap[0, table.thresholds.index(0.5)] * 100.0).tolist()
    return out


def detection_metrics(
    predictions: list[dict], targets: list[dict], num_classes: int, *, use_07_metric: bool = True,
    plus_one: bool = False, thresholds: tuple[float, ...] = IOU_THRESHOLDS,
) -> dict:
    """``AP``, ``AP50``, ``AP75`` (%) and ``AP50_per_class`` (%), as detectron2's VOC evaluator."""
    table = match_detections(predictions, targets, num_classes, thresholds=thresholds, plus_one=plus_one)
    return score_table(table, use_07_metric=use_07_metric)


def bootstrap_detection_ci(
    table: MatchTable, *, n_boot: int = 200, level: float = 0.95, seed: int = 0, use_07_metric: bool = True,
    method: str = "BCa", batch: int = 50,
) -> dict[str, tuple[float, float]]:
    """Bootstrap CIs of AP/AP50/AP75 resampling test *images* (``scipy.stats.bootstrap``).

    A resample draws N images with replacement; an image drawn m times contributes its detections
    and ground truth m times, and AP is recomputed from them (as weights on the fixed per-image
    matches: with distinct scores this equals re-running voc_eval on the duplicated images, since a
    run of tied copies adds no PR point beyond its ends). The interpolated AP is biased upwards
    under resampling (a max over a noisier PR curve), so the default is the bias-corrected BCa
    interval; a degenerate metric (e.g. AP75 = 0 in every resample) falls back to percentiles.
    """
    if n_boot <= 0:
        return {}
    n = table.npos.shape[0]
    names = ("AP", "AP50", "AP75")

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx)
        flat = idx.reshape(-1, idx.shape[-1])  # resamples (length n) or jackknife samples (n - 1)
        weights = np.stack([np.bincount(row, minlength=n) for row in flat]).astype(np.float64)
        values = _summaries(_class_ap(table, weights, use_07_metric), table.thresholds)
        return np.stack([values[k] for k in names]).reshape((len(names),) + idx.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(n),), statistic, vectorized=True, n_resamples=n_boot, batch=batch,
                              confidence_level=level, method=method, random_state=np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    out = {}
    for i, name in enumerate(names):
        low, high = res.confidence_interval.low[i], res.confidence_interval.high[i]
        if not (np.isfinite(low) and np.isfinite(high)):
            low, high = np.quantile(res.bootstrap_distribution[i], [alpha, 1.0 - alpha])
        out[name] = (float(low), float(high))
    return out


# ------------------------------------------------------------------------------------------------
# One (model, dataset, setting) run, resumable


@dataclass
class DetectionResult:
    setting: str
    metrics: dict  # AP, AP50, AP75 (%), AP50_per_class
    ci: dict  # metric → (low, high)
    losses: list[float]
    weights_check: dict
    n_train: int
    n_test: int
    train_seconds: float
    eval_seconds: float
    resumed: bool
    predictions: list[dict] = field(default_factory=list, repr=False)
    table: MatchTable | None = field(default=None, repr=False)  # per-image matches: paired comparisons
    use_07_metric: bool = True

    def outcome_arrays(self) -> dict[str, np.ndarray]:
        """The match table as plain arrays (``ssl_lib.outcomes`` kind ``detection``)."""
        t = self.table
        return {"thresholds": np.asarray(t.thresholds), "num_classes": np.asarray(t.num_classes),
                "label": t.label, "score": t.score, "image": t.image, "tp": t.tp, "ignored": t.ignored,
                "npos": t.npos, "use_07_metric": np.asarray(self.use_07_metric)}


def _load_cached(path: Path | None, detector: FasterRCNN) -> dict | None:
    """The cached trained state, loaded into ``detector``; None when absent or unreadable (retrain)."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != CACHE_VERSION:
            return None
        detector.load_state_dict(state["detector"])
        return state
    except (OSError, RuntimeError, KeyError, ValueError, EOFError):
        return None


def run_detection(
    model: FeatureModel, train: Dataset, test: Dataset, num_classes: int, cfg: DetectionCfg, setting: str, *,
    seed: int = 0, n_boot: int = 200, cache_path: Path | None = None, device=None, num_workers: int = 0,
    use_07_metric: bool = True, plus_one: bool = False, progress: bool = True,
) -> DetectionResult:
    """Build, check, train (or load the cached trained state) and score one detector."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # head initialisation
        detector = build_detector(model, num_classes, cfg, setting)
    check = check_backbone_weights(detector, model)
    state = _load_cached(cache_path, detector)
    resumed = state is not None
    start = time.perf_counter()
    if resumed:
        losses, train_seconds = list(state["losses"]), float(state["train_seconds"])
    else:
        losses = train_detector(detector, train, cfg, seed=seed, device=device, num_workers=num_workers,
                                progress=progress, desc=f"detection {setting}")
        train_seconds = time.perf_counter() - start
        if cache_path is not None:
            with atomic_path(cache_path, suffix=".pt") as tmp:
                torch.save({"detector": detector.state_dict(), "losses": losses, "train_seconds": train_seconds,
                            "version": CACHE_VERSION}, tmp)
    start = time.perf_counter()
    predictions, targets = predict_detections(detector, test, device=device, num_workers=num_workers)
    table = match_detections(predictions, targets, num_classes, plus_one=plus_one)
    metrics = score_table(table, use_07_metric=use_07_metric)
    ci = bootstrap_detection_ci(table, n_boot=n_boot, seed=seed, use_07_metric=use_07_metric)
    return DetectionResult(setting, metrics, ci, losses, check, len(train), len(test), train_seconds,
                           time.perf_counter() - start, resumed, predictions, table, use_07_metric)
