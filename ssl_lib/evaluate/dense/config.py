"""Dense prediction settings: one task's protocol (:class:`DenseCfg`) and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..._registry import Registry
from ...exceptions import ConfigError
from .heads import HEADS
from .model import DECODERS, STAGES

__all__ = ["DenseCfg", "PRESETS", "preset_cfg", "cfg_dict"]

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


def cfg_dict(cfg: DenseCfg) -> dict:
    """The settings as JSON-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
