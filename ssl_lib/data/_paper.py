"""The paper's many-shot datasets (reference/paper.md §2.1) through torchvision loaders.

Split names are the paper's: ``train``/``val``/``test`` where an official validation split
exists (Aircraft, DTD, Flowers, VOC2007), otherwise ``train``/``test`` and validation is the
seeded 20% carve of ``train``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset

from ..exceptions import DataNotFoundError
from ._spec import DatasetSpec

__all__ = ["paper_specs", "VOC_CLASSES", "FileListDataset"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
_SPLITS_REPO = "https://github.com/linusericsson/ssl-transfer"


class FileListDataset(Dataset):
    """Images listed by relative path with integer labels (Caltech-101 and SUN397 split files)."""

    def __init__(self, root: Path, files: list[str], labels: list[int], transform=None) -> None:
        self.root, self.files, self.labels, self.transform = Path(root), files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        image = Image.open(self.root / self.files[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class VOCMultiLabel(Dataset):
    """VOC2007 classification: a 20-d 0/1 target per image from the detection annotations.

    As in the paper's code only ``target == 1`` is positive: a class whose every instance in an
    image is marked difficult (label 0 in ImageSets/Main) counts as negative.
    """

    def __init__(self, root: Path, split: str, transform=None, download: bool = False) -> None:
        self.voc = tvd.VOCDetection(str(root), year="2007", image_set=split, download=download)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int):
        image, annotation = self.voc[index]
        objects = annotation["annotation"]["object"]
        target = torch.zeros(len(VOC_CLASSES), dtype=torch.int64)
        for obj in objects if isinstance(objects, list) else [objects]:
            if obj.get("difficult", "0") == "0":
                target[VOC_CLASSES.index(obj["name"])] = 1
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def _read_split_file(path: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    files = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return files, [classes.index(f.split("/")[0]) for f in files]


def _caltech101(split: str, root: Path, transform, download: bool) -> Dataset:
    base = root / "caltech101" / "101_ObjectCategories"
    split_file = root / "caltech101" / "caltech101-splits" / f"{split}.txt"
    if not split_file.exists():
        raise FileNotFoundError(
            f"{split_file} (the paper's split; copy caltech101-splits/ from {_SPLITS_REPO})"
        )
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())  # 102, with BACKGROUND_Google
    files, labels = _read_split_file(split_file, classes)
    return FileListDataset(base, files, labels, transform)


def _sun397(split: str, root: Path, transform, download: bool) -> Dataset:
    base = root / "SUN397"
    listing = base / "Partitions" / ("Training_01.txt" if split == "train" else "Testing_01.txt")
    classes_file = base / "ClassName.txt"
    classes = [c.strip().lstrip("/") for c in classes_file.read_text().splitlines() if c.strip()]
    files = [line.strip().lstrip("/") for line in listing.read_text().splitlines() if line.strip()]
    labels = [classes.index(f.rsplit("/", 1)[0]) for f in files]
    return FileListDataset(base, files, labels, transform)


def _tv(cls, split_arg: dict, split: str, root: Path, transform, download: bool, **kwargs) -> Dataset:
    return cls(str(root), transform=transform, download=download, **split_arg[split], **kwargs)


_TV = {
    "aircraft": (partial(_tv, tvd.FGVCAircraft, {s: {"split": s} for s in ("train", "val", "test")}, annotation_level="variant"),
                 100, "mean_per_class", ("train", "val", "test"), "FGVC Aircraft 2013b, variants."),
    "caltech101": (_caltech101, 102, "mean_per_class", ("train", "test"), "Caltech-101 incl. BACKGROUND_Google, the paper's 30-per-class split."),
    "cars": (partial(_tv, tvd.StanfordCars, {s: {"split": s} for s in ("train", "test")}),
             196, "top1", ("train", "test"), "Stanford Cars (manual download: place the devkit under <root>/stanford_cars)."),
    "cifar10": (partial(_tv, tvd.CIFAR10, {"train": {"train": True}, "test": {"train": False}}),
                10, "top1", ("train", "test"), "CIFAR-10, upsampled to 224 px."),
    "cifar100": (partial(_tv, tvd.CIFAR100, {"train": {"train": True}, "test": {"train": False}}),
                 100, "top1", ("train", "test"), "CIFAR-100, upsampled to 224 px."),
    "dtd": (partial(_tv, tvd.DTD, {s: {"split": s} for s in ("train", "val", "test")}, partition=1),
            47, "top1", ("train", "val", "test"), "Describable Textures, partition 1."),
    "flowers": (partial(_tv, tvd.Flowers102, {s: {"split": s} for s in ("train", "val", "test")}),
                102, "mean_per_class", ("train", "val", "test"), "Oxford Flowers-102."),
    "food": (partial(_tv, tvd.Food101, {s: {"split": s} for s in ("train", "test")}),
             101, "top1", ("train", "test"), "Food-101."),
    "pets": (partial(_tv, tvd.OxfordIIITPet, {"train": {"split": "trainval"}, "test": {"split": "test"}}),
             37, "mean_per_class", ("train", "test"), "Oxford-IIIT Pets (trainval as train)."),
    "sun397": (_sun397, 397, "top1", ("train", "test"), "SUN397, partition 1 (Training_01 / Testing_01)."),
    "voc2007": (lambda split, root, transform, download: VOCMultiLabel(root, split, transform, download),
                20, "map11", ("train", "val", "test"), "Pascal VOC2007 classification, 20 binary classifiers."),
}


def _open(name: str, split: str, *, transform=None, root=None, download: bool = False) -> Dataset:
    from ..paths import data_dir

    root = Path(root) if root else data_dir()
    builder = _TV[name][0]
    try:
        return builder(split, root, transform, download)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        hint = "pass download=True (or -p download True)" if name not in ("caltech101", "sun397", "cars") else "see the README for the manual download"
        raise DataNotFoundError(
            f"Dataset {name!r} ({split}) not found under {root}: {str(err).splitlines()[0]}. Put it there or {hint}."
        ) from None


def paper_specs() -> dict[str, DatasetSpec]:
    return {
        name: DatasetSpec(
            name=name, zoo="paper", kind="multilabel" if metric == "map11" else "classification",
            num_classes=n, metric=metric, splits=splits, open=partial(_open, name),
            description=desc, paper_analog=name, fingerprint=name,
        )
        for name, (_, n, metric, splits, desc) in _TV.items()
    }


