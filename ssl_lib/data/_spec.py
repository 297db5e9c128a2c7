"""Dataset cards and the in-memory dataset used for generated data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DatasetSpec", "ArrayDataset", "METRICS", "VAL_FRACTION", "carve_validation", "split_roles"]

METRICS = ("top1", "mean_per_class", "map11")
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetSpec:
    """A downstream dataset: its splits, how validation is obtained, and its test metric.

    ``splits`` are the splits that exist on disk. When ``"val"`` is not among them, validation is
    the paper's carve: a seeded 20% of ``train`` (see :func:`carve_validation`).
    ``open`` builds a torch ``Dataset`` of ``(image, label)`` for one split given a transform.
    ``layout`` says which files play which role when that is not the split names' plain meaning
    (a ``folder:`` tree); ``split_sizes`` are the canonical image counts of a paper dataset's
    splits, and ``size_hint`` what is likely wrong with a copy whose counts differ.
    """

    name: str
    zoo: str  # "mini" | "paper" | "folder"
    kind: str  # "classification" | "multilabel" | "detection" | "normals"
    num_classes: int
    metric: str
    splits: tuple[str, ...]
    open: Callable[..., Dataset]
    description: str = ""
    paper_analog: str = ""
    fingerprint: str = ""  # identifies the data content (generator version and seed, or files' sizes and mtimes)
    layout: str = ""
    split_sizes: tuple[tuple[str, int], ...] = ()
    size_hint: str = ""

    @property
    def has_official_val(self) -> bool:
        return "val" in self.splits

    @property
    def multilabel(self) -> bool:
        return self.kind == "multilabel"


def split_roles(spec: DatasetSpec) -> str:
    """One line for a page: which split plays train, validation and test."""
    if spec.layout:
        return spec.layout
    if spec.splits == ("all",):
        return "all: one pool (few-shot only)"
    if "train" not in spec.splits or "test" not in spec.splits:
        return " · ".join(spec.splits)
    val = "val (official)" if spec.has_official_val else "val = seeded 20% carve of train"
    return f"train · {val} · test"


def carve_validation(n: int, fraction: float = VAL_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's validation carve: ``np.random.seed(seed); shuffle(indices)``, first 20% is val.

    Returns ``(train_idx, val_idx)``; identical to the official code's split for the same ``n``.
    """
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    n_val = int(np.floor(fraction * n))
    return np.sort(indices[n_val:]), np.sort(indices[:n_val])


class ArrayDataset(Dataset):
    """Images held as a uint8 (N, H, W, 3) array; the transform receives a CHW uint8 tensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.asarray(labels))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def __getitems__(self, indices: list[int]):
        """Batched fetch (used by DataLoader): one transform call for the whole batch.

        Only valid for deterministic transforms (the evaluation resize/crop), which apply the
        same operation to every image; per-image calls cost ~100x more on 32 px images. Random
        transforms are marked :class:`~ssl_lib.data.transforms.PerImage` and go image by image.
        """
        if getattr(self.transform, "per_image", False):
            return [self[i] for i in indices]
        images = self.images[indices]
        if self.transform is not None:
            images = self.transform(images)
        return list(zip(images, self.labels[indices]))
