"""Multi-scale maps for the dense-ish sections (detection, dense prediction): one small adapter per
backbone family, each a copy of the model's backbone mapping *normalised* images to its maps.

- ``resnet`` (torchvision and timm ResNets, every zoo backbone): the children up to ``layer4`` run in
  registration order and layer1..layer4 come back; dilation is the CSAIL ``_nostride_dilate``. This
  is the first version's path, unchanged.
- ``hierarchical`` (timm models whose levels halve in resolution: ConvNeXt, Swin, EfficientNet...):
  the last four levels of ``feature_info`` through timm's ``forward_intermediates``; dilation through
  timm's ``output_stride`` (the model rebuilt with it and loaded strictly).
- ``plain`` (timm ViTs, every block at the patch stride): the last block's token grid after the model's
  final norm, prefix tokens dropped, the position embedding resampled to each input's grid (the model
  rebuilt with timm's ``dynamic_img_size``; a 14 px-patch grid is resized to the stride-16 one). A
  ViTDet simple feature pyramid (:class:`SimplePyramid`, Li et al. 2022) makes strides 4-32 from it;
  it is trained, so it is the *neck* (:meth:`MultiScale.neck`) that goes with the decoder, and a frozen
  backbone's maps can still be cached. A ViT cannot dilate: a dilated level is built at the finer stride.

Each adapter exposes ``backbone`` (the copy, whose state-dict keys are the model's: the weights
checks compare tensor by tensor), the maps' ``channels`` and ``strides``, ``levels`` (the modules
read) and the stem / four-stage split of its parameters for detectron2's ``FREEZE_AT``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d, freeze_batch_norm_2d
from torchvision.ops.misc import FrozenBatchNorm2d

from ..exceptions import ConfigError

__all__ = ["RESNET_STEM", "RESNET_STAGES", "MultiScale", "ResNetStages", "TimmLevels", "LevelIdentity",
           "SimplePyramid", "backbone_kind", "multiscale", "frozen_batchnorm", "dilated_strides"]

RESNET_STEM = ("conv1", "bn1")
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")  # detectron2's res2..res5
PYRAMID_STRIDES = (4, 8, 16, 32)  # a plain ViT's simple pyramid (ViTDet)
PROBE = 64  # px: the side of the zero image that reads channels and strides


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


def dilated_strides(strides: tuple[int, ...] | list[int], dilate: tuple[int, ...]) -> list[int]:
    """Level strides when the levels in ``dilate`` (indices) keep the stride of the level before."""
    out: list[int] = []
    for i, stride in enumerate(strides):
        out.append(out[-1] if i in dilate and out else stride)
    return out


def backbone_kind(backbone: nn.Module) -> str:
    """``resnet``, ``hierarchical`` or ``plain`` (see the module docstring); ``""`` when the backbone
    offers no multi-scale maps (no ResNet stages, no timm ``feature_info`` with ``forward_intermediates``)."""
    children = {name for name, _ in backbone.named_children()}
    if set(RESNET_STEM + RESNET_STAGES) <= children:
        return "resnet"
    info = getattr(backbone, "feature_info", None)
    if not info or not hasattr(backbone, "forward_intermediates"):
        return ""
    reductions = [int(f["reduction"]) for f in info]
    if len(set(reductions)) == 1 and hasattr(backbone, "patch_embed"):
        return "plain"
    last = reductions[-4:]
    if len(last) == 4 and all(b == 2 * a for a, b in zip(last, last[1:])):
        return "hierarchical"
    return ""


def _stage_groups(names: list[str], groups: list[list[str]]) -> dict[str, int]:
    """Parameter name → -1 (stem: before the first level), 0..3 (the stage ending at that level;
    parameters between two levels join the later one) or 3 (after the last level: the final norm)."""
    def level(name: str) -> int | None:
        return next((i for i, g in enumerate(groups) if any(name == p or name.startswith(p + ".") for p in g)), None)

    match = [level(n) for n in names]
    first = next((j for j, m in enumerate(match) if m is not None), len(names))
    out = {}
    for j, name in enumerate(names):
        if match[j] is not None:
            out[name] = match[j]
        else:
            out[name] = -1 if j < first else next((m for m in match[j:] if m is not None), len(groups) - 1)
    return out


class LevelIdentity(nn.Module):
    """The neck of families whose four levels come as they are (ResNets, hierarchical): nothing trains."""

    def __init__(self, channels: list[int], strides: list[int]) -> None:
        super().__init__()
        self.channels, self.strides = list(channels), list(strides)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(maps)


def _branch(channels: int, scale: float) -> nn.Module:
    """ViTDet's per-level branch: k stride-2 deconvs halving the width (LayerNorm + GELU between) for
    a 2^k upsampling, identity at 1, max-pool for downsampling."""
    if scale < 1:
        return nn.MaxPool2d(round(1 / scale))
    layers: list[nn.Module] = []
    width = channels
    for k in range(round(math.log2(scale))):
        if k:
            layers += [LayerNorm2d(width), nn.GELU()]
        layers.append(nn.ConvTranspose2d(width, width // 2, 2, stride=2))
        width //= 2
    return nn.Sequential(*layers) if layers else nn.Identity()


class SimplePyramid(nn.Module):
    """ViTDet's simple feature pyramid: every level built from the last map alone (×4: two deconvs,
    ×2: one, ×1: identity, ×0.5: max-pool), widths ``C/4, C/2, C, C`` at strides 4, 8, 16, 32."""

    def __init__(self, channels: int, strides: list[int] | tuple[int, ...] = PYRAMID_STRIDES,
                 in_stride: int = 16) -> None:
        super().__init__()
        scales = [in_stride / s for s in strides]
        if not all(math.log2(s).is_integer() for s in scales):
            raise ConfigError(f"Pyramid strides {list(strides)} must be powers of two times the input's {in_stride}.")
        self.branches = nn.ModuleList(_branch(channels, s) for s in scales)
        self.channels = [channels // 2 ** round(math.log2(s)) if s > 1 else channels for s in scales]
        self.strides = list(strides)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(maps[-1]) for branch in self.branches]


class MultiScale(nn.Module):
    """A copy of a backbone: normalised images → its maps (``channels``, ``strides``, ``levels``).
    Maps finer than ``min_stride`` are average-pooled to it as they are made."""

    kind = ""
    min_stride = 1

    def _pool(self, m: torch.Tensor, width: int) -> torch.Tensor:
        pool = self.min_stride // max(width // m.shape[-1], 1)
        return F.avg_pool2d(m, pool) if pool > 1 else m

    def _probe(self) -> None:
        """Channels and strides from a zero image, in eval mode; every module keeps its own mode after."""
        ref = next(iter([*self.parameters(), *self.buffers()]))
        modes = {m: m.training for m in self.modules()}
        try:
            with torch.no_grad():
                maps = self.eval()(torch.zeros(1, 3, PROBE, PROBE, device=ref.device, dtype=ref.dtype))
        except (RuntimeError, AssertionError) as err:
            raise ConfigError(f"The {self.kind} backbone does not run on a {PROBE} px image "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:120]}).") from None
        finally:
            for module, mode in modes.items():
                module.training = mode
        self.channels = [int(m.shape[1]) for m in maps]
        self.strides = [PROBE // int(m.shape[-1]) for m in maps]

    @property
    def backbone(self) -> nn.Module:
        """The module whose state dict mirrors ``FeatureModel.backbone``'s, key for key."""
        raise NotImplementedError

    def stage_index(self) -> dict[str, int]:
        """Backbone parameter name → -1 (stem) or its stage 0..3."""
        raise NotImplementedError

    def neck(self) -> nn.Module:
        """A fresh trainable module turning these maps into the four pyramid levels."""
        return LevelIdentity(self.channels, self.strides)

    def freeze_at(self, at: int) -> None:
        """detectron2's ``FREEZE_AT``: 0 trains all; k >= 1 freezes the stem and the first k - 1 stages."""
        stages = self.stage_index()
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(stages[name] >= at - 1 if at >= 1 else True)

    def freeze_batchnorm(self) -> None:
        """detectron2's FrozenBN: batch-norm becomes a fixed affine map with the checkpoint's statistics."""
        raise NotImplementedError

    def info(self, neck: nn.Module) -> dict:
        """What the rows record: the family, the modules read and the levels the decoder gets."""
        return {"kind": self.kind, "levels": list(self.levels), "strides": list(neck.strides),
                "channels": list(neck.channels), "neck": type(neck).__name__}


class ResNetStages(MultiScale):
    """torchvision / timm ResNets: the children in registration order (the forward order of both)
    up to ``layer4``; layer1..layer4 returned. Dilated stages: stride 2 → 1 with dilated 3x3 convs."""

    kind = "resnet"

    def __init__(self, backbone: nn.Module, dilate: tuple[int, ...] = (), min_stride: int = 1) -> None:
        super().__init__()
        self.min_stride = min_stride
        for name, child in copy.deepcopy(backbone).named_children():
            self.add_module(name, child)
        names = list(self._modules)
        self.order = names[: names.index("layer4") + 1]
        self.training = backbone.training
        self.levels = list(RESNET_STAGES)
        dilation = 1
        for i, stage in enumerate(RESNET_STAGES):
            if i in dilate:
                dilation *= 2
                _nostride_dilate(getattr(self, stage), dilation)
        self._probe()

    @property
    def backbone(self) -> nn.Module:
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, width = [], x.shape[-1]
        for name in self.order:
            x = self._modules[name](x)
            if name in RESNET_STAGES:  # pooled here, in this order: the first version's gradients, bit for bit
                maps.append(self._pool(x, width))
        return maps

    def stage_index(self) -> dict[str, int]:
        group = {**{s: -1 for s in RESNET_STEM}, **{s: i for i, s in enumerate(RESNET_STAGES)}}
        return {f"{child}.{name}": group.get(child, len(RESNET_STAGES))
                for child, module in self.named_children() for name, _ in module.named_parameters()}

    def freeze_batchnorm(self) -> None:
        frozen_batchnorm(self)


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


def _rebuild(model, name: str, **kwargs) -> nn.Module:
    """The timm architecture of ``model`` (a FeatureModel) built with ``kwargs`` and loaded strictly
    with its weights (the same tensors: the checks then compare them bit for bit)."""
    import timm

    cfg = model.cfg
    ref = next(iter(model.backbone.parameters()))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            built = timm.create_model(cfg.arch, pretrained=False, num_classes=0, **{**cfg.arch_kwargs, **kwargs})
        built.load_state_dict(model.backbone.state_dict(), strict=True)
    except (TypeError, AssertionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"timm cannot rebuild {cfg.arch!r} with {kwargs} for {name} "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:120]}).") from None
    return built.to(device=ref.device, dtype=ref.dtype).eval().requires_grad_(False)


class TimmLevels(MultiScale):
    """timm models through ``forward_intermediates``: the last four levels of a hierarchical model, or
    a plain ViT's last-block token grid (final norm applied, prefix tokens dropped) at stride 16."""

    def __init__(self, model, kind: str, dilate: tuple[int, ...] = (), min_stride: int = 1) -> None:
        super().__init__()
        self.kind, self.min_stride = kind, min_stride
        source = model.backbone
        self.training = source.training
        modules = [f["module"] for f in source.feature_info]
        self.dilate = tuple(dilate)
        if kind == "plain":
            self.model = _rebuild(model, "a resizable token grid", dynamic_img_size=True, dynamic_img_pad=True)
            self.take, self.norm, self.levels = [len(modules) - 1], True, [modules[-1]]
            self.patch = int(source.feature_info[-1]["reduction"])
            self.groups = [list(g) for g in _quarters(modules)]
        else:
            natural = [int(f["reduction"]) for f in source.feature_info][-4:]
            wanted = dilated_strides(natural, self.dilate)
            if self.dilate and self.dilate != tuple(range(min(self.dilate), 4)):
                raise ConfigError(f"{model.cfg.name!r} dilates through timm's output_stride, so only the last levels "
                                  f"can be dilated (layer3+layer4 or layer4), not levels {list(self.dilate)}.")
            self.model = (_rebuild(model, "dilation", output_stride=wanted[-1]) if wanted[-1] != natural[-1]
                          else copy.deepcopy(source))
            self.take, self.norm, self.levels = 4, False, modules[-4:]
            self.groups = [[m] for m in modules[-4:]]
        self._probe()
        if kind != "plain" and self.strides != [max(w, min_stride) for w in wanted]:
            raise ConfigError(f"{model.cfg.name!r} gives levels at strides {self.strides}, expected {wanted}.")

    @property
    def backbone(self) -> nn.Module:
        return self.model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.model.forward_intermediates(x, indices=self.take, norm=self.norm, output_fmt="NCHW",
                                                intermediates_only=True)
        if self.kind == "plain" and self.patch != 16:  # e.g. 14 px patches: onto the stride-16 grid
            grid = (math.ceil(x.shape[-2] / 16), math.ceil(x.shape[-1] / 16))
            maps = [F.interpolate(m, size=grid, mode="bilinear", align_corners=False) for m in maps]
        return [self._pool(m, x.shape[-1]) for m in maps]

    def neck(self) -> nn.Module:
        if self.kind != "plain":
            return super().neck()
        strides = [max(s, self.min_stride) for s in dilated_strides(PYRAMID_STRIDES, self.dilate)]
        return SimplePyramid(self.channels[-1], strides, in_stride=self.strides[-1])

    def stage_index(self) -> dict[str, int]:
        return _stage_groups([n for n, _ in self.model.named_parameters()], self.groups)

    def freeze_batchnorm(self) -> None:
        self.model = freeze_batch_norm_2d(self.model)  # also timm's BatchNormAct2d, keeping its activation


def _quarters(modules: list[str]) -> list[list[str]]:
    """A plain ViT's blocks in four consecutive groups, the "stages" of ``FREEZE_AT``."""
    n = len(modules)
    return [modules[i * n // 4: (i + 1) * n // 4] for i in range(4)]


def multiscale(model, *, dilate: tuple[int, ...] = (), min_stride: int = 1,
               section: str = "this section") -> MultiScale:
    """The adapter of ``model`` (a :class:`~ssl_lib.models.FeatureModel`): a copy of its backbone.

    ``dilate`` lists levels (0..3) whose stride becomes dilation (ResNets: any of 1..3; hierarchical:
    the last ones, through timm's ``output_stride``; plain ViTs: the pyramid builds them finer).
    ``min_stride`` pools finer maps to that stride (the mini ResNet's stride-2 layer1 to 4).
    """
    kind = backbone_kind(model.backbone)
    if kind == "resnet":
        return ResNetStages(model.backbone, dilate, min_stride)
    if kind:
        return TimmLevels(model, kind, dilate, min_stride)
    raise ConfigError(no_levels_message(model.cfg, section))


def no_levels_message(cfg, section: str) -> str:
    return (f"The {section} section needs multi-scale feature maps; {cfg.qualified_name!r} ({cfg.arch}) has neither "
            "ResNet stages layer1..layer4 nor a timm feature_info pyramid with forward_intermediates. Use a ResNet, "
            "a hierarchical timm model (ConvNeXt, Swin, EfficientNet) or a plain timm ViT.")
