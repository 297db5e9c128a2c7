"""Dense prediction datasets: semantic segmentation and surface normals, one registry.

Every task yields ``(image, target)`` pairs:

- ``image``: uint8 tensor (3, H, W), RGB.
- segmentation ``target``: int64 (H, W), class index ``0..K-1``, ``ignore_index`` (-1) where unlabelled.
- normals ``target``: float32 (3, H, W) unit vectors (x right, y up, z towards the camera, as the
  mini suite and the Ladický ground truth); an invalid pixel is the zero vector (see
  :func:`valid_normals`), so one tensor carries both the normal and its mask.

Tasks (:data:`DENSE_TASKS`):

- ``mini-scenes``: the mini suite's scene masks (0 = background is a class, 1..6 objects → 7 classes).
- ``mini-normals``: the mini suite's shaded height fields with their normal maps.
- ``ade20k``: ADE20K SceneParsing (``ADEChallengeData2016``), 150 classes; as the CSAIL toolkit,
  annotation 0 ("other") is ignored and 1..150 become 0..149. ``train`` = training (20,210 images),
  ``test`` = validation (2,000), the split the paper reports.
- ``nyuv2``: NYUv2 surface normals with the Ladický et al. ground truth, 795 train / 654 test, in
  the on-disk layout of :data:`NYUV2_LAYOUT` (there is no torchvision loader).

Paper datasets are read lazily from files. Training images are resized to a fixed square (shorter
side to ``image_size``, centre crop; labels and normals with nearest neighbour) so that they batch.
Test images (``full_resolution=True``) keep their aspect ratio (shorter side to ``image_size``, no
crop) and their targets stay at native size, so every labelled pixel is scored; they no longer
batch and are evaluated one at a time. The official codes train at random scales and test at several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .._registry import Registry, unknown_name_message
from ..exceptions import DataNotFoundError, UnknownNameError

__all__ = [
    "ADE20K_URL", "NYUV2_LAYOUT", "DenseTask", "DENSE_TASKS", "ArrayDenseDataset", "FileDenseDataset",
    "get_dense_task", "list_dense_tasks", "open_dense", "valid_normals", "decode_normals_png",
]

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
NYUV2_GT_URL = "https://dl.fbaipublicfiles.com/fair_self_supervision_benchmark/nyuv2_surfacenormal_metadata.zip"
NYUV2_LAYOUT = "nyuv2/{train,test}/rgb/<id>.png, nyuv2/{train,test}/normals/<id>.png [, nyuv2/{train,test}/mask/<id>.png]"
IGNORE_INDEX = -1


@dataclass(frozen=True)
class DenseTask:
    """A dense task: what it predicts, its classes, and how to open a split."""

    name: str
    kind: str  # "segmentation" | "normals"
    num_classes: int  # segmentation classes (normals: 3, the vector's components)
    open: Callable[..., Dataset]  # open(split, *, root, download, image_size, full_resolution) -> Dataset
    class_names: tuple[str, ...] = ()
    ignore_index: int = IGNORE_INDEX
    splits: tuple[str, ...] = ("train", "test")
    description: str = ""
    paper_analog: str = ""
    fingerprint: str = ""  # identifies the data content (generator version and seed, or the layout)


DENSE_TASKS: Registry[DenseTask] = Registry("dense dataset", hint="See ssl_lib.data.dense.list_dense_tasks().")


def valid_normals(target: torch.Tensor | np.ndarray, axis: int = 0):
    """Pixels whose normal is usable: a vector of length > 0.5 (invalid pixels are stored as 0)."""
    if isinstance(target, torch.Tensor):
        return target.norm(dim=axis) > 0.5
    return np.linalg.norm(target, axis=axis) > 0.5


# --------------------------------------------------------------------------------------------
# In-memory data (the mini suite)


class ArrayDenseDataset(Dataset):
    """Images (N, H, W, 3) uint8 and targets held in memory; ``images``/``targets`` are public so
    that a frozen encoder can run over whole batches without a DataLoader."""

    def __init__(self, images: np.ndarray, targets: np.ndarray) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        targets = torch.from_numpy(np.ascontiguousarray(targets))
        self.targets = targets.permute(0, 3, 1, 2).float() if targets.ndim == 4 else targets.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.targets[index]

    def take(self, n: int) -> ArrayDenseDataset:
        """The first ``n`` items (a view, no copy)."""
        out = ArrayDenseDataset.__new__(ArrayDenseDataset)
        out.images, out.targets = self.images[:n], self.targets[:n]
        return out


def _open_mini(name: str, split: str, *, root=None, download: bool = False, image_size=None,
               full_resolution: bool = False) -> Dataset:
    from . import mini

    arrays = mini.load(name, split)
    target = arrays["masks"].astype(np.int64) if "masks" in arrays else arrays["normals"]
    return ArrayDenseDataset(arrays["images"], target)


# --------------------------------------------------------------------------------------------
# Files on disk (the paper's datasets)


def _shorter_side(image: torch.Tensor, size: int | None, mode: str) -> torch.Tensor:
    """Shorter side to ``size``, aspect ratio kept (None, or already that size: unchanged)."""
    h, w = image.shape[-2:]
    if size is None or min(h, w) == size:
        return image.float()
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    smooth = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    return F.interpolate(image[None].float(), size=(nh, nw), mode=mode, **smooth)[0]


def _square(image: torch.Tensor, size: int | None, mode: str) -> torch.Tensor:
    """Shorter side to ``size`` then centre crop ``size`` x ``size`` (None: unchanged)."""
    if size is None:
        return image
    x = _shorter_side(image, size, mode)
    nh, nw = x.shape[-2:]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top : top + size, left : left + size]


class FileDenseDataset(Dataset):
    """Pairs of files read on demand by ``read(image_path, target_path, extra_path)``.

    ``full_resolution`` (test splits): the image's shorter side goes to ``image_size`` without a
    crop and the target keeps its native size, so scoring covers every labelled pixel (a centre
    crop drops a quarter of a 640 x 480 NYUv2 image).
    """

    def __init__(self, items: list[tuple[Path, Path, Path | None]], read: Callable, image_size: int | None,
                 full_resolution: bool = False) -> None:
        self.items, self.read, self.image_size, self.full_resolution = items, read, image_size, full_resolution

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image, target = self.read(*self.items[index])
        image = torch.from_numpy(np.asarray(image, np.uint8).copy()).permute(2, 0, 1)
        resize = _shorter_side if self.full_resolution else _square
        image = resize(image, self.image_size, "bilinear").round().clamp(0, 255).to(torch.uint8)
        target = torch.from_numpy(target)
        if self.full_resolution:
            return image, target.long() if target.ndim == 2 else target.permute(2, 0, 1).float()
        if target.ndim == 2:
            target = _square(target[None], self.image_size, "nearest")[0].long()
        else:
            target = _square(target.permute(2, 0, 1), self.image_size, "nearest").float()
        return image, target


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _read_ade(image_path: Path, label_path: Path, _unused) -> tuple[np.ndarray, np.ndarray]:
    """ADE20K: 0 = other (ignored), 1..150 → 0..149 (the CSAIL toolkit's ``label - 1``)."""
    with Image.open(label_path) as im:
        label = np.asarray(im, dtype=np.int64)
    return _rgb(image_path), label - 1


def decode_normals_png(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(n + 1) / 2 * 255`` PNG → unit normals (H, W, 3) float32; invalid pixels → 0.

    A pixel is invalid where ``mask`` is 0 or where the decoded vector is shorter than 0.5 (e.g.
    the encoding of the zero vector, (128, 128, 128)); valid vectors are renormalised.
    """
    n = rgb.astype(np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = norm > 0.5
    if mask is not None:
        valid &= (mask > 0)[..., None]
    return np.where(valid, n / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def _read_nyu(image_path: Path, normals_path: Path, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    mask = None
    if mask_path is not None and mask_path.exists():
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L"))
    return _rgb(image_path), decode_normals_png(_rgb(normals_path), mask)


def _root(root) -> Path:
    from ..paths import data_dir

    return Path(root) if root else data_dir()


def _open_ade20k(split: str, *, root=None, download: bool = False, image_size: int | None = None,
                 full_resolution: bool = False) -> Dataset:
    base = _root(root) / "ADEChallengeData2016"
    folder = {"train": "training", "test": "validation"}[split]
    images_dir, labels_dir = base / "images" / folder, base / "annotations" / folder
    if not images_dir.is_dir() and download:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(ADE20K_URL, download_root=str(base.parent))
    images = sorted(images_dir.glob("*.jpg")) if images_dir.is_dir() else []
    if not images:
        raise DataNotFoundError(
            f"ADE20K ({split}) not found: expected {images_dir}/*.jpg and {labels_dir}/*.png. "
            f"Pass download=True (-p download True) or unzip {ADE20K_URL} into {base.parent}."
        )
    items = [(p, labels_dir / f"{p.stem}.png", None) for p in images]
    missing = [str(t) for _, t, _ in items if not t.exists()]
    if missing:
        raise DataNotFoundError(
            f"ADE20K ({split}): {len(missing)} annotation(s) missing, e.g. {missing[0]}; re-extract the archive.")
    return FileDenseDataset(items, _read_ade, image_size, full_resolution)


def _open_nyuv2(split: str, *, root=None, download: bool = False, image_size: int | None = None,
                 full_resolution: bool = False) -> Dataset:
    """NYUv2 normals in :data:`NYUV2_LAYOUT`.

    To build it: download the 1449 labelled NYUv2 images and the Ladický ground truth
    (``all_normals.pklz`` with ``all_normals`` (1449, 480, 640, 3), ``all_valid_depth_masks`` and
    ``all_filenames``, plus ``trainlist.txt``/``testlist.txt``) from :data:`NYUV2_GT_URL`; for each
    image id of a split write ``rgb/<id>.png``, ``normals/<id>.png`` = ``round((n + 1) / 2 * 255)``
    as uint8 RGB (channels nx, ny, nz as stored) and ``mask/<id>.png`` = 255 where the depth is valid.
    """
    base = _root(root) / "nyuv2" / split
    rgb = sorted((base / "rgb").glob("*.png")) if (base / "rgb").is_dir() else []
    if not rgb:
        raise DataNotFoundError(
            f"NYUv2 normals ({split}) not found under {base}: expected {NYUV2_LAYOUT}. Build it from the 1449 "
            f"NYUv2 images and the Ladický ground truth in {NYUV2_GT_URL} (see ssl_lib.data.dense._open_nyuv2)."
        )
    items = [(p, base / "normals" / p.name, base / "mask" / p.name) for p in rgb]
    missing = [str(n) for _, n, _ in items if not n.exists()]
    if missing:
        raise DataNotFoundError(f"NYUv2 ({split}): {len(missing)} normal map(s) missing, e.g. {missing[0]}.")
    return FileDenseDataset(items, _read_nyu, image_size, full_resolution)


# --------------------------------------------------------------------------------------------
# The registry


def _register_mini() -> None:
    from .mini import MINI_TASKS, SCENE_CLASSES, SUITE_VERSION

    fp = f"mini-suite-v{SUITE_VERSION}-seed0"
    scenes, normals = MINI_TASKS["mini-scenes"], MINI_TASKS["mini-normals"]
    DENSE_TASKS.add("mini-scenes", DenseTask(
        "mini-scenes", "segmentation", len(SCENE_CLASSES) + 1, partial(_open_mini, "mini-scenes"),
        class_names=("background", *SCENE_CLASSES), splits=("train", "val", "test"),
        description=scenes.description + " Every pixel is labelled; background is a class.",
        paper_analog="ADE20K segmentation", fingerprint=fp,
    ))
    DENSE_TASKS.add("mini-normals", DenseTask(
        "mini-normals", "normals", 3, partial(_open_mini, "mini-normals"), class_names=("x", "y", "z"),
        splits=("train", "val", "test"), description=normals.description,
        paper_analog="NYUv2 surface normals", fingerprint=fp,
    ))


_register_mini()
DENSE_TASKS.add("ade20k", DenseTask(
    "ade20k", "segmentation", 150, _open_ade20k,
    description="ADE20K SceneParsing, 150 classes; 'other' (0) ignored; test = the 2000 validation images.",
    paper_analog="ade20k", fingerprint="ADEChallengeData2016",
))
DENSE_TASKS.add("nyuv2", DenseTask(
    "nyuv2", "normals", 3, _open_nyuv2, class_names=("x", "y", "z"),
    description="NYUv2 surface normals (Ladický et al. ground truth), 795 train / 654 test.",
    paper_analog="nyuv2", fingerprint="nyuv2-ladicky-png-v1",
))


def get_dense_task(name: str) -> DenseTask:
    return DENSE_TASKS.get(name)


def list_dense_tasks(kind: str | None = None) -> list[str]:
    return [n for n, t in DENSE_TASKS.items() if kind is None or t.kind == kind]


def open_dense(name: str, split: str, *, root=None, download: bool = False, image_size: int | None = None,
               full_resolution: bool = False) -> Dataset:
    """A split of a dense task as a torch ``Dataset`` of ``(image uint8 (3,H,W), target)``.

    ``full_resolution``: no centre crop and native-size targets (see :class:`FileDenseDataset`);
    in-memory data is native already.
    """
    task = get_dense_task(name)
    if split not in task.splits:
        raise UnknownNameError(unknown_name_message(f"split of {name}", split, list(task.splits)))
    return task.open(split, root=root, download=download, image_size=image_size, full_resolution=full_resolution)
