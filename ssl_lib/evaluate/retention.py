"""What frozen features retain about the image (reference/paper.md §6; the paper's §4.9, Table 9).

Two read-outs, scaled to the mini study:

- **Feature inversion** with a Deep Image Prior (Ulyanov et al. 2018, following Zhao et al. 2021):
  a small encoder-decoder :class:`SkipGenerator` maps fixed seeded noise to an image and is
  trained (Adam, lr 1e-3) until the backbone's last feature map, *before pooling*, matches that
  of the original (:func:`feature_map`: a ResNet's layer4, a hierarchical model's last stage, a
  ViT's last-block token grid as a map). The reconstruction shows what the features kept; it is scored with per-channel
  colour MSE (0-255 units, as in Table 9) and a perceptual distance (:mod:`.perceptual`: LPIPS or
  its offline stand-in).
- **Attribute probes**: cross-validated R² of a ridge read-out of continuous image attributes
  (mean colour, saturation, object position) from pooled features, to ask "colour or layout?".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.func import functional_call, vmap

from .._registry import Registry
from ..exceptions import ConfigError
from .perceptual import (  # re-exported: retention's public API predates the split
    LPIPS_HINT, PERCEPTUAL_NETS, RandomPerceptualDistance, _as_images, perceptual_distance, perceptual_net,
)

__all__ = [
    "DEFAULT_STEPS", "PAPER_STEPS", "PAPER_GENERATOR", "GENERATORS", "ALPHAS", "PERCEPTUAL_NETS", "LPIPS_HINT",
    "SkipGenerator", "RandomPerceptualDistance", "RetentionResult",
    "register_feature_map", "feature_map", "feature_map_kind", "invert", "colour_mse", "perceptual_net", "perceptual_distance",
    "retention_table", "attribute_probe", "image_attributes",
]

DEFAULT_STEPS = 300  # mini study, 32 px: ~3 s per image on one CPU thread (batch of 8); feature loss down ~98%
PAPER_STEPS = 3000  # the paper's iterations at 224 px
ALPHAS = np.logspace(-3, 3, 13)
CHANNELS = ("red", "green", "blue")

# --------------------------------------------------------------------------- feature maps

FeatureMapFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
_FEATURE_MAPS: dict[type, FeatureMapFn] = {}


def register_feature_map(backbone_type: type) -> Callable[[FeatureMapFn], FeatureMapFn]:
    """Teach :func:`feature_map` the pre-pooling output of a backbone class without ``forward_features``."""

    def decorator(fn: FeatureMapFn) -> FeatureMapFn:
        _FEATURE_MAPS[backbone_type] = fn
        return fn

    return decorator


@register_feature_map(torchvision.models.ResNet)
def _torchvision_resnet_layer4(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(backbone, name)(x)
    return x


def _token_grid(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ViT's last block as a map (B, C, H/p, W/p): its tokens after the final norm (what the pooled
    features read), prefix tokens (cls, registers) dropped, through timm's ``forward_intermediates``."""
    return backbone.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]


def _is_token_model(backbone: nn.Module) -> bool:
    return hasattr(backbone, "num_prefix_tokens") and hasattr(backbone, "forward_intermediates")


def _feature_map_fn(backbone: nn.Module) -> FeatureMapFn:
    for cls in type(backbone).__mro__:
        if cls in _FEATURE_MAPS:
            return _FEATURE_MAPS[cls]
    if _is_token_model(backbone):  # timm ViTs: forward_features gives tokens, not a map
        return _token_grid
    if hasattr(backbone, "forward_features"):  # timm: the unpooled last stage
        return lambda b, x: b.forward_features(x)
    known = ", ".join(c.__name__ for c in _FEATURE_MAPS)
    raise ConfigError(
        f"No pre-pooling feature map for backbone {type(backbone).__name__!r}. Known: {known} and any "
        "module with forward_features. Add one with @register_feature_map(YourBackbone)."
    )


def feature_map_kind(backbone: nn.Module) -> str:
    """What :func:`feature_map` reads from ``backbone``, in words (for the rows and the page)."""
    _feature_map_fn(backbone)  # unknown backbones: the one-line error
    return "token grid (prefix tokens dropped)" if _is_token_model(backbone) else "feature map"


def feature_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last feature map before pooling (mini ResNet: 256x2x2 at 32 px; ResNet-50: 2048x7x7 at 224 px;
    ConvNeXt: its last stage; a ViT: the last block's tokens after the final norm as a grid, 192x2x2
    for a ViT-Ti/16 at 32 px).

    ``model`` is a :class:`~ssl_lib.models.FeatureModel`; its normalisation is applied here, so
    ``images`` are floats in [0, 1]. Differentiable: wrap in ``torch.no_grad()`` for read-outs.
    """
    return _feature_map_fn(model.backbone)(model.backbone, model.normalize(images))


# --------------------------------------------------------------------------- inversion


def _conv_bn_act(c_in: int, c_out: int, k: int, *, downsample: bool = False) -> nn.Sequential:
    # track_running_stats=False: DIP always normalises with the current (single-image) statistics.
    layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2)] + ([nn.AvgPool2d(2)] if downsample else [])
    return nn.Sequential(*layers, nn.BatchNorm2d(c_out, track_running_stats=False), nn.LeakyReLU(0.2))


class _SkipLevel(nn.Module):
    """One scale: ``up(bn(cat(skip(x), upsample(deeper(down(x))))))``."""

    def __init__(self, c_in: int, channels: tuple[int, ...], kernels: tuple[int, ...], skip: int) -> None:
        super().__init__()
        c, k = channels[0], kernels[0]
        self.skip = _conv_bn_act(c_in, skip, 1)
        self.down = nn.Sequential(_conv_bn_act(c_in, c, k, downsample=True), _conv_bn_act(c, c, k))
        self.deeper = _SkipLevel(c, channels[1:], kernels[1:], skip) if len(channels) > 1 else None
        c_deep = channels[1] if self.deeper is not None else c
        self.bn = nn.BatchNorm2d(skip + c_deep, track_running_stats=False)
        self.up = nn.Sequential(_conv_bn_act(skip + c_deep, c, k), _conv_bn_act(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.deeper is not None:
            deep = self.deeper(deep)
        deep = F.interpolate(deep, scale_factor=2, mode="nearest")
        return self.up(self.bn(torch.cat([self.skip(x), deep], dim=1)))


class SkipGenerator(nn.Module):
    """The Deep Image Prior "skip" encoder-decoder, sized for 32 px by default.

    Per scale: a 1x1 skip branch (``skip_channels``), a down branch (conv k + 2x2 average pool,
    conv k), the next scale, nearest 2x upsampling, concat, conv k and a 1x1 conv; BatchNorm and
    LeakyReLU(0.2) after every conv, zero padding. A final 1x1 conv and a sigmoid give RGB in [0, 1].
    The paper's net (via ``jonahanton/SSL_medicalimaging``) is :data:`PAPER_GENERATOR`: six scales
    (16-128 channels, kernels 7-3) on 256 px noise cropped to 224. Here three scales (16, 32, 64;
    kernels 5, 3, 3) take 32 px to a 4x4 bottleneck, the same bottleneck the paper's net reaches.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64),
        kernel_sizes: tuple[int, ...] = (5, 3, 3),
        skip_channels: int = 4,
        input_depth: int = 32,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernel_sizes):
            raise ValueError(f"channels {channels} and kernel_sizes {kernel_sizes} need one entry per scale.")
        self.input_depth = input_depth
        self.scale = 2 ** len(channels)
        self.body = _SkipLevel(input_depth, tuple(channels), tuple(kernel_sizes), skip_channels)
        self.to_rgb = nn.Conv2d(channels[0], 3, 1)

    def noise(self, height: int, width: int, *, generator: torch.Generator) -> torch.Tensor:
        """DIP input: uniform noise x 0.1, rounded up to a multiple of the net's stride and at least
        two strides, so the bottleneck is 2x2 or more for its batch-norm (the output is cropped)."""
        h, w = (max(math.ceil(s / self.scale), 2) * self.scale for s in (height, width))
        return torch.rand(1, self.input_depth, h, w, generator=generator) * 0.1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.to_rgb(self.body(z)))


PAPER_GENERATOR = partial(SkipGenerator, channels=(16, 32, 64, 128, 128, 128), kernel_sizes=(7, 7, 5, 5, 3, 3))
# name -> zero-argument generator factory; the retention section picks one per study ("paper" at 224 px)
GENERATORS: Registry[Callable[[], nn.Module]] = Registry("inversion generator")
GENERATORS.add("mini", SkipGenerator)
GENERATORS.add("paper", PAPER_GENERATOR)


def _device_of(model: nn.Module) -> torch.device:
    """Where ``model`` lives (its first parameter or buffer; CPU for a module with neither)."""
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _seeded_generator(factory: Callable[[], nn.Module], height: int, width: int, seed: int):
    """Generator weights and noise drawn from ``seed`` alone; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory()
    z = net.noise(height, width, generator=torch.Generator().manual_seed(seed))
    return net, z


def invert(
    model: nn.Module,
    images,
    *,
    steps: int = DEFAULT_STEPS,
    lr: float = 1e-3,
    seed: int = 0,
    generator: Callable[[], nn.Module] = SkipGenerator,
) -> torch.Tensor:
    """Deep-Image-Prior reconstruction of ``images`` (B, 3, H, W) or (3, H, W) from their feature maps.

    Minimises ``MSE(feature_map(g(z)), feature_map(image))`` over the weights of g with Adam.
    Every image gets its *own* generator, all starting from the same seeded weights and noise,
    stacked and run with ``torch.func.vmap``: Adam is elementwise and the loss is a sum of
    per-image terms, so this equals B separate inversions (up to float rounding), and a result does
    not depend on which other images share the batch. (One shared generator over a batch of noise
    would couple the images through its weights; that is not the method.)

    ``generator`` is a zero-argument factory of a module with ``noise(height, width, *, generator)``
    (:class:`SkipGenerator`, or :data:`PAPER_GENERATOR` with ``steps=PAPER_STEPS`` at 224 px).
    ``steps=0`` returns the initial output. Runs on the model's device (the generator's start is
    drawn on the CPU, so it is the same everywhere). Returns floats in [0, 1], shaped like
    ``images``, on that device.
    """
    if model.training:
        raise ValueError("The model is in training mode, so inversion would update its BatchNorm statistics. "
                         "Call model.eval() first (create_model returns eval-mode models).")
    x, single = _as_images(images)
    x = x.to(_device_of(model))
    height, width = x.shape[-2:]
    with torch.no_grad():
        target = feature_map(model, x)
    net, z = _seeded_generator(generator, height, width, seed)
    net, z = net.to(x.device), z.to(x.device)
    params = {k: p.detach().expand(len(x), *p.shape).clone().requires_grad_() for k, p in net.named_parameters()}
    render = vmap(lambda p: functional_call(net, p, (z,))[0, :, :height, :width])
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(steps):
        loss = (feature_map(model, render(params)) - target).pow(2).flatten(1).mean(1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = render(params)
    return out[0] if single else out


# --------------------------------------------------------------------------- metrics


def colour_mse(original, reconstruction) -> np.ndarray:
    """Per-channel (R, G, B) pixel MSE on the 0-255 scale, the units of the paper's Table 9.

    Shape (B, 3) for batches, (3,) for single images. uint8 inputs are 0-255, floats [0, 1].
    """
    a, single = _as_images(original, torch.float64)
    b, _ = _as_images(reconstruction, torch.float64)
    a, b = a.cpu(), b.cpu()
    if a.shape != b.shape:
        raise ValueError(f"original {tuple(a.shape)} and reconstruction {tuple(b.shape)} differ in shape.")
    mse = ((a - b) * 255).pow(2).mean(dim=(2, 3)).numpy()
    return mse[0] if single else mse


# --------------------------------------------------------------------------- the table


class RetentionResult(NamedTuple):
    table: pd.DataFrame  # one row per image
    reconstructions: torch.Tensor  # (B, 3, H, W) in [0, 1], for plotting next to the originals


def retention_table(
    model: nn.Module,
    images,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    net: str | nn.Module = "random-vgg",
    generator: Callable[[], nn.Module] = SkipGenerator,
) -> RetentionResult:
    """Invert every image and score the reconstruction (Table 9's reconstruction columns).

    Columns: ``mse_red/green/blue`` (0-255 units), ``perceptual`` (with ``perceptual_net`` naming
    the network, so a random-net value is never read as LPIPS) and the feature-matching loss at
    the start and the end, ``feature_mse_start``/``feature_mse``, to check convergence.
    ``images`` must already be at the model's input size (e.g. through ``eval_transform``). Runs
    on the model's device; the reconstructions come back on the CPU.
    """
    x, _ = _as_images(images)
    x = x.to(_device_of(model))
    recon = invert(model, x, steps=steps, seed=seed, generator=generator)
    start = invert(model, x, steps=0, seed=seed, generator=generator)
    with torch.no_grad():
        target = feature_map(model, x)
        loss = {k: (feature_map(model, r) - target).pow(2).flatten(1).mean(1).cpu().numpy()
                for k, r in (("feature_mse_start", start), ("feature_mse", recon))}
    x, recon = x.cpu(), recon.cpu()
    mse = colour_mse(x, recon)
    table = pd.DataFrame({
        "image": np.arange(len(x)),
        **{f"mse_{c}": mse[:, i] for i, c in enumerate(CHANNELS)},
        "perceptual": perceptual_distance(x, recon, net=net),
        "perceptual_net": net if isinstance(net, str) else type(net).__name__,
        **loss,
        "model": getattr(getattr(model, "cfg", None), "qualified_name", type(model).__name__),
        "steps": steps,
        "seed": seed,
    })
    return RetentionResult(table, recon)


# --------------------------------------------------------------------------- attribute probes


def attribute_probe(features, targets, *, alphas: np.ndarray = ALPHAS, n_splits: int = 5, seed: int = 0) -> float:
    """Cross-validated R² of a ridge read-out of one continuous attribute from frozen features.

    Standardised features, ``RidgeCV`` choosing alpha inside each training fold (efficient
    leave-one-out), out-of-fold predictions from a seeded shuffled ``KFold`` pooled into one R².
    Near 1: the attribute is linearly decodable; near or below 0: no better than its mean.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"Expected features (N, D) and targets (N,), got {X.shape} and {y.shape}. "
                         "Probe one attribute at a time, e.g. image_attributes(images)['centroid_x'].")
    folds = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    return float(r2_score(y, cross_val_predict(probe, X, y, cv=folds)))


def image_attributes(images, *, top_fraction: float = 0.1) -> pd.DataFrame:
    """Colour and position attributes per image, all in [0, 1], for :func:`attribute_probe`.

    ``mean_red/green/blue``; ``saturation``, the mean HSV saturation ``(max - min) / max``;
    ``centroid_x``/``centroid_y`` (0 = left/top), where the object is: the centroid of the
    ``top_fraction`` of pixels farthest (Euclidean RGB) from the image's median colour, weighted by
    that distance so background pixels at distance 0 never count. NaN for a uniform image.
    """
    x = _as_images(images)[0].cpu()
    h, w = x.shape[-2:]
    means = x.mean(dim=(2, 3))
    top, bottom = x.amax(dim=1), x.amin(dim=1)
    saturation = torch.where(top > 0, (top - bottom) / top.clamp_min(1e-12), torch.zeros_like(top)).mean(dim=(1, 2))
    distance = (x - x.flatten(2).median(dim=2).values[..., None, None]).pow(2).sum(dim=1).sqrt().flatten(1)
    k = max(1, math.ceil(top_fraction * h * w))
    threshold = distance.topk(k, dim=1).values[:, -1:]
    weight = distance * (distance >= threshold)
    total = weight.sum(dim=1)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    centroid = {axis: torch.where(total > 0, (weight * grid.flatten()).sum(1) / total, torch.nan)
                for axis, grid in (("centroid_x", xs), ("centroid_y", ys))}
    return pd.DataFrame({
        **{f"mean_{c}": means[:, i].numpy() for i, c in enumerate(CHANNELS)},
        "saturation": saturation.numpy(),
        **{name: value.numpy() for name, value in centroid.items()},
    })
