"""The paper's many-shot datasets (reference/paper.md §2.1) in their real on-disk layouts.

Split names are the paper's: ``train``/``val``/``test`` where an official validation split
exists (Aircraft, DTD, Flowers, VOC2007), otherwise ``train``/``test`` and validation is the
seeded 20% carve of ``train``. Torchvision's loaders are used where they match the paper's split
(they also download with ``download=True``); Caltech-101 (the paper's own split lists), SUN397
(partition 1 of the official ``Partitions``) and VOC2007 classification (``ImageSets/Main``
per-class lists) are read here. The CD-FSL few-shot datasets live in :mod:`._cdfsl`.

Every location is relative to the data root (``$SSL_LIB_DATA`` or ``<cache>/data``, or the
``data_root`` parameter). A missing dataset raises :class:`DataNotFoundError` with one line that
says where the files go and how to get them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset

from .._registry import Registry
from ..exceptions import BadDataError, ConfigError, DataNotFoundError
from ._spec import DatasetSpec

__all__ = [
    "PAPER_DATA", "PaperData", "paper_specs", "VOC_CLASSES", "FileListDataset", "VOC2007Classification",
    "CALTECH_SPLITS_URL", "SUN397_PARTITIONS_URL", "LOADER_VERSION", "SPLIT_SIZES",
]

LOADER_VERSION = 2  # enters the feature-cache fingerprint: bump when a loader's labels or order change

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# The list the paper's numbers were produced with (3060 train lines, 2416 unique images; issue #10).
CALTECH_SPLITS_URL = (
    "https://github.com/linusericsson/ssl-transfer/tree/5fbb1eb06f5bb69ef40426410f9e83602a04f04e/caltech101-splits"
)
SUN397_PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"


@dataclass(frozen=True)
class PaperData:
    """How to open one of the paper's datasets, and what a user does when it is missing.

    ``open(split, root, transform, download)`` returns a torch ``Dataset`` of (image, label).
    ``torchvision_download``: ``download=True`` fetches (part of) it. ``manual``: the steps for
    what torchvision cannot fetch ('' when it fetches everything). ``sizes``: the canonical image
    count of each split (empty where not known for sure); ``size_hint``: what is likely wrong
    with a copy whose counts differ.
    """

    open: Callable[[str, Path, Callable | None, bool], Dataset]
    num_classes: int
    metric: str
    splits: tuple[str, ...]
    description: str
    where: str
    torchvision_download: bool = True
    manual: str = ""
    kind: str = "classification"
    sizes: tuple[tuple[str, int], ...] = ()
    size_hint: str = ""


PAPER_DATA: Registry[PaperData] = Registry("paper dataset")


class FileListDataset(Dataset):
    """Images listed by path with integer labels (Caltech-101, SUN397 and the CD-FSL csv files).

    ``loader`` opens one image (default: PIL, converted to RGB); ``classes`` names the labels.
    """

    def __init__(
        self, root: Path, files: Sequence[str], labels: Sequence[int], transform=None, *,
        classes: Sequence[str] = (), loader: Callable[[Path], Image.Image] | None = None,
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.root, self.files, self.labels = Path(root), list(files), [int(y) for y in labels]
        self.transform, self.classes = transform, list(classes)
        self.loader = loader or (lambda path: Image.open(path).convert("RGB"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path = self.root / self.files[index]
        try:
            image = self.loader(path)
        except (OSError, SyntaxError, ValueError) as err:  # PIL: unidentified, truncated, broken PNG
            raise BadDataError(
                f"Cannot read image {path}: {(str(err).splitlines() or [type(err).__name__])[0]}. Remove or replace it "
                "(for a folder: tree, `python -m ssl_lib datasets --check folder:<path>` lists every unreadable file)."
            ) from None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class VOC2007Classification(Dataset):
    """VOC2007 classification from ``ImageSets/Main/<class>_<split>.txt``: a 20-d 0/1 target.

    As in the paper's code only flag ``1`` is positive: ``0`` (the class appears only as
    "difficult" objects) and ``-1`` are both negative. Images in the order of ``<split>.txt``.
    """

    def __init__(self, root: Path, split: str, transform=None, download: bool = False) -> None:
        voc = Path(root) / "VOCdevkit" / "VOC2007"
        main = voc / "ImageSets" / "Main"
        if download and not (main / f"{split}.txt").exists():
            tvd.VOCDetection(str(root), year="2007", image_set=split, download=True)
        ids = [line.split()[0] for line in _lines(main / f"{split}.txt")]
        position = {image_id: i for i, image_id in enumerate(ids)}
        targets = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.int64)
        for c, name in enumerate(VOC_CLASSES):
            for line in _lines(main / f"{name}_{split}.txt"):
                image_id, flag = line.split()
                if image_id not in position:
                    raise ConfigError(f"{main / f'{name}_{split}.txt'} lists image {image_id}, which {split}.txt lacks.")
                targets[position[image_id], c] = int(flag) == 1
        self.images = [voc / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
        self.targets = torch.from_numpy(targets)
        self.classes = list(VOC_CLASSES)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.open(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def _lines(path: Path) -> list[str]:
    """Non-empty lines, whatever the line endings (the fixed Caltech list has CRLF)."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _caltech101(split: str, root: Path, transform, download: bool) -> Dataset:
    """The paper's 30-per-class lists, read as given: with the original list the train split keeps
    its repeated lines (the paper's numbers); the 2023 fix (ssl-transfer 416913f) has 2416 lines."""
    base = root / "caltech101"
    images = base / "101_ObjectCategories"
    if download and not images.is_dir():
        tvd.Caltech101(str(root), download=True)  # images only (BACKGROUND_Google is extracted too)
    if not images.is_dir():
        raise FileNotFoundError(f"{images} is missing")
    split_file = base / "caltech101-splits" / f"{split}.txt"
    if not split_file.exists():
        raise DataNotFoundError(
            f"Caltech-101 split list {split_file} is missing: copy caltech101-splits/train.txt and test.txt "
            f"from {CALTECH_SPLITS_URL} into {split_file.parent}/ (the paper's 102-class split)."
        )
    folders = sorted(p.name for p in images.iterdir() if p.is_dir())  # 102 with BACKGROUND_Google
    files, labels, names = [], [], {}
    for line in _lines(split_file):
        path, *label = line.split()
        cls = path.split("/")[0]
        labels.append(int(label[0]) if label else folders.index(cls))
        names[labels[-1]] = cls
        files.append(path)
    classes = [names.get(i, f"<class {i}>") for i in range(max(names) + 1)] if names else []
    return FileListDataset(images, files, labels, transform, classes=classes)


def _sun397(split: str, root: Path, transform, download: bool) -> Dataset:
    """Partition 1; the label is the image's class folder (``/a/abbey/sun_x.jpg`` → ``a/abbey``).

    The paper's code instead takes the first class name (sorted) that is a *substring* of the
    path, which merges e.g. ``barn`` into ``bar``; see the report."""
    base = root / "SUN397"
    if download and not base.is_dir():
        tvd.SUN397(str(root), download=True)  # images and ClassName.txt; the partitions are separate
    if not (base / "ClassName.txt").exists():
        raise FileNotFoundError(f"{base / 'ClassName.txt'} is missing")
    name = "Training_01.txt" if split == "train" else "Testing_01.txt"
    listing = next((p for p in (base / "Partitions" / name, base / name) if p.exists()), None)
    if listing is None:
        raise DataNotFoundError(
            f"SUN397 partition file {base / 'Partitions' / name} is missing: unzip {SUN397_PARTITIONS_URL} "
            f"into {base}/ (the paper uses partition 01)."
        )
    class_dirs = [c.lstrip("/") for c in _lines(base / "ClassName.txt")]
    index = {c: i for i, c in enumerate(class_dirs)}
    files = [line.lstrip("/") for line in _lines(listing)]
    try:
        labels = [index[f.rsplit("/", 1)[0]] for f in files]
    except KeyError as err:
        raise ConfigError(f"{listing} names class folder {err.args[0]!r}, which {base / 'ClassName.txt'} lacks.") from None
    return FileListDataset(base, files, labels, transform, classes=[c.split("/", 1)[1] for c in class_dirs])


def _voc2007(split: str, root: Path, transform, download: bool) -> Dataset:
    return VOC2007Classification(root, split, transform, download)


def _tv(cls, split_arg: dict, split: str, root: Path, transform, download: bool, **kwargs) -> Dataset:
    return cls(str(root), transform=transform, download=download, **split_arg[split], **kwargs)


def _imagenet(split: str, root: Path, transform, download: bool) -> Dataset:
    """torchvision's ImageNet (it has no download): the devkit's class names, val/<wnid>/ folders."""
    return tvd.ImageNet(str(root / "imagenet"), split=split, transform=transform)


def _split_kw(*splits: str, key: str = "split") -> dict[str, dict]:
    return {s: {key: s} for s in splits}


_TRAIN_TEST_BOOL = {"train": {"train": True}, "test": {"train": False}}
_CARS_MANUAL = (
    "Manual download: the original https://ai.stanford.edu/~jkrause/cars/car_dataset.html is offline; take a mirror "
    "(e.g. https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset plus the devkit and "
    "cars_test_annos_withlabels.mat) and put devkit/ (cars_meta.mat, cars_train_annos.mat), cars_train/, cars_test/ and "
    "cars_test_annos_withlabels.mat in <root>/stanford_cars/."
)
_CALTECH_MANUAL = f"The paper's split lists are a manual download: caltech101-splits/{{train,test}}.txt from {CALTECH_SPLITS_URL} into <root>/caltech101/caltech101-splits/."
_IMAGENET_MANUAL = (
    "ImageNet is a manual download (https://image-net.org/download, after accepting its terms): put "
    "ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_val.tar in <root>/imagenet/ (torchvision unpacks them on first "
    "use), or an already prepared imagenet/meta.bin and imagenet/val/<wnid>/*.JPEG."
)
_SUN_MANUAL = f"The partition files are a manual download: unzip {SUN397_PARTITIONS_URL} into <root>/SUN397/."

# Canonical split sizes (reference/paper.md §2.1 and torchvision's dataset docs) and, for a copy
# whose counts differ, what is most likely wrong with it.
SPLIT_SIZES: dict[str, tuple[dict[str, int], str]] = {
    "aircraft": ({"train": 3334, "val": 3333, "test": 3333},
                 "the split lists are not the fgvc-aircraft-2013b release's images_variant_{train,val,test}.txt (torchvision "
                 "downloads that release)."),
    "caltech101": ({"train": 3060, "test": 6728},
                   "the split lists: a train list of 2416 lines is the 2023 de-duplicated list (ssl-transfer 416913f); the paper's "
                   f"numbers used the original 3060-line list with repeats: {CALTECH_SPLITS_URL}."),
    "cars": ({"train": 8144, "test": 8041},
             "a mirror of the offline Stanford site that lacks images (copies with 8143/8040 circulate); use the "
             "devkit's cars_train_annos.mat and cars_test_annos_withlabels.mat with the full cars_train/ and cars_test/."),
    "cifar10": ({"train": 50000, "test": 10000}, "the copy is not the python version from cs.toronto.edu; re-download with download=True."),
    "cifar100": ({"train": 50000, "test": 10000}, "the copy is not the python version from cs.toronto.edu; re-download with download=True."),
    "dtd": ({"train": 1880, "val": 1880, "test": 1880},
            "the lists are not partition 1 (labels/train1.txt, val1.txt, test1.txt) of dtd-r1.0.1; re-download with "
            "download=True."),
    "flowers": ({"train": 1020, "val": 1020, "test": 6149},
                "setid.mat is not the Oxford VGG release's (trnid/valid/tstid); re-download with download=True."),
    "food": ({"train": 75750, "test": 25250},
             "meta/train.json and meta/test.json are not the ETHZ food-101 release's; re-download with download=True."),
    "pets": ({"train": 3680, "test": 3669},
             "annotations/trainval.txt and test.txt are not the Oxford-IIIT Pet release's; re-download with download=True."),
    "sun397": ({"train": 19850, "test": 19850},
               f"the lists are not partition 01 (Training_01.txt / Testing_01.txt, 50 images per class) of "
               f"{SUN397_PARTITIONS_URL}."),
    "voc2007": ({"train": 2501, "val": 2510, "test": 4952},
                "ImageSets/Main is not VOC2007's (VOCtrainval_06-Nov-2007 and VOCtest_06-Nov-2007), e.g. VOC2012's lists."),
    "imagenet-val": ({"val": 50000}, "the folder is not the ILSVRC-2012 validation set (50 images for each of 1000 classes)."),
}

for _name, _entry in {
    "aircraft": PaperData(partial(_tv, tvd.FGVCAircraft, _split_kw("train", "val", "test"), annotation_level="variant"),
                          100, "mean_per_class", ("train", "val", "test"),
                          "FGVC Aircraft 2013b, 100 variants, official train/val/test.", "fgvc-aircraft-2013b"),
    "caltech101": PaperData(_caltech101, 102, "mean_per_class", ("train", "test"),
                            "Caltech-101 incl. BACKGROUND_Google (102 classes), the paper's 30-per-class train list.",
                            "caltech101", manual=_CALTECH_MANUAL),
    "cars": PaperData(partial(_tv, tvd.StanfordCars, _split_kw("train", "test")), 196, "top1", ("train", "test"),
                      "Stanford Cars, devkit train/test.", "stanford_cars", torchvision_download=False, manual=_CARS_MANUAL),
    "cifar10": PaperData(partial(_tv, tvd.CIFAR10, _TRAIN_TEST_BOOL), 10, "top1", ("train", "test"),
                         "CIFAR-10, upsampled from 32 px.", "cifar-10-batches-py"),
    "cifar100": PaperData(partial(_tv, tvd.CIFAR100, _TRAIN_TEST_BOOL), 100, "top1", ("train", "test"),
                          "CIFAR-100 (fine labels), upsampled from 32 px.", "cifar-100-python"),
    "dtd": PaperData(partial(_tv, tvd.DTD, _split_kw("train", "val", "test"), partition=1), 47, "top1",
                     ("train", "val", "test"), "Describable Textures, partition 1.", "dtd/dtd"),
    "flowers": PaperData(partial(_tv, tvd.Flowers102, _split_kw("train", "val", "test")), 102, "mean_per_class",
                         ("train", "val", "test"), "Oxford Flowers-102, setid.mat trnid/valid/tstid.", "flowers-102"),
    "food": PaperData(partial(_tv, tvd.Food101, _split_kw("train", "test")), 101, "top1", ("train", "test"),
                      "Food-101, meta/train.json and meta/test.json.", "food-101"),
    "pets": PaperData(partial(_tv, tvd.OxfordIIITPet, {"train": {"split": "trainval"}, "test": {"split": "test"}}),
                      37, "mean_per_class", ("train", "test"), "Oxford-IIIT Pets (trainval as train).", "oxford-iiit-pet"),
    "sun397": PaperData(_sun397, 397, "top1", ("train", "test"), "SUN397, partition 1 (Training_01 / Testing_01).",
                        "SUN397", manual=_SUN_MANUAL),
    # The source domain's images, for the study-level pages that probe features (invariances, attention)
    "imagenet-val": PaperData(_imagenet, 1000, "top1", ("val",),
                              "ImageNet ILSVRC-2012 validation images (50 per class).", "imagenet",
                              torchvision_download=False, manual=_IMAGENET_MANUAL),
    "voc2007": PaperData(_voc2007, 20, "map11", ("train", "val", "test"),
                         "Pascal VOC2007 classification, 20 binary classifiers (flag 1 positive).", "VOCdevkit/VOC2007",
                         kind="multilabel"),
}.items():
    PAPER_DATA.add(_name, replace(_entry, sizes=tuple(SPLIT_SIZES[_name][0].items()), size_hint=SPLIT_SIZES[_name][1]))


def _instruction(entry: PaperData, download: bool) -> str:
    steps = []
    if entry.torchvision_download and not download:
        steps.append("Pass download=True (`-p download True`, or `download: true` in the study) to fetch it with torchvision.")
    elif entry.torchvision_download:
        steps.append("The torchvision download did not complete; check the connection or place the files by hand.")
    if entry.manual:
        steps.append(entry.manual)
    return " ".join(steps)


def open_paper_split(name: str, split: str, *, transform=None, root=None, download: bool = False) -> Dataset:
    """Open one split; anything missing on disk becomes one :class:`DataNotFoundError` line."""
    from ..paths import data_dir

    entry = PAPER_DATA.get(name)
    root = Path(root).expanduser() if root else data_dir()
    try:
        return entry.open(split, root, transform, download and entry.torchvision_download)
    except DataNotFoundError:
        raise
    except (RuntimeError, OSError) as err:  # torchvision: RuntimeError("Dataset not found..."); files: OSError
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        reason = re.sub(r"\s*You can use download=True to download it\.?", "", reason).rstrip(". ")
        raise DataNotFoundError(
            f"Dataset {name!r} ({split}) not found under {root / entry.where}: {reason}. "
            f"{_instruction(entry, download).replace('<root>', str(root))}"
        ) from None


def paper_specs() -> dict[str, DatasetSpec]:
    """Cards for the many-shot datasets and the CD-FSL few-shot datasets."""
    from . import _cdfsl  # noqa: F401  (registers the CD-FSL entries in PAPER_DATA)

    return {
        name: DatasetSpec(
            name=name, zoo="paper", kind=entry.kind, num_classes=entry.num_classes, metric=entry.metric,
            splits=entry.splits, open=partial(open_paper_split, name),
            description=f"{entry.description} Under <data root>/{entry.where}.", paper_analog=name,
            fingerprint=f"paper:{name}:loader-v{LOADER_VERSION}", split_sizes=entry.sizes, size_hint=entry.size_hint,
        )
        for name, entry in PAPER_DATA.items()
    }
