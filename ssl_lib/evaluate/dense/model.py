"""The dense model: the evaluated backbone as an encoder (weights checked bit for bit), a neck (a
plain ViT's simple feature pyramid; identity otherwise) and the UPerNet / PPM decoders of the
paper's two codebases."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..._registry import Registry
from ...exceptions import SSLLibError
from ...models import FeatureModel, multiscale
from ...models.multiscale import RESNET_STAGES as STAGES

__all__ = ["STAGES", "EncoderWeightsError", "check_encoder_weights", "DenseEncoder", "DECODERS", "PyramidPooling",
           "PPMDecoder", "UPerNetDecoder", "DenseModel"]

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


class DenseEncoder(nn.Module):
    """A copy of ``model``'s backbone (its own normalisation first) → its multi-scale maps
    (:func:`ssl_lib.models.multiscale`): a ResNet's layer1..layer4, a hierarchical timm model's last
    four stages, or a plain ViT's last-block token grid (its :meth:`neck` builds the pyramid).

    ``dilate`` names stages by their ResNet names (``layer2..layer4`` = levels 2-4 of any family).
    ``min_stride`` average-pools maps finer than that stride: a ResNet-50's layer1 is at stride 4,
    the mini ResNet's (3x3/2 stem, no max-pool) at 2, so ``min_stride=4`` gives UPerNet the paper's
    finest level (and output stride) and a map 4x cheaper to cache and decode.
    """

    def __init__(self, model: FeatureModel, dilate: tuple[str, ...] = (), min_stride: int = 1) -> None:
        super().__init__()
        self.trunk = multiscale(model, dilate=tuple(STAGES.index(s) for s in dilate), min_stride=min_stride,
                                section="dense")
        self.register_buffer("mean", model.mean.detach().clone(), persistent=False)
        self.register_buffer("std", model.std.detach().clone(), persistent=False)
        self.eval()  # a frozen encoder stays so; DenseModel.train() decides otherwise
        with torch.no_grad():
            probe = self(torch.zeros(2, 3, 64, 64, device=self.mean.device))
        self.channels = [m.shape[1] for m in probe]

    @property
    def backbone(self) -> nn.Module:
        """The backbone copy, its state-dict keys the model's (what the weight checks compare)."""
        return self.trunk.backbone

    def neck(self) -> nn.Module:
        """A fresh trainable neck: the four levels the decoder reads (``channels``, ``strides``)."""
        return self.trunk.neck()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float in [0, 1], (B, 3, H, W)."""
        return self.trunk((images - self.mean) / self.std)


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
    """The CSAIL ``ppm`` decoder: pyramid pooling on the last level (layer4), a 3x3 conv, dropout, a 1x1
    classifier."""

    def __init__(self, in_channels: list[int], num_out: int, width: int, pool_scales=(1, 2, 3, 6)) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], width, pool_scales)
        self.head = nn.Sequential(_cbr(self.ppm.out_channels, width, 3), nn.Dropout2d(0.1), nn.Conv2d(width, num_out, 1))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self.ppm(maps[-1]))


@DECODERS.register("upernet")
class UPerNetDecoder(nn.Module):
    """The CSAIL ``upernet`` decoder: PPM on the last level (layer4), FPN laterals with top-down
    addition and 3x3 output convs, all levels upsampled to the first level's size, concatenated, a
    3x3 fuse conv, a 1x1 classifier."""

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
    """Encoder + neck + decoder; logits at the input resolution. A frozen encoder stays in eval mode;
    the neck (a ViT's simple pyramid) always trains with the decoder."""

    def __init__(self, encoder: DenseEncoder, decoder: nn.Module, freeze: bool, neck: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder, self.freeze = encoder, decoder, freeze
        self.neck = neck if neck is not None else nn.Identity()
        # both ways explicitly: the encoder copies a FeatureModel, whose parameters do not require grad
        self.encoder.requires_grad_(not freeze)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Neck + decoder on the encoder's maps (cached maps train through this)."""
        return self.decoder(self.neck(maps))

    def train(self, mode: bool = True) -> DenseModel:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """At the decoder's own resolution (the first level's for UPerNet, the last's for PPM): training."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            maps = self.encoder(images)
        return self.decode(maps)

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


