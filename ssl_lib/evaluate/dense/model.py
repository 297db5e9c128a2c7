"""The dense model: the evaluated backbone as an encoder (weights checked bit for bit) and the
UPerNet / PPM decoders of the paper's two codebases."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..._registry import Registry
from ...exceptions import ConfigError, SSLLibError
from ...models import FeatureModel

__all__ = ["STAGES", "EncoderWeightsError", "check_encoder_weights", "DenseEncoder", "DECODERS", "PyramidPooling",
           "PPMDecoder", "UPerNetDecoder", "DenseModel"]

STAGES = ("layer1", "layer2", "layer3", "layer4")

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


