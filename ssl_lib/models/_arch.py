"""Backbone architectures, built from timm/torchvision; each returns an ``nn.Module`` mapping
images to pooled features (no classifier head)."""

from __future__ import annotations

import torch.nn as nn
import torchvision
from timm.models.resnet import BasicBlock, ResNet

from .._registry import Registry

__all__ = ["ARCHS", "build_arch", "mini_resnet", "resnet50"]

ARCHS: Registry = Registry("architecture")

MINI_CHANNELS = (32, 64, 128, 256)


@ARCHS.register("mini_resnet")
def mini_resnet() -> nn.Module:
    """The mini zoo's backbone: a 4-stage ResNet (one BasicBlock per stage, 32-256 channels).

    Built for 32 px inputs: the 7x7/2 stem and its max-pool are replaced by one 3x3/2 conv, so
    the stages see 16, 16, 8 and 4 px and the last stage keeps a 2x2 map for dense read-outs.
    About 1.2M parameters (5 MB); 256-d pooled features.
    """
    model = ResNet(BasicBlock, (1, 1, 1, 1), channels=MINI_CHANNELS, num_classes=0)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.feature_dim = MINI_CHANNELS[-1]
    return model


@ARCHS.register("resnet50")
def resnet50() -> nn.Module:
    """torchvision ResNet-50 without ``fc``: the paper's backbone; 2048-d pooled features."""
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    model.feature_dim = 2048
    return model


def build_arch(name: str) -> nn.Module:
    return ARCHS.get(name)()
