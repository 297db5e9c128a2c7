"""The four CD-FSL few-shot datasets (reference/paper.md §2.2), laid out as IBM/cdfsl-benchmark reads them.

Few-shot episodes draw from every image, so each dataset has a single split, ``all``. Labels
follow the CD-FSL loaders: CropDiseases and EuroSAT are image folders (classes sorted); ISIC
takes the one-hot ground-truth column; ChestX keeps single-label images of 7 findings ("No
Finding" and Pneumonia excluded) and resizes them to 256x256 on load, as CD-FSL does.
Only EuroSAT can be downloaded by torchvision; the others say where to get them. Canonical sizes
are set where known for sure (EuroSAT RGB 27000, ISIC 2018 task 3 training 10015); CropDiseases'
Kaggle train folder and the CD-FSL ChestX selection have none here (their counts are not
documented in a source we checked), so their copies are not checked.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset

from ..exceptions import ConfigError
from ._paper import PAPER_DATA, FileListDataset, PaperData

__all__ = ["CHESTX_CLASSES", "ISIC_CLASSES", "CDFSL_DATASETS"]

CHESTX_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")
ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")  # the ground-truth csv's columns
CDFSL_DATASETS = ("cropdiseases", "eurosat", "isic", "chestx")
_SPLITS = ("all",)


def _cropdiseases(split: str, root: Path, transform, download: bool) -> Dataset:
    return tvd.ImageFolder(str(root / "CropDiseases" / "dataset" / "train"), transform=transform)


def _eurosat(split: str, root: Path, transform, download: bool) -> Dataset:
    return tvd.EuroSAT(str(root), transform=transform, download=download)  # <root>/eurosat/2750/<class>/


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if not rows:
        raise ConfigError(f"{path} is empty.")
    return rows[0], rows[1:]


def _isic(split: str, root: Path, transform, download: bool) -> Dataset:
    """ISIC 2018 task 3 training set: label = the column of the one-hot row (``argmax(row != 0)``)."""
    base = root / "ISIC"
    header, rows = _read_csv(base / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv")
    if len(header) != 1 + len(ISIC_CLASSES):
        raise ConfigError(f"ISIC ground truth has columns {header}; expected image + {list(ISIC_CLASSES)}.")
    onehot = np.array([[float(v) for v in row[1:]] for row in rows]).reshape(len(rows), len(ISIC_CLASSES))
    files = [f"{row[0]}.jpg" for row in rows]
    return FileListDataset(base / "ISIC2018_Task3_Training_Input", files, (onehot != 0).argmax(axis=1), transform,
                           classes=header[1:])


def _chestx_image_dirs(base: Path) -> dict[str, Path]:
    """Image name → folder: CD-FSL's ``images/`` or Kaggle's ``images_001/images/`` ... folders."""
    folders = [base / "images", *sorted(base.glob("images_*/images"))]
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    found.setdefault(entry.name, folder)
    if not found:
        raise FileNotFoundError(f"no images in {base / 'images'} (or {base}/images_*/images)")
    return found


def _chestx_loader(path: Path) -> Image.Image:
    """CD-FSL's ChestX loading: ``Image.open(p).resize((256, 256)).convert('RGB')`` (bicubic, as
    Pillow >= 7 defaults to and the paper's Pillow 7.1.2 did)."""
    with Image.open(path) as image:
        return image.resize((256, 256), Image.Resampling.BICUBIC).convert("RGB")


def _chestx(split: str, root: Path, transform, download: bool) -> Dataset:
    """ChestX-ray14's ``Data_Entry_2017.csv``: single-label images of the 7 CD-FSL findings."""
    base = root / "chestX"
    _, rows = _read_csv(base / "Data_Entry_2017.csv")
    index = {name: i for i, name in enumerate(CHESTX_CLASSES)}
    kept = [(row[0], index[row[1]]) for row in rows if "|" not in row[1] and row[1] in index]
    folders = _chestx_image_dirs(base)
    missing = [name for name, _ in kept if name not in folders]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed images are not on disk, e.g. {missing[0]}")
    files = [str(folders[name].relative_to(base) / name) for name, _ in kept]
    return FileListDataset(base, files, [label for _, label in kept], transform, classes=CHESTX_CLASSES,
                           loader=_chestx_loader)


_ROOT_HINT = "<root>"
for _name, _entry in {
    "cropdiseases": PaperData(
        _cropdiseases, 38, "top1", _SPLITS, "CD-FSL CropDiseases (Plant Disease), 38 classes, its train folder.",
        "CropDiseases/dataset/train", torchvision_download=False,
        manual=("Manual download from https://www.kaggle.com/saroz014/plant-disease (CD-FSL's 'Plant Disease'): "
                f"put its 38 train class folders in {_ROOT_HINT}/CropDiseases/dataset/train/."),
    ),
    "eurosat": PaperData(_eurosat, 10, "top1", _SPLITS, "CD-FSL EuroSAT (RGB), 10 classes.", "eurosat/2750",
                         sizes=(("all", 27000),),
                         size_hint=("the copy is not the RGB release (EuroSAT.zip, 2750/<class>/*.jpg), e.g. the 13-band "
                                    "EuroSATallBands.")),
    "isic": PaperData(
        _isic, 7, "top1", _SPLITS, "CD-FSL ISIC 2018 task 3 training set, 7 classes.", "ISIC",
        torchvision_download=False, sizes=(("all", 10015),),
        size_hint=("the ground-truth csv is not ISIC2018_Task3_Training_GroundTruth.csv (10015 rows; the task 3 "
                   "training set, HAM10000), e.g. the validation or test set's."),
        manual=("Manual download (ISIC 2018 task 3 training input and ground truth) from "
                f"https://challenge.isic-archive.com/data/#2018: put ISIC2018_Task3_Training_Input/ and "
                f"ISIC2018_Task3_Training_GroundTruth/ in {_ROOT_HINT}/ISIC/."),
    ),
    "chestx": PaperData(
        _chestx, 7, "top1", _SPLITS, "CD-FSL ChestX-ray8: 7 findings, single-label images, resized to 256 px.", "chestX",
        torchvision_download=False,
        manual=("Manual download from https://www.kaggle.com/nih-chest-xrays/data "
                f"(kaggle datasets download -d nih-chest-xrays/data): put Data_Entry_2017.csv and images/ "
                f"(or the images_0NN/images/ folders) in {_ROOT_HINT}/chestX/."),
    ),
}.items():
    PAPER_DATA.add(_name, _entry)
