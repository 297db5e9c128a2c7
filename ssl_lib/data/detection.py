"""Detection datasets: a registry of ``name → DetectionDatasetSpec`` (mini scenes, Pascal VOC07+12).

Every split opens as a torch ``Dataset`` of ``(image, target)``: ``image`` a float tensor in
[0, 1] of shape (3, H, W); ``target`` a dict with ``boxes`` (n, 4) float x1y1x2y2 in pixel-edge
coordinates (x2/y2 exclusive: a box covering pixel columns 0..W-1 is ``[0, W]``), ``labels``
(n,) int64 in ``1..K`` (0 is the detector's background) and ``difficult`` (n,) bool.

Pascal VOC's XML stores 1-based inclusive pixel indices; as detectron2's ``load_voc_instances``
we subtract 1 from ``xmin``/``ymin`` only, which turns them into the same pixel-edge
coordinates. "Difficult" boxes are kept (detectron2 trains on them too); the evaluator ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .._registry import Registry, unknown_name_message
from ..exceptions import DataNotFoundError, UnknownNameError
from ._paper import VOC_CLASSES
from .mini import MINI_TASKS, SUITE_VERSION

__all__ = [
    "DETECTION_DATASETS", "DetectionDatasetSpec", "MiniScenes", "VOCBoxes", "collate", "list_detection_datasets",
    "get_detection_spec", "open_detection",
]


@dataclass(frozen=True)
class DetectionDatasetSpec:
    """A detection benchmark: class names (label ``i`` is ``classes[i - 1]``), splits and their roles.

    ``train_split`` is what the detector trains on, ``test_split`` what it is scored on (the paper:
    VOC07+12 trainval → VOC07 test). ``open(split, root, download)`` builds the Dataset.
    """

    name: str
    zoo: str  # "mini" | "paper"
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    train_split: str
    test_split: str
    open: Callable[..., Dataset]
    description: str = ""
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DETECTION_DATASETS: Registry[DetectionDatasetSpec] = Registry(
    "detection dataset", "See ssl_lib.data.detection.list_detection_datasets()."
)


class MiniScenes(Dataset):
    """The generated ``mini-scenes`` split (64 px, 1-4 objects; boxes already pixel-edge, exclusive)."""

    def __init__(self, split: str, seed: int = 0) -> None:
        from . import mini

        arrays = mini.load("mini-scenes", split, seed=seed)
        self.images = torch.from_numpy(np.ascontiguousarray(arrays["images"])).permute(0, 3, 1, 2)
        boxes = torch.from_numpy(arrays["boxes"]).float()
        labels = torch.from_numpy(arrays["box_labels"]).long()
        owner = arrays["box_image"]
        starts = np.searchsorted(owner, np.arange(len(self.images) + 1))  # box_image is sorted
        self.targets = [
            {"boxes": boxes[a:b], "labels": labels[a:b], "difficult": torch.zeros(b - a, dtype=torch.bool)}
            for a, b in zip(starts[:-1], starts[1:])
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index].float() / 255.0, self.targets[index]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


class VOCBoxes(Dataset):
    """One Pascal VOC year/image set through ``torchvision.datasets.VOCDetection``, as boxes."""

    def __init__(self, root: Path, year: str, image_set: str, download: bool = False) -> None:
        import torchvision.datasets as tvd

        self.voc = tvd.VOCDetection(str(root), year=year, image_set=image_set, download=download)

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int):
        from torchvision.transforms.v2 import functional as F

        image, annotation = self.voc[index]
        objects = _as_list(annotation["annotation"].get("object", []))
        boxes, labels, difficult = [], [], []
        for obj in objects:
            box = obj["bndbox"]
            x1, y1, x2, y2 = (float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])  # detectron2: 1-based inclusive → pixel edges
            labels.append(VOC_CLASSES.index(obj["name"].strip()) + 1)
            difficult.append(str(obj.get("difficult", "0")).strip() == "1")
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "difficult": torch.tensor(difficult, dtype=torch.bool),
        }
        return F.to_dtype(F.to_image(image.convert("RGB")), torch.float32, scale=True), target


def _open_mini(split: str, *, root=None, download: bool = False, seed: int = 0) -> Dataset:
    return MiniScenes(split, seed=seed)


_VOC_SETS = {"train": (("2007", "trainval"), ("2012", "trainval")), "test": (("2007", "test"),)}


def _open_voc(split: str, *, root=None, download: bool = False) -> Dataset:
    from ..paths import data_dir

    root = Path(root) if root else data_dir()
    parts = []
    for year, image_set in _VOC_SETS[split]:
        try:
            parts.append(VOCBoxes(root, year, image_set, download=download))
        except (RuntimeError, FileNotFoundError, OSError) as err:
            raise DataNotFoundError(
                f"Pascal VOC{year} {image_set} not found under {root / 'VOCdevkit' / f'VOC{year}'}: "
                f"{str(err).splitlines()[0]}. Put VOCdevkit/ there or pass download=True (-p download True)."
            ) from None
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


DETECTION_DATASETS.add("mini-scenes", DetectionDatasetSpec(
    name="mini-scenes", zoo="mini", classes=tuple(MINI_TASKS["mini-scenes"].class_names),
    splits=("train", "val", "test"), train_split="train", test_split="test", open=_open_mini,
    fingerprint=f"mini-suite-v{SUITE_VERSION}-seed0",
    description="Generated 64x64 cluttered scenes with 1-4 objects of 6 shape classes (boxes 10-33 px).",
))
DETECTION_DATASETS.add("voc07+12", DetectionDatasetSpec(
    name="voc07+12", zoo="paper", classes=VOC_CLASSES, splits=("train", "test"), train_split="train",
    test_split="test", open=_open_voc, fingerprint="voc07+12",
    description="Pascal VOC: train = VOC2007 trainval + VOC2012 trainval (16551 images), test = VOC2007 test (4952).",
))


def list_detection_datasets(zoo: str | None = None) -> list[str]:
    return [name for name, spec in DETECTION_DATASETS.items() if zoo is None or spec.zoo == zoo]


def get_detection_spec(name: str) -> DetectionDatasetSpec:
    """The card for ``name`` (an unknown name lists the known ones)."""
    return DETECTION_DATASETS.get(name)


def open_detection(name: str, split: str, *, root=None, download: bool = False) -> Dataset:
    """The ``(image, target)`` Dataset of one split of ``name``."""
    spec = get_detection_spec(name)
    if split not in spec.splits:
        raise UnknownNameError(unknown_name_message(f"split of {name}", split, list(spec.splits)))
    return spec.open(split, root=root, download=download)


def collate(batch: list) -> tuple[list, list]:
    """Detection batches stay lists: images differ in size and targets in box count."""
    images, targets = zip(*batch)
    return list(images), list(targets)
