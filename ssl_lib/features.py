"""Batched feature extraction with an on-disk, content-addressed cache.

The cache key covers everything that changes the features: the weights (a hash of the loaded
state dict, not the model's name), the dataset's content fingerprint, the split, the transform,
the layer and how the forward pass ran (device type, bf16 autocast on CUDA or fp32, the torch
minor version: :func:`extraction_mode`). A second request with the same key reads
``features.npy`` and does no forward pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data import check_split_size, eval_transform, get_dataset_spec, open_split, transform_cfg
from .models import FeatureModel
from .paths import cache_dir

__all__ = [
    "FORMAT_VERSION", "Features", "feature_cache_key", "extraction_mode", "extract_features", "get_features",
    "default_device",
]

FORMAT_VERSION = 1


@dataclass
class Features:
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int or (N, K) 0/1
    key: str
    from_cache: bool
    seconds: float  # extraction time (0 when read from the cache)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extraction_mode(device: torch.device | str | None = None) -> dict:
    """How :func:`extract_features` runs on ``device``: CUDA under bf16 autocast with channels_last,
    anything else in fp32. It enters the cache key (with torch's major.minor version, whose kernels
    can change the low bits), so features computed one way are never served to a run of the other."""
    device = torch.device(device) if device is not None else default_device()
    on_cuda = device.type == "cuda"
    return {
        "device": device.type,
        "autocast": "bfloat16" if on_cuda else "off",
        "channels_last": on_cuda,
        "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2]),
    }


def feature_cache_key(
    model: FeatureModel, dataset: str, split: str, layer: str = "pool", resize: str = "shorter",
    device: torch.device | str | None = None,
) -> str:
    """The features' identity; ``device`` is the one extraction runs on (default: CUDA when present)."""
    spec = get_dataset_spec(dataset)
    payload = {
        "weights": model.weights_hash,
        "arch": model.cfg.arch,
        "mean": list(model.cfg.mean),
        "std": list(model.cfg.std),
        "dataset": dataset,
        "data": spec.fingerprint,
        "split": split,
        "transform": transform_cfg(model.cfg, resize),
        "layer": layer,
        "mode": extraction_mode(device),
        "format": FORMAT_VERSION,
    }
    if (model.cfg.pooling, model.cfg.feature_layer, model.cfg.arch_kwargs) != ("avgpool", "layer4", {}):
        # how a timm model reads its features (the ResNet default is left out so existing keys stay valid)
        payload["adapter"] = {"pooling": model.cfg.pooling, "feature_layer": model.cfg.feature_layer,
                              "arch_kwargs": model.cfg.arch_kwargs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@torch.inference_mode()
def forward_batches(
    model: FeatureModel, batches: Iterable[torch.Tensor], *, device: torch.device | str | None = None,
    precision: str = "auto", transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The one forward path of the library: ``(N, D)`` float32 pooled features of image batches
    (float, [0, 1]), each moved to ``device`` and passed through ``transform`` there, run as
    :func:`extraction_mode` says. Sections (through :func:`extract_features`), the invariance and
    retention probes and the mini zoo's source probe all come through here.

    ``precision="fp32"`` turns autocast off even on CUDA (the invariance probe whitens features,
    which magnifies bf16 rounding).
    """
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision must be 'auto' or 'fp32', got {precision!r}")
    device = torch.device(device) if device is not None else default_device()
    mode = extraction_mode(device) if precision == "auto" else {"autocast": "off", "channels_last": False}
    autocast = getattr(torch, mode["autocast"]) if mode["autocast"] != "off" else None
    model = model.to(device).eval()
    if mode["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    out = []
    for images in batches:
        images = images.to(device, non_blocking=True)
        if transform is not None:
            images = transform(images)
        if mode["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            out.append(model(images).float().cpu())
    if not out:
        raise ValueError("no images to extract features from: the dataset is empty")
    return torch.cat(out)


def extract_features(
    model: FeatureModel,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    desc: str = "features",
    progress: bool = True,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features and labels of every item in ``dataset``, in order (:func:`forward_batches`)."""
    device = torch.device(device) if device is not None else default_device()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    labels = []

    def images():
        for batch, targets in tqdm(loader, desc=desc, disable=not progress, leave=False, mininterval=1.0):
            labels.append(torch.as_tensor(targets))
            yield batch

    try:
        feats = forward_batches(model, images(), device=device, precision=precision)
    except ValueError:
        raise ValueError(f"{desc}: the dataset is empty") from None
    return feats.numpy(), torch.cat(labels).numpy()


def _read_cache(path: Path, key: str) -> Features | None:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        features = np.load(path / "features.npy")
        labels = np.load(path / "labels.npy")
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key or len(features) != manifest.get("n") or len(labels) != len(features):
        return None
    return Features(features, labels, key, from_cache=True, seconds=0.0)


def _write_cache(path: Path, key: str, features: np.ndarray, labels: np.ndarray, meta: dict) -> None:
    """Write into a temporary sibling directory, then rename it into place (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.save(tmp / "features.npy", features)
        np.save(tmp / "labels.npy", labels)
        (tmp / "manifest.json").write_text(json.dumps({"key": key, "n": len(features), **meta}, indent=1))
        if path.exists():  # a stale or corrupt entry: replace it
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def get_features(
    model: FeatureModel,
    dataset: str,
    split: str,
    *,
    root: str | None = None,
    download: bool = False,
    use_cache: bool = True,
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    resize: str = "shorter",
    accept_sizes: bool = False,
) -> Features:
    """Features of one on-disk split, from the cache when the key matches.

    ``resize`` picks the evaluation resize (:data:`ssl_lib.data.transforms.RESIZES`). A paper
    dataset's split size is checked against the canonical one, cached or not, unless ``accept_sizes``.
    """
    key = feature_cache_key(model, dataset, split, resize=resize, device=device)
    path = cache_dir("features") / key
    if use_cache and (hit := _read_cache(path, key)) is not None:
        check_split_size(get_dataset_spec(dataset), split, len(hit.labels), accept=accept_sizes, where="(cached features)")
        return hit
    data = open_split(dataset, split, transform=eval_transform(model.cfg, resize), root=root, download=download,
                      accept_sizes=accept_sizes)
    start = time.perf_counter()
    features, labels = extract_features(
        model, data, batch_size=batch_size, num_workers=num_workers, device=device,
        desc=f"{model.cfg.name} · {dataset}/{split}", progress=progress,
    )
    seconds = time.perf_counter() - start
    if use_cache:
        meta = {"model": model.cfg.qualified_name, "dataset": dataset, "split": split, "seconds": seconds,
                "mode": extraction_mode(device)}
        _write_cache(path, key, features, labels, meta)
    return Features(features, labels, key, from_cache=False, seconds=seconds)
