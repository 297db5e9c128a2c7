"""Model specs → :class:`FeatureModel`: one place that resolves names, weights and inputs."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import torch
import torch.nn as nn

from .._registry import unknown_name_message
from ..exceptions import ConfigError, DataNotFoundError, UnknownNameError
from ..paths import cache_dir
from ._arch import ARCHS, build_arch
from ._cfg import IMAGENET_MEAN, IMAGENET_STD, NO_NORM, ModelCfg
from ._mini import MINI_ZOO_DIR, mini_models
from ._paper import PAPER_MODELS
from ._timm import build_timm, hf_hub_cfg, timm_cfg, timm_pyramid_kind
from ._weights import (
    convert_state_dict,
    fetch_weights,
    load_checkpoint,
    load_strict,
    state_dict_fingerprint,
    verify_sha256,
)

__all__ = ["FeatureModel", "ZOOS", "list_models", "get_model_cfg", "create_model", "require_multiscale"]

ZOOS = ("mini", "paper")
_DEFAULT_ARCH = {"mini": "mini_resnet", "paper": "resnet50"}


class FeatureModel(nn.Module):
    """A frozen backbone that always normalises its input first.

    Takes float images in [0, 1], shape (B, 3, H, W); returns pooled features (B, D). Keeping
    normalisation inside the model means a caller cannot forget it (or apply ImageNet statistics
    to SimCLR, which was trained without them).
    """

    def __init__(self, backbone: nn.Module, cfg: ModelCfg, weights_hash: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.weights_hash = weights_hash
        self.feature_dim = int(getattr(backbone, "feature_dim", 0) or getattr(backbone, "num_features"))
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


def _zoo_table(zoo: str) -> dict[str, ModelCfg]:
    return mini_models() if zoo == "mini" else PAPER_MODELS


def list_models(zoo: str | None = None, pattern: str = "*") -> list[str]:
    """Qualified names (``mini/byol``, ``paper/swav``) matching an fnmatch ``pattern``."""
    import fnmatch

    zoos = ZOOS if zoo is None else (zoo,)
    names = [cfg.qualified_name for z in zoos for cfg in _zoo_table(z).values()]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.split("/", 1)[1], pattern)]


def _parse_file_spec(spec: str, zoo: str) -> ModelCfg:
    """``file:/path/ckpt.pth[?arch=resnet50&norm=imagenet|none|mini&prefix=module.]``."""
    parsed = urllib.parse.urlsplit(spec[len("file:"):])
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = set(query) - {"arch", "norm", "prefix", "size"}
    if unknown:
        raise ConfigError(f"Unknown option(s) {sorted(unknown)} in {spec!r}; allowed: arch, norm, prefix, size.")
    arch = query.get("arch", _DEFAULT_ARCH.get(zoo, "resnet50"))
    if arch not in ARCHS:
        raise UnknownNameError(unknown_name_message(
            "architecture", arch, list(ARCHS), "For a timm architecture pass timm:<arch>?file=<path>."))
    norms = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "none": NO_NORM}
    if zoo == "mini":
        mini = next(iter(mini_models().values()))
        norms["mini"] = (mini.mean, mini.std)
    norm = query.get("norm", "mini" if arch == "mini_resnet" else "imagenet")
    if norm not in norms:
        raise UnknownNameError(unknown_name_message("normalisation", norm, list(norms)))
    size = int(query.get("size", 32 if arch == "mini_resnet" else 224))
    path = Path(parsed.path).expanduser()
    return ModelCfg(
        name=spec, zoo="file", arch=arch, weights=str(path), mean=norms[norm][0], std=norms[norm][1],
        input_size=size, resize_size=size, interpolation="bilinear" if arch == "mini_resnet" else "bicubic",
        key_prefix=query.get("prefix", ""), description=f"Local checkpoint {path.name} ({arch}).",
    )


def get_model_cfg(spec: str, *, zoo: str = "mini") -> ModelCfg:
    """Resolve ``byol`` (in ``zoo``), ``paper/byol``, ``timm:<name>``, ``hf-hub:<repo>`` or
    ``file:<path>`` to a card."""
    if spec.startswith("timm:"):
        return timm_cfg(spec)
    if spec.startswith("hf-hub:"):
        return hf_hub_cfg(spec)
    if spec.startswith("file:"):
        return _parse_file_spec(spec, zoo)
    if "/" in spec and spec.split("/", 1)[0] in ZOOS:
        zoo, spec = spec.split("/", 1)
    if zoo not in ZOOS:
        raise UnknownNameError(unknown_name_message("zoo", zoo, list(ZOOS)))
    table = _zoo_table(zoo)
    if spec not in table:
        raise UnknownNameError(
            unknown_name_message(
                f"{zoo} model", spec, list(table),
                "Or pass timm:<name>, hf-hub:<repo> or file:<path>; see `python -m ssl_lib models`.",
            )
        )
    return table[spec]


def _load_state(cfg: ModelCfg) -> dict[str, torch.Tensor] | None:
    """The backbone state dict for ``cfg`` (None: keep the seeded random init)."""
    source = cfg.weights
    if source.startswith("zoo:"):
        path = MINI_ZOO_DIR / source[len("zoo:"):]
        if not path.exists():
            raise DataNotFoundError(
                f"Checkpoint {path} for mini model {cfg.name!r} is missing. Run `make models` to train the mini zoo."
            )
        verify_sha256(path, cfg.sha256)
        checkpoint = load_checkpoint(path)
    elif source.startswith("torchvision:"):
        import torchvision

        weights = torchvision.models.ResNet50_Weights[source.split(":", 1)[1]]
        checkpoint = weights.get_state_dict(progress=True, check_hash=True)  # the hash prefix in its file name
    elif source.startswith("manual:"):
        path = cache_dir("weights") / source.split(":", 1)[1]
        if not path.exists():
            raise DataNotFoundError(
                f"{cfg.name!r} needs a converted checkpoint at {path} (no direct PyTorch download). "
                f"{cfg.description} See README, 'The paper study'."
            )
        checkpoint = load_checkpoint(path)
    elif source.startswith(("http://", "https://")):
        checkpoint = load_checkpoint(fetch_weights(source, cfg.sha256))
    else:  # a local file
        path = Path(source)
        if not path.exists():
            raise DataNotFoundError(f"Checkpoint file {path} does not exist; check the path after 'file:'.")
        checkpoint = load_checkpoint(path)
    return convert_state_dict(
        checkpoint, state_dict_key=cfg.state_dict_key, key_prefix=cfg.key_prefix, drop_keys=cfg.drop_keys,
        drop_prefixes=cfg.drop_prefixes,
    )


def require_multiscale(cfg: ModelCfg, section: str) -> str:
    """Detection, dense prediction and retention read multi-scale maps (:mod:`.multiscale`): the card's
    family (``resnet``, ``hierarchical``, ``plain``), read without weights; a backbone that offers none
    stops with one line before anything runs."""
    from .multiscale import backbone_kind, no_levels_message

    if cfg.zoo == "timm":
        kind = timm_pyramid_kind(cfg)
    else:
        with torch.device("meta"):
            kind = backbone_kind(build_arch(cfg.arch))
    if not kind:
        raise ConfigError(no_levels_message(cfg, section))
    return kind


def create_model(spec: str, *, zoo: str = "mini", device: str | torch.device | None = None) -> FeatureModel:
    """Build the frozen feature extractor for ``spec`` in eval mode (see :func:`get_model_cfg`)."""
    cfg = get_model_cfg(spec, zoo=zoo)
    if cfg.zoo == "timm":
        backbone = build_timm(cfg)
    else:
        backbone = build_arch(cfg.arch)
        state = _load_state(cfg)
        load_strict(backbone, state, cfg)
    model = FeatureModel(backbone, cfg, state_dict_fingerprint(backbone)).eval().requires_grad_(False)
    if device is not None:
        model = model.to(device)
    return model
