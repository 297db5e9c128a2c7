"""Model cards: everything that defines a model's features, recorded with every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ModelCfg", "IMAGENET_MEAN", "IMAGENET_STD", "NO_NORM", "NORMS", "ADAPTER_FIELDS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_NORM = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # SimCLR-v1/v2 take raw [0, 1] pixels
# Named input statistics (the ``norm=`` option of file: and timm: specs, and the rows' ``normalization``).
NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm's IMAGENET_INCEPTION_*: most augreg ViTs
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # OpenAI CLIP
    "none": NO_NORM,
}
# The adapter contract: how a card's features are read. Every result row carries these columns.
ADAPTER_FIELDS = ("arch", "pooling", "feature_layer", "normalization", "input_size", "resize_size", "patch_size")


@dataclass(frozen=True)
class ModelCfg:
    """A pretrained feature extractor: architecture, weights and input contract.

    ``weights`` is a URL (``https://...``), a path (``file``), ``timm:<name.tag>`` or
    ``hf-hub:<repo>`` (hub weights), or ``random``. ``key_prefix`` is stripped from checkpoint
    keys (``module.encoder_q.`` for MoCo); keys containing any of ``drop_keys`` (projection heads,
    prototypes, fc) or starting with any of ``drop_prefixes`` (a timm model's classifier, e.g.
    ``head.fc.``, so that EfficientNet's ``conv_head`` stays) are dropped before a strict load.

    The *adapter contract* says how features are read, so that a ViT's row and a ResNet's say what
    they compared: ``pooling`` (``avgpool``, ``cls_token``, ``mean_patch_tokens``,
    ``attention_pool``), ``feature_layer`` (the last stage whose output is pooled: ``layer4``,
    ``blocks.11``, ``stages.3``; the model's own final norm or conv head then applies, as timm's
    ``forward_head(pre_logits=True)``), normalisation, input and resize size, and ``patch_size``
    for patch-embedding models. ``arch_kwargs`` go to the architecture's builder
    (``timm.create_model``: ``img_size``, ``global_pool``).
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
    drop_prefixes: tuple[str, ...] = ()
    pooling: str = "avgpool"
    feature_layer: str = "layer4"
    patch_size: int | None = None
    arch_kwargs: dict = field(default_factory=dict)
    family: str = ""
    source_top1: float | None = None  # ImageNet (paper) or mini-source (mini) linear top-1
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def qualified_name(self) -> str:
        return self.name if self.zoo in ("timm", "file") else f"{self.zoo}/{self.name}"

    @property
    def normalization(self) -> str:
        """A name from :data:`NORMS`, else ``mean=a,b,c std=d,e,f``."""
        for name, (mean, std) in NORMS.items():
            if tuple(self.mean) == mean and tuple(self.std) == std:
                return name
        return "mean={} std={}".format(*(",".join(f"{v:g}" for v in stats) for stats in (self.mean, self.std)))

    def adapter(self) -> dict:
        """The adapter contract as the result rows' typed columns (:data:`ADAPTER_FIELDS`)."""
        return {"arch": self.arch, "pooling": self.pooling, "feature_layer": self.feature_layer,
                "normalization": self.normalization, "input_size": self.input_size,
                "resize_size": self.resize_size or self.input_size, "patch_size": self.patch_size}

    def to_dict(self) -> dict:
        return asdict(self)
