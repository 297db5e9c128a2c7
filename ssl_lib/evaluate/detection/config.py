"""Detection settings: the frozen / fine-tuned backbone settings and the schedule presets."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..._registry import Registry
from ...exceptions import ConfigError
from ...models.multiscale import RESNET_STAGES as STAGES  # detectron2's res2..res5; other families: 4 levels too
from ...models.multiscale import RESNET_STEM as STEM

__all__ = ["STAGES", "STEM", "SETTINGS", "DetectionCfg", "DETECTION_PRESETS"]

# Setting name → detectron2 MODEL.BACKBONE.FREEZE_AT (the paper's detectron2-configs/{frozen,finetune}).
SETTINGS: Registry[int] = Registry("detection setting")
SETTINGS.add("frozen", 4)  # stem + res2..res4 (the first 3 of 4 stages) frozen; res5, FPN, RPN, ROI heads train
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


