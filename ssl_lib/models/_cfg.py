"""Model cards: everything that defines a model's features, recorded with every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ModelCfg", "IMAGENET_MEAN", "IMAGENET_STD", "NO_NORM"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_NORM = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # SimCLR-v1/v2 take raw [0, 1] pixels


@dataclass(frozen=True)
class ModelCfg:
    """A pretrained feature extractor: architecture, weights and input contract.

    ``weights`` is a URL (``https://...``), a path (``file``), ``timm:<name>`` or ``random``.
    ``key_prefix`` is stripped from checkpoint keys (``module.encoder_q.`` for MoCo); keys
    containing any of ``drop_keys`` (projection heads, prototypes, fc) are dropped before a
    strict load into ``arch``.
    """

    name: str
    zoo: str
    arch: str
    weights: str
    sha256: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    resize_size: int | None = None  # shorter side before the centre crop (None: = input_size)
    interpolation: str = "bicubic"
    state_dict_key: tuple[str, ...] = ("state_dict", "model", "resnet")
    key_prefix: str = ""
    drop_keys: tuple[str, ...] = ("projection", "prototypes", "fc.", "linear", "head", "jigsaw")
    family: str = ""
    source_top1: float | None = None  # ImageNet (paper) or mini-source (mini) linear top-1
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def qualified_name(self) -> str:
        return self.name if self.zoo in ("timm", "file") else f"{self.zoo}/{self.name}"

    def to_dict(self) -> dict:
        return asdict(self)
