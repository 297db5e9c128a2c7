"""Dense prediction: a light decoder over a backbone's layer1..layer4 maps (reference/paper.md §3.5-3.6).

- **Encoder**: a copy of the evaluated :class:`FeatureModel`'s backbone (its own normalisation
  first), run up to ``layer4``; optionally dilated (stride 2 → 1 with dilated convolutions, the CSAIL
  ``_nostride_dilate``; the paper's normals encoder dilates layer3 and layer4). Right after it is
  built its parameters and buffers are compared, bit for bit, with the FeatureModel's state dict
  (:func:`check_encoder_weights`): the paper's segmentation code loads weights with
  ``strict=False`` into a differently built ResNet and may have run on random encoders (§3.6).
- **Decoders** (:data:`DECODERS`): ``upernet`` (PPM on layer4 + FPN laterals and top-down fusion
  + a fuse conv; the paper's segmentation decoder) and ``ppm`` (PPM on layer4 only; the paper's
  normals decoder). Channel width is a parameter; the FPN width is half of it (CSAIL: 512 / 256).
  Logits are upsampled bilinearly to the input size.
- **Heads** (:data:`HEADS`): segmentation is per-pixel cross-entropy with an ignore index. Normals
  follow the paper's code by default: 40-way classification over k-means clusters of training
  normals; the prediction is the probability-weighted sum of cluster centres, renormalised
  (``expected``; the code's ``convert_discrete_to_continuous``), or the most likely centre
  (``argmax``). ``regression`` (3 channels, L2-normalised, cosine loss) is the option.
- **Training**: SGD momentum 0.9, weight decay 1e-4 on weights (not on biases and norm parameters,
  as the CSAIL toolkit's ``group_weight``), poly schedule ``lr * (1 - it / max_it) ** 0.9`` per
  iteration, seeded. With a frozen backbone (eval mode, no gradients) the encoder's maps are
  computed once per split and the decoder trains on them (``cache_features``); ``freeze=False``
  trains end to end on images. ``freeze`` is per task: the paper preset trains segmentation end to
  end and freezes the normals encoder, as the paper's two codes do; the mini preset freezes both.
- **Metrics**: see :func:`segmentation_counts`, :func:`segmentation_metrics` and
  :func:`normals_metrics`, over every labelled test pixel at the label's native size (file datasets:
  no crop, one image at a time); 95% percentile-bootstrap CIs resample test images.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from .._registry import Registry
from ..data.dense import ArrayDenseDataset, DenseTask, get_dense_task, open_dense, valid_normals
from ..exceptions import ConfigError, SSLLibError
from ..models import FeatureModel
from ..stats import bootstrap_ci

__all__ = [
    "DenseCfg", "PRESETS", "preset_cfg", "DenseEncoder", "DenseModel", "DECODERS", "HEADS",
    "EncoderWeightsError", "check_encoder_weights", "trivial_prediction", "normals_vocabulary", "segmentation_counts",
    "segmentation_metrics", "angular_error", "normals_metrics", "DenseResult", "run_dense_task",
    "SEG_METRICS", "NORMALS_METRICS", "THRESHOLDS",
]

STAGES = ("layer1", "layer2", "layer3", "layer4")
THRESHOLDS = (11.25, 22.5, 30.0)
SEG_METRICS = ("seg_mean_iou", "seg_pixel_acc")  # the paper's Table 5 columns
NORMALS_METRICS = ("sn_mean_err", "sn_median_err", "sn_within_11.25", "sn_within_22.5", "sn_within_30")


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class DenseCfg:
    """One task's protocol (it goes into every row's ``protocol_params``)."""

    decoder: str = "upernet"
    width: int = 512  # PPM / decoder channels; UPerNet's FPN uses width // 2
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    iterations: int = 150_000
    batch_size: int = 4
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    freeze: bool = True  # backbone frozen in eval mode; False: trained end to end (BN in train mode)
    head: str = "segmentation"  # "segmentation" | "classification" | "regression" (normals)
    n_clusters: int = 40  # normals classification: the vocabulary size (vocab40.mat)
    kmeans_pixels: int = 100_000  # training pixels sampled (seeded) for k-means
    normals_pred: str = "expected"  # "expected" (the paper's code) | "argmax"
    dilate: tuple[str, ...] = ()  # stages whose stride becomes dilation
    min_stride: int = 1  # maps finer than this stride are average-pooled to it (see DenseEncoder)
    image_size: int | None = None  # paper datasets: shorter side (+ centre crop for training); None: native
    train_images: int | None = None  # use the first N training images (None: all)
    cache_features: bool = True  # frozen only: encode each split once and train on the maps

    def __post_init__(self) -> None:
        problems = []
        if self.iterations < 1:
            problems.append(f"iterations must be >= 1 (got {self.iterations})")
        if self.batch_size < 2:
            problems.append(f"batch_size must be >= 2, the decoder's batch-norm needs it (got {self.batch_size})")
        if self.lr <= 0 or self.width < 2:
            problems.append(f"lr and width must be positive (got {self.lr}, {self.width})")
        if self.decoder not in DECODERS:
            problems.append(f"decoder {self.decoder!r} is not one of {DECODERS.names()}")
        if self.head not in HEADS:
            problems.append(f"head {self.head!r} is not one of {HEADS.names()}")
        if self.normals_pred not in ("expected", "argmax"):
            problems.append(f"normals_pred must be 'expected' or 'argmax' (got {self.normals_pred!r})")
        if set(self.dilate) - set(STAGES[1:]):
            problems.append(f"dilate takes stages among {STAGES[1:]} (got {self.dilate})")
        if problems:
            raise ConfigError("Dense settings: " + "; ".join(problems) + ".")


# --------------------------------------------------------------------------------------------
# Encoder and the weight-loading check


class EncoderWeightsError(SSLLibError):
    """The dense model's encoder does not hold the evaluated model's weights."""


def _mismatches(module: nn.Module, reference: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Keys of ``reference`` missing from ``module`` and keys whose tensors differ (shape or any bit)."""
    state = module.state_dict()
    missing = [k for k in reference if k not in state]
    differ = [k for k in reference if k in state and (
        state[k].shape != reference[k].shape or not torch.equal(state[k].detach().cpu(), reference[k].detach().cpu()))]
    return missing, differ


def check_encoder_weights(encoder: nn.Module, reference: dict[str, torch.Tensor]) -> dict:
    """Every tensor of ``reference`` (parameters and buffers) must be in ``encoder``, bit-identical.

    Returns a record for the rows' ``extra``; raises :class:`EncoderWeightsError` otherwise.
    """
    missing, differ = _mismatches(encoder, reference)
    if missing or differ:
        raise EncoderWeightsError(
            f"The dense encoder does not carry the evaluated weights: {len(missing)} tensor(s) missing "
            f"(e.g. {missing[:2]}), {len(differ)} differ (e.g. {differ[:2]}) out of {len(reference)}. A checkpoint "
            "loaded with strict=False under other key names leaves a random encoder (paper.md §3.6); load it strictly."
        )
    return {"passed": True, "tensors": len(reference), "missing": 0, "differ": 0}


def _nostride_dilate(stage: nn.Module, dilation: int) -> None:
    """The CSAIL toolkit's conversion: stride-2 convs become stride 1, 3x3 convs get ``dilation``
    (the block's first, formerly strided, conv gets half of it). Weights are untouched."""
    for module in stage.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.stride == (2, 2):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = module.padding = (dilation // 2, dilation // 2)
        elif module.kernel_size == (3, 3):
            module.dilation = module.padding = (dilation, dilation)


class DenseEncoder(nn.Module):
    """A copy of ``model``'s backbone run up to layer4; returns the four stage maps.

    The children before ``layer1`` (stem) run in their registration order, which is the forward
    order of both timm and torchvision ResNets. ``min_stride`` average-pools maps finer than that
    stride: a ResNet-50's layer1 is at stride 4, the mini ResNet's (3x3/2 stem, no max-pool) at 2,
    so ``min_stride=4`` gives UPerNet the paper's finest level (and output stride) and a map 4x
    cheaper to cache and decode.
    """

    def __init__(self, model: FeatureModel, dilate: tuple[str, ...] = (), min_stride: int = 1) -> None:
        super().__init__()
        names = [n for n, _ in model.backbone.named_children()]
        if not set(STAGES) <= set(names):
            raise ConfigError(
                f"Dense prediction needs a ResNet-style backbone with {', '.join(STAGES)}; "
                f"{model.cfg.name!r} has children {names[:8]}."
            )
        self.backbone = copy.deepcopy(model.backbone)
        self.order = names[: names.index("layer4") + 1]
        self.min_stride = min_stride
        self.register_buffer("mean", model.mean.detach().clone(), persistent=False)
        self.register_buffer("std", model.std.detach().clone(), persistent=False)
        dilation = 1
        for stage in STAGES:
            if stage in dilate:
                dilation *= 2
                _nostride_dilate(getattr(self.backbone, stage), dilation)
        self.eval()  # a frozen encoder stays so; DenseModel.train() decides otherwise
        with torch.no_grad():
            probe = self(torch.zeros(2, 3, 64, 64, device=self.mean.device))
        self.channels = [m.shape[1] for m in probe]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float in [0, 1], (B, 3, H, W)."""
        x = (images - self.mean) / self.std
        maps = []
        for name in self.order:
            x = getattr(self.backbone, name)(x)
            if name in STAGES:
                pool = self.min_stride // max(images.shape[-1] // x.shape[-1], 1)
                maps.append(F.avg_pool2d(x, pool) if pool > 1 else x)
        return maps


# --------------------------------------------------------------------------------------------
# Decoders


def _cbr(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return x if x.shape[-2:] == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: average-pool to each scale, 1x1 conv, upsample, concatenate."""

    def __init__(self, in_channels: int, width: int, scales: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), *_cbr(in_channels, width, 1)) for s in scales)
        self.out_channels = in_channels + len(scales) * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] + [_resize(b(x), x.shape[-2:]) for b in self.branches], 1)


DECODERS: Registry[type] = Registry("decoder")


@DECODERS.register("ppm")
class PPMDecoder(nn.Module):
    """The CSAIL ``ppm`` decoder: pyramid pooling on layer4, a 3x3 conv, dropout, a 1x1 classifier."""

    def __init__(self, in_channels: list[int], num_out: int, width: int, pool_scales=(1, 2, 3, 6)) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], width, pool_scales)
        self.head = nn.Sequential(_cbr(self.ppm.out_channels, width, 3), nn.Dropout2d(0.1), nn.Conv2d(width, num_out, 1))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self.ppm(maps[-1]))


@DECODERS.register("upernet")
class UPerNetDecoder(nn.Module):
    """The CSAIL ``upernet`` decoder: PPM on layer4, FPN laterals with top-down addition and 3x3
    output convs, all levels upsampled to layer1's size, concatenated, a 3x3 fuse conv, a 1x1
    classifier."""

    def __init__(self, in_channels: list[int], num_out: int, width: int, pool_scales=(1, 2, 3, 6)) -> None:
        super().__init__()
        fpn = max(width // 2, 1)
        self.ppm = PyramidPooling(in_channels[-1], width, pool_scales)
        self.ppm_out = _cbr(self.ppm.out_channels, fpn, 3)
        self.lateral = nn.ModuleList(_cbr(c, fpn, 1) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(_cbr(fpn, fpn, 3) for _ in in_channels[:-1])
        self.fuse = nn.Sequential(_cbr(fpn * len(in_channels), fpn, 3), nn.Conv2d(fpn, num_out, 1))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        top = self.ppm_out(self.ppm(maps[-1]))
        outs = [top]
        for i in reversed(range(len(maps) - 1)):
            lateral = self.lateral[i](maps[i])
            top = lateral + _resize(top, lateral.shape[-2:])
            outs.insert(0, self.fpn_out[i](top))
        size = outs[0].shape[-2:]
        return self.fuse(torch.cat([_resize(o, size) for o in outs], 1))


class DenseModel(nn.Module):
    """Encoder + decoder; logits at the input resolution. A frozen encoder stays in eval mode."""

    def __init__(self, encoder: DenseEncoder, decoder: nn.Module, freeze: bool) -> None:
        super().__init__()
        self.encoder, self.decoder, self.freeze = encoder, decoder, freeze
        # both ways explicitly: the encoder copies a FeatureModel, whose parameters do not require grad
        self.encoder.requires_grad_(not freeze)

    def train(self, mode: bool = True) -> DenseModel:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """At the decoder's own resolution (layer1's for UPerNet, layer4's for PPM): training."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            maps = self.encoder(images)
        return self.decoder(maps)

    def forward(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Upsampled bilinearly to ``size`` (default: the input's), e.g. a label's native size: evaluation."""
        return _resize(self.logits(images), size or images.shape[-2:])


def _nearest(target: torch.Tensor, size) -> torch.Tensor:
    """Targets resized (nearest) to the logits' size, as the CSAIL toolkit downsamples its labels
    (``segm_downsampling_rate``) instead of upsampling the logits for the loss."""
    if target.shape[-2:] == tuple(size):
        return target
    if target.ndim == 3:
        return F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return F.interpolate(target, size=size, mode="nearest")


# --------------------------------------------------------------------------------------------
# Heads: targets, loss and prediction per task


def normals_vocabulary(normals: torch.Tensor, k: int = 40, *, n_pixels: int = 100_000, seed: int = 0) -> np.ndarray:
    """k-means centres (k, 3), unit length, of valid training normals ``(N, 3, H, W)``.

    The paper ships its centres (``vocab40.mat``); here they are refit on the task's training
    split: a seeded sample of ``n_pixels`` valid pixels, scikit-learn ``KMeans(random_state=seed)``.
    """
    from sklearn.cluster import KMeans

    flat = normals.permute(0, 2, 3, 1).reshape(-1, 3)
    flat = flat[valid_normals(flat, axis=1)].double().numpy()
    if len(flat) < k:
        raise ConfigError(f"k-means needs at least {k} valid normals, got {len(flat)}.")
    rng = np.random.default_rng(seed)
    sample = flat[rng.choice(len(flat), size=min(n_pixels, len(flat)), replace=False)]
    centres = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample).cluster_centers_
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)


class SegmentationHead:
    """Per-pixel cross-entropy over the classes; prediction = argmax."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        self.out_channels, self.ignore_index = task.num_classes, task.ignore_index
        self.info = {"head": "segmentation"}

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        return target.long()

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1)


class NormalsClassificationHead:
    """The paper's normals head: 40-way cross-entropy on the nearest k-means centre."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        vocab = normals_vocabulary(train_targets(), cfg.n_clusters, n_pixels=cfg.kmeans_pixels, seed=seed)
        self.centres = torch.from_numpy(vocab)
        self.out_channels, self.mode = cfg.n_clusters, cfg.normals_pred
        self.info = {"head": "classification", "n_clusters": cfg.n_clusters, "prediction": cfg.normals_pred}

    def targets(self, normals: torch.Tensor) -> torch.Tensor:
        """Nearest centre (largest cosine; the same as smallest distance for unit vectors), -1 if invalid."""
        labels = torch.einsum("bchw,kc->bkhw", normals, self.centres.to(normals.device)).argmax(1)
        return torch.where(valid_normals(normals, axis=1), labels, torch.full_like(labels, -1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=-1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        centres = self.centres.to(logits.device)
        if self.mode == "argmax":
            return centres[logits.argmax(1)].permute(0, 3, 1, 2)
        normals = torch.einsum("bkhw,kc->bchw", logits.softmax(1), centres)
        return F.normalize(normals, dim=1, eps=1e-12)


class NormalsRegressionHead:
    """3 channels, L2-normalised; loss = 1 - cosine over valid pixels."""

    def __init__(self, task: DenseTask, cfg: DenseCfg, train_targets: Callable[[], torch.Tensor], seed: int = 0) -> None:
        self.out_channels = 3
        self.info = {"head": "regression"}

    def targets(self, normals: torch.Tensor) -> torch.Tensor:
        return normals

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_normals(target, axis=1)
        cosine = (F.normalize(logits, dim=1) * target).sum(1)
        return (1 - cosine)[valid].mean() if valid.any() else logits.sum() * 0

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return F.normalize(logits, dim=1)


# name -> class(task, cfg, train_targets: () -> (N, ...) targets, seed) with out_channels, targets, loss, predict
HEADS: Registry[Callable] = Registry("dense head")
HEADS.add("segmentation", SegmentationHead)
HEADS.add("classification", NormalsClassificationHead)
HEADS.add("regression", NormalsRegressionHead)
_HEAD_KINDS = {"segmentation": "segmentation", "classification": "normals", "regression": "normals"}


# --------------------------------------------------------------------------------------------
# Presets

PRESETS: Registry[dict[str, DenseCfg]] = Registry("dense preset")
# The paper's codes: segmentation (§3.6) UPerNet, 30 x 5000 iterations at a total batch of 4, trained
# end to end (no freezing); normals (§3.5) PPM on a dilated encoder (output stride 8) frozen up to
# layer4, 150 x 90 iterations at batch 2, 40-way classification. Both SGD lr 0.02, momentum 0.9,
# weight decay 1e-4, poly 0.9. Training images here are a fixed 480 px square (the codes: random
# scales 300-600); test images keep their aspect ratio (shorter side 480, no crop) and are scored at
# the labels' native size (the codes: several scales).
PRESETS.add("paper", {
    "segmentation": DenseCfg(decoder="upernet", width=512, iterations=150_000, batch_size=4, lr=0.02,
                             head="segmentation", image_size=480, freeze=False, cache_features=False),
    "normals": DenseCfg(decoder="ppm", width=512, iterations=13_500, batch_size=2, lr=0.02, head="classification",
                        dilate=("layer3", "layer4"), image_size=480, cache_features=False),
})
# The mini study (64 px images, frozen backbones, maps cached), sized so both tasks take about 9 s per
# model on one CPU thread. The mini ResNet's layer1 is at stride 2; min_stride=4 pools it to the
# paper's finest stride, so UPerNet fuses at 16 x 16 (stride 4, as the paper's). For normals, layer4
# is dilated to stride 8, the paper's output stride. Widths are 32 and 16 channels (the paper's 512).
PRESETS.add("mini", {
    "segmentation": DenseCfg(decoder="upernet", width=32, iterations=400, batch_size=8, lr=0.4,
                             head="segmentation", min_stride=4),
    "normals": DenseCfg(decoder="ppm", width=16, iterations=200, batch_size=16, lr=0.3, head="classification",
                        dilate=("layer4",), min_stride=4, train_images=400, kmeans_pixels=10_000),
})


def preset_cfg(preset: str, kind: str, **overrides) -> DenseCfg:
    """The preset's settings for ``kind`` with ``overrides`` (None / "" values are skipped)."""
    base = PRESETS.get(preset)[kind]
    return replace(base, **{k: v for k, v in overrides.items() if v not in (None, "")})


# --------------------------------------------------------------------------------------------
# Metrics


def segmentation_counts(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = -1) -> dict:
    """Per-image, per-class pixel counts, the CSAIL ``intersectionAndUnion`` and ``accuracy``.

    ``pred``, ``target``: (N, H, W) integer maps. Pixels whose target is ``ignore_index`` (or out of
    range) are left out of every count. Returns ``intersection``/``union`` (N, C) and
    ``correct``/``labelled`` (N,).
    """
    pred, target = np.asarray(pred).reshape(len(pred), -1), np.asarray(target).reshape(len(target), -1)
    n = len(target)
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    image = np.broadcast_to(np.arange(n)[:, None], target.shape)

    def per_image(classes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(image[mask] * num_classes + classes[mask], minlength=n * num_classes).reshape(n, num_classes)

    hit = valid & (pred == target)
    inter = per_image(target, hit)
    area_pred = per_image(np.clip(pred, 0, num_classes - 1), valid & (pred >= 0) & (pred < num_classes))
    area_true = per_image(target, valid)
    return {"intersection": inter, "union": area_pred + area_true - inter, "correct": hit.sum(1), "labelled": valid.sum(1)}


def segmentation_metrics(counts: dict) -> dict:
    """mIoU and pixel accuracy from counts accumulated over the whole test set.

    IoU per class = intersection / union summed over images; the mean is over classes with union
    > 0 (present in the truth or the prediction; the CSAIL code averages all classes, which is the
    same whenever every class appears, as on ADE20K's validation set). Pixel accuracy = % of labelled
    pixels predicted correctly. mIoU is a fraction, like the paper's Table 5.
    """
    inter, union = counts["intersection"].sum(0), counts["union"].sum(0)
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    labelled = counts["labelled"].sum()
    return {
        "seg_mean_iou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "seg_pixel_acc": 100.0 * float(counts["correct"].sum()) / labelled if labelled else float("nan"),
        "iou_per_class": iou,
    }


def angular_error(pred: np.ndarray, truth: np.ndarray, axis: int = -1) -> np.ndarray:
    """Angle in degrees between vectors (both renormalised; cosine clipped to [-1, 1]), float64."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    pred = pred / np.maximum(np.linalg.norm(pred, axis=axis, keepdims=True), np.finfo(np.float64).eps)
    truth = truth / np.maximum(np.linalg.norm(truth, axis=axis, keepdims=True), np.finfo(np.float64).eps)
    return np.degrees(np.arccos(np.clip((pred * truth).sum(axis), -1.0, 1.0)))


def normals_metrics(errors: np.ndarray) -> dict:
    """Mean and median angular error over all valid pixels of the test set (pooled, not per image),
    and % of pixels with error strictly below 11.25, 22.5 and 30 degrees (the paper's code)."""
    errors = np.asarray(errors, np.float64).ravel()
    out = {"sn_mean_err": float(errors.mean()), "sn_median_err": float(np.median(errors))}
    out.update({f"sn_within_{t:g}": 100.0 * float((errors < t).mean()) for t in THRESHOLDS})
    return out


# --------------------------------------------------------------------------------------------
# Data flow: batches, encoded maps


class _Batches:
    """Endless seeded index batches: a fresh permutation each epoch, the tail dropped."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {n} training images.")
        self.n, self.batch_size, self.generator = n, batch_size, torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            order = torch.randperm(self.n, generator=self.generator)
            for i in range(0, self.n - self.batch_size + 1, self.batch_size):
                yield order[i : i + self.batch_size].tolist()


def _as_float(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float().div_(255.0)


def _loader(data: Dataset, batch_size: int, num_workers: int, batch_sampler=None) -> Iterator:
    """Whole slices of an in-memory dataset; a DataLoader for files."""
    if isinstance(data, ArrayDenseDataset) and batch_sampler is None:
        return ((data.images[i : i + batch_size], data.targets[i : i + batch_size]) for i in range(0, len(data), batch_size))
    if isinstance(data, ArrayDenseDataset):
        return ((data.images[idx], data.targets[idx]) for idx in batch_sampler)
    if batch_sampler is not None:
        return iter(DataLoader(data, batch_sampler=batch_sampler, num_workers=num_workers))
    return iter(DataLoader(data, batch_size=batch_size, num_workers=num_workers))


@torch.inference_mode()
def _encode(encoder: DenseEncoder, data: Dataset, *, batch_size: int, device, num_workers: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stage maps of every image (on the CPU, float32) and the targets, in order."""
    maps, targets = [], []
    for images, target in _loader(data, batch_size, num_workers):
        maps.append([m.float().cpu() for m in encoder(_as_float(images, device))])
        targets.append(target)
    return [torch.cat(level) for level in zip(*maps)], torch.cat(targets)


def _train_targets(data: Dataset, num_workers: int) -> torch.Tensor:
    if isinstance(data, ArrayDenseDataset):
        return data.targets
    return torch.cat([t for _, t in DataLoader(data, batch_size=16, num_workers=num_workers)])


def trivial_prediction(task: DenseTask, train: Dataset, num_workers: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The baseline every decoder must beat: the training split's most frequent class everywhere
    (segmentation) or its mean valid normal, renormalised, everywhere (normals). One streaming pass."""
    total = None
    for _, target in _loader(train, 64, num_workers):
        if task.kind == "segmentation":
            valid = (target >= 0) & (target < task.num_classes)
            part = torch.bincount(target[valid].long(), minlength=task.num_classes).double()
        else:
            part = (target * valid_normals(target, axis=1)[:, None]).double().sum((0, 2, 3))
        total = part if total is None else total + part
    if task.kind == "segmentation":
        majority = int(total.argmax())
        return lambda target: torch.full_like(target, majority)
    mean = (total / total.norm()).float()
    return lambda target: mean.view(1, 3, 1, 1).expand_as(target).clone()


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Decay on conv/linear weights only (the CSAIL toolkit's ``group_weight``)."""
    decay, no_decay = [], []
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (decay if name == "weight" and isinstance(sub, (nn.Conv2d, nn.Linear)) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------
# One task


@dataclass
class DenseResult:
    task: str
    kind: str
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    losses: list[float]
    examples: dict[str, np.ndarray]  # images, targets, predictions (and errors for normals) of a few test images
    extra: dict
    cfg: DenseCfg
    n_train: int
    n_test: int
    seconds: dict[str, float] = field(default_factory=dict)
    iou_per_class: list[float] = field(default_factory=list)
    model: DenseModel | None = field(default=None, repr=False)  # the trained model, in eval mode
    head: object = field(default=None, repr=False)  # its head (``predict`` turns logits into maps)
    per_image: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # test counts per image

    def outcome_arrays(self) -> tuple[str, dict[str, np.ndarray]]:
        """``(kind, arrays)`` for :mod:`ssl_lib.outcomes`: per-image counts the metrics are sums of."""
        stats = self.per_image
        if self.kind == "segmentation":
            return "segmentation", {k: stats[k] for k in ("intersection", "union", "correct", "labelled")}
        arrays = {"sn_mean_err:num": stats["sum"], "sn_mean_err:den": stats["count"]}
        for t in THRESHOLDS:
            arrays[f"sn_within_{t:g}:num"], arrays[f"sn_within_{t:g}:den"] = stats[f"below_{t:g}"], stats["count"]
        return "ratio", arrays


def _train(model: DenseModel, head, cfg: DenseCfg, *, step_batches: Iterator, forward: Callable,
           desc: str, progress: bool) -> list[float]:
    params = _param_groups(model.decoder if cfg.freeze else model, cfg.weight_decay)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    losses = []
    model.train()
    for it in tqdm(range(cfg.iterations), desc=desc, file=sys.stderr, mininterval=10, disable=not progress):
        lr = cfg.lr * (1 - it / cfg.iterations) ** cfg.poly_power
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, target = next(step_batches)
        logits = forward(inputs)
        loss = head.loss(logits, head.targets(_nearest(target, logits.shape[-2:])))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


class _Scorer:
    """Accumulates per-image statistics over the test set and keeps a few examples."""

    def __init__(self, task: DenseTask, n_examples: int) -> None:
        self.task, self.n_examples = task, n_examples
        self.parts: list[dict] = []
        self.errors: list[np.ndarray] = []
        self.examples: dict[str, list] = {"images": [], "targets": [], "predictions": [], "errors": []}

    @property
    def pixels(self) -> int:
        """Labelled (segmentation) or valid (normals) test pixels scored so far."""
        return int(sum(p["labelled" if self.task.kind == "segmentation" else "count"].sum() for p in self.parts))

    def add(self, images: torch.Tensor, target: torch.Tensor, pred: torch.Tensor) -> None:
        target, pred = target.cpu().numpy(), pred.cpu().numpy()
        if images.shape[-2:] != target.shape[-2:]:  # full-resolution scoring: show the image at the label's size
            images = _resize(images.float(), target.shape[-2:]).round().clamp(0, 255).to(torch.uint8)
        if self.task.kind == "segmentation":
            self.parts.append(segmentation_counts(pred, target, self.task.num_classes, self.task.ignore_index))
            err = None
        else:
            err = angular_error(pred, target, axis=1)  # (B, H, W)
            valid = valid_normals(target, axis=1)
            self.errors.append(err[valid].astype(np.float32))
            per_image = [err[i][valid[i]] for i in range(len(err))]
            self.parts.append({"sum": np.array([e.sum() for e in per_image]), "count": valid.reshape(len(err), -1).sum(1),
                               **{f"below_{t:g}": np.array([(e < t).sum() for e in per_image]) for t in THRESHOLDS}})
            err = np.where(valid, err, np.nan)
        keep = max(0, self.n_examples - len(self.examples["images"]))
        for i in range(min(keep, len(images))):
            self.examples["images"].append(images[i].permute(1, 2, 0).cpu().numpy())
            self.examples["targets"].append(target[i] if target.ndim == 3 else np.moveaxis(target[i], 0, -1))
            self.examples["predictions"].append(pred[i] if pred.ndim == 3 else np.moveaxis(pred[i], 0, -1))
            if err is not None:
                self.examples["errors"].append(err[i])

    def result(self, n_boot: int, seed: int) -> tuple[dict, dict, list]:
        stats = self.stats = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        n = len(next(iter(stats.values())))
        if self.task.kind == "segmentation":
            metrics = segmentation_metrics(stats)
            iou = [float(v) for v in metrics.pop("iou_per_class")]
            boot = {name: lambda idx, name=name: segmentation_metrics({k: v[idx] for k, v in stats.items()})[name]
                    for name in SEG_METRICS}
        else:
            metrics, iou = normals_metrics(np.concatenate(self.errors)), []
            boot = {"sn_mean_err": lambda idx: stats["sum"][idx].sum() / stats["count"][idx].sum()}
            boot.update({f"sn_within_{t:g}": lambda idx, t=t: 100.0 * stats[f"below_{t:g}"][idx].sum() / stats["count"][idx].sum()
                         for t in THRESHOLDS})
        index = np.arange(n)
        ci = {name: bootstrap_ci(lambda i, _s, f=f: f(i), index, index, n_boot=n_boot, seed=seed) for name, f in boot.items()}
        return metrics, ci, iou


def run_dense_task(
    model: FeatureModel, task_name: str, cfg: DenseCfg, *, seed: int = 0, n_boot: int = 200, root=None,
    download: bool = False, device=None, num_workers: int = 0, n_examples: int = 4, progress: bool = False,
) -> DenseResult:
    """Train a decoder for ``task_name`` on ``model``'s backbone and score it on the test split."""
    start = time.perf_counter()
    task = get_dense_task(task_name)
    if _HEAD_KINDS[cfg.head] != task.kind:
        raise ConfigError(f"Head {cfg.head!r} is for {_HEAD_KINDS[cfg.head]} tasks; {task_name!r} is a {task.kind} task.")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = open_dense(task_name, "train", root=root, download=download, image_size=cfg.image_size)
    test = open_dense(task_name, "test", root=root, download=download, image_size=cfg.image_size, full_resolution=True)
    if cfg.train_images is not None and cfg.train_images < len(train):
        train = train.take(cfg.train_images) if isinstance(train, ArrayDenseDataset) else Subset(train, range(cfg.train_images))

    reference = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        encoder = DenseEncoder(model, cfg.dilate, cfg.min_stride).to(device)
        weights_check = check_encoder_weights(encoder.backbone, reference)
        head = HEADS.get(cfg.head)(task, cfg, lambda: _train_targets(train, num_workers), seed)
        decoder = DECODERS.get(cfg.decoder)(encoder.channels, head.out_channels, cfg.width, cfg.pool_scales)
        dense = DenseModel(encoder, decoder, cfg.freeze).to(device).eval()
        seconds: dict[str, float] = {}

        batches = iter(_Batches(len(train), cfg.batch_size, seed))
        cached = cfg.freeze and cfg.cache_features
        t0 = time.perf_counter()
        if cached:  # encode once; each step indexes the maps
            train_maps, train_targets = _encode(encoder, train, batch_size=64, device=device, num_workers=num_workers)
            seconds["encode_train"] = time.perf_counter() - t0
            step_batches = (([m[idx].to(device) for m in train_maps], train_targets[idx].to(device)) for idx in batches)
            forward = dense.decoder
        else:
            step_batches = ((_as_float(x, device), y.to(device)) for x, y in _loader(train, cfg.batch_size, num_workers, batches))
            forward = dense.logits
        t0 = time.perf_counter()
        desc = f"dense · {model.cfg.name} · {task_name}"
        losses = _train(dense, head, cfg, step_batches=step_batches, forward=forward, desc=desc, progress=progress)
        seconds["train"] = time.perf_counter() - t0
        if cached:
            del train_maps, train_targets

    t0 = time.perf_counter()
    dense.eval()
    scorer, trivial = _Scorer(task, n_examples), _Scorer(task, 0)
    constant = trivial_prediction(task, train, num_workers)
    with torch.inference_mode():
        # files keep their own sizes (no crop), so they cannot batch: one image at a time
        for images, target in _loader(test, 64 if isinstance(test, ArrayDenseDataset) else 1, num_workers):
            scorer.add(images, target, head.predict(dense(_as_float(images, device), target.shape[-2:])))
            trivial.add(images, target, constant(target))
    metrics, ci, iou = scorer.result(n_boot, seed)
    baseline = trivial.result(0, seed)[0]
    seconds["evaluate"] = time.perf_counter() - t0
    unchanged = not any(_mismatches(encoder.backbone, reference))  # frozen: must be True
    seconds["total"] = time.perf_counter() - start
    extra = {
        "weights_check": weights_check, "encoder_unchanged_after_training": unchanged,
        "iterations": cfg.iterations, "final_loss": float(np.mean(losses[-10:])), "decoder": cfg.decoder,
        "freeze": cfg.freeze, "cached_features": cached, "scored_pixels": scorer.pixels, **head.info,
        "trivial_baseline": {"rule": "majority training class" if task.kind == "segmentation" else "mean training normal",
                             **{k: round(float(v), 4) for k, v in baseline.items()}},
    }
    examples = {k: np.stack(v) if len({x.shape for x in v}) == 1 else v for k, v in scorer.examples.items() if v}
    return DenseResult(task_name, task.kind, metrics, ci, losses, examples, extra, cfg, len(train), len(test),
                       seconds, iou, dense, head, per_image=scorer.stats)


def cfg_dict(cfg: DenseCfg) -> dict:
    """The settings as JSON-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
