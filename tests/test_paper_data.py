"""The paper's datasets on tiny stand-ins written in each dataset's real on-disk layout.

Each builder writes a few 8x8 images plus the real annotation/split files (Aircraft's
``images_variant_*.txt``, Flowers' ``.mat`` files, CIFAR's pickled batches, ...) and returns the
expected ``{split: (labels, class count)}``; every split is then opened through ``open_split``.
Torchvision checks md5 sums for CIFAR and Flowers: there (only) its ``check_integrity`` is
replaced by an existence check. Stand-ins are far smaller than the canonical splits, so they are
opened with ``accept_sizes=True``; the size check itself is tested on them below.
"""

import json
import pickle

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image

from ssl_lib.data import eval_transform, get_dataset_spec, list_datasets, open_split
from ssl_lib.data._cdfsl import CHESTX_CLASSES
from ssl_lib.data._paper import PAPER_DATA, VOC_CLASSES
from ssl_lib.exceptions import ConfigError, DataNotFoundError, SplitSizeError, UnknownNameError
from ssl_lib.models import get_model_cfg

PAPER_DATASETS = [
    "aircraft", "caltech101", "cars", "cifar10", "cifar100", "dtd", "flowers", "food", "pets", "sun397", "voc2007",
    "cropdiseases", "eurosat", "isic", "chestx", "imagenet-val",
]


def _image(path, value=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (8, 8) if mode == "RGB" else (12, 10)  # X-rays: grey and not square
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 7)).save(path)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _aircraft(root):
    base = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]  # names with spaces: "<id> <variant>" splits once
    _write(base / "variants.txt", "\n".join(variants) + "\n")
    splits = {"train": [0, 1, 2, 2], "val": [1, 0], "test": [2, 1, 0]}
    n = 0
    for split, labels in splits.items():
        lines = []
        for label in labels:
            n += 1
            _image(base / "images" / f"{n:07d}.jpg", n)
            lines.append(f"{n:07d} {variants[label]}")
        _write(base / f"images_variant_{split}.txt", "\n".join(lines) + "\n")
    return {s: (labels, 3) for s, labels in splits.items()}


def _caltech101(root):
    base = root / "caltech101"
    classes = ["BACKGROUND_Google", "Faces", "accordion"]  # sorted: upper case first, as the real list
    for c in classes:
        for k in (1, 2, 3):
            _image(base / "101_ObjectCategories" / c / f"image_{k:04d}.jpg", k * 20)
    # The paper's train list repeats lines (drawn with replacement); CRLF as in the 2023 list.
    train = ["BACKGROUND_Google/image_0001.jpg 0", "BACKGROUND_Google/image_0001.jpg 0", "Faces/image_0002.jpg 1",
             "accordion/image_0003.jpg 2"]
    test = ["BACKGROUND_Google/image_0002.jpg 0", "Faces/image_0001.jpg 1", "accordion/image_0001.jpg 2",
            "accordion/image_0002.jpg 2"]
    _write(base / "caltech101-splits" / "train.txt", "\r\n".join(train) + "\r\n")
    _write(base / "caltech101-splits" / "test.txt", "\n".join(test) + "\n")
    return {"train": ([0, 0, 1, 2], 3), "test": ([0, 1, 2, 2], 3)}


def _cars(root):
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat",
                {"class_names": np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)})
    fields = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    splits = {"train": [1, 0, 1], "test": [0, 0, 1]}
    for split, labels in splits.items():
        annotations = np.zeros(len(labels), dtype=fields)
        for i, label in enumerate(labels):
            annotations[i] = (0, 0, 7, 7, label + 1, f"{i + 1:05d}.jpg")  # classes are 1-based in the .mat
            _image(base / f"cars_{split}" / f"{i + 1:05d}.jpg", i)
        mat = base / "devkit" / "cars_train_annos.mat" if split == "train" else base / "cars_test_annos_withlabels.mat"
        sio.savemat(mat, {"annotations": annotations})
    return {s: (labels, 2) for s, labels in splits.items()}


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _cifar10(root):
    base = root / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    train = []
    for b in range(1, 6):
        labels = [b % 10, (3 * b) % 10]
        train += labels
        _pickle(base / f"data_batch_{b}", {"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "labels": labels})
    _pickle(base / "test_batch", {"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8), "labels": [9, 0, 4]})
    _pickle(base / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return {"train": (train, 10), "test": ([9, 0, 4], 10)}


def _cifar100(root):
    base = root / "cifar-100-python"
    rng = np.random.default_rng(1)
    _pickle(base / "train", {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "fine_labels": [99, 3, 3, 50],
                             "coarse_labels": [0, 1, 1, 2]})
    _pickle(base / "test", {"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "fine_labels": [7, 99],
                            "coarse_labels": [0, 0]})
    _pickle(base / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                            "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return {"train": ([99, 3, 3, 50], 100), "test": ([7, 99], 100)}


def _dtd(root, repeat=1):
    base = root / "dtd" / "dtd"
    classes = ["banded", "zigzagged"]
    splits = {"train": [0, 1, 1] * repeat, "val": [0, 1] * repeat, "test": [1, 0] * repeat}
    n = 0
    for split, labels in splits.items():
        lines = []
        for label in labels:
            n += 1
            name = f"{classes[label]}/{classes[label]}_{n:04d}.jpg"
            _image(base / "images" / name, n)
            lines.append(name)
        _write(base / "labels" / f"{split}1.txt", "\n".join(lines) + "\n")
        _write(base / "labels" / f"{split}2.txt", "\n".join(reversed(lines)) + "\n")  # another partition
    return {s: (labels, 2) for s, labels in splits.items()}


def _flowers(root):
    base = root / "flowers-102"
    labels = np.array([3, 1, 2, 1, 3, 2])  # 1-based, image_00001 ... image_00006
    for i in range(1, 7):
        _image(base / "jpg" / f"image_{i:05d}.jpg", i)
    sio.savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    sio.savemat(base / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]), "tstid": np.array([[5, 6]])})
    return {"train": ([2, 0], 102), "val": ([1, 0], 102), "test": ([2, 1], 102)}  # torchvision names all 102


def _food(root):
    base = root / "food-101"
    meta = {"train": {"apple_pie": ["apple_pie/1", "apple_pie/2"], "baby_back_ribs": ["baby_back_ribs/3"]},
            "test": {"apple_pie": ["apple_pie/4"], "baby_back_ribs": ["baby_back_ribs/5", "baby_back_ribs/6"]}}
    for split, entries in meta.items():
        _write(base / "meta" / f"{split}.json", json.dumps(entries))
        for items in entries.values():
            for item in items:
                _image(base / "images" / f"{item}.jpg", int(item[-1]))
    return {"train": ([0, 0, 1], 2), "test": ([0, 1, 1], 2)}


def _pets(root):
    base = root / "oxford-iiit-pet"
    rows = {"train": [("Abyssinian_1", 1, 1), ("american_bulldog_2", 2, 2), ("Abyssinian_3", 1, 1)],
            "test": [("american_bulldog_4", 2, 2), ("Abyssinian_5", 1, 1)]}
    for split, items in rows.items():
        name = "trainval" if split == "train" else "test"
        _write(base / "annotations" / f"{name}.txt", "".join(f"{i} {c} {s} 1\n" for i, c, s in items))
        for image_id, _, _ in items:
            _image(base / "images" / f"{image_id}.jpg", 3)
    return {"train": ([0, 1, 0], 2), "test": ([1, 0], 2)}


def _sun397(root):
    base = root / "SUN397"
    classes = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bar", "/b/barn"]
    _write(base / "ClassName.txt", "\n".join(classes) + "\n")
    # 'barn' contains 'bar': the label must come from the folder, not a substring match.
    train = ["/b/barn/sun_aaa.jpg", "/a/apartment_building/outdoor/sun_bbb.jpg", "/b/bar/sun_ccc.jpg"]
    test = ["/a/abbey/sun_ddd.jpg", "/b/barn/sun_eee.jpg"]
    for line in train + test + ["/a/abbey/sun_unlisted.jpg"]:
        _image(base / line.lstrip("/"), 9)
    _write(base / "Partitions" / "Training_01.txt", "\n".join(train) + "\n")
    _write(base / "Partitions" / "Testing_01.txt", "\n".join(test) + "\n")
    _write(base / "Partitions" / "Training_02.txt", "/a/abbey/sun_unlisted.jpg\n")
    return {"train": ([3, 1, 2], 4), "test": ([0, 3], 4)}


def _voc2007(root):
    voc = root / "VOCdevkit" / "VOC2007"
    ids = {"train": ["000005", "000007"], "val": ["000009"], "test": ["000001", "000002"]}
    # (split, image) → {class: flag}; flag 0 = only "difficult" objects of that class
    flags = {"000005": {"chair": 1, "person": 0}, "000007": {"car": 1, "dog": 1}, "000009": {"horse": 1},
             "000001": {"person": 1, "dog": 0}, "000002": {"tvmonitor": 1}}
    for split, image_ids in ids.items():
        _write(voc / "ImageSets" / "Main" / f"{split}.txt", "\n".join(image_ids) + "\n")
        for cls in VOC_CLASSES:
            lines = [f"{i} {flags[i].get(cls, -1):>2d}" for i in image_ids]  # the real files right-align flags
            _write(voc / "ImageSets" / "Main" / f"{cls}_{split}.txt", "\n".join(lines) + "\n")
        for image_id in image_ids:
            _image(voc / "JPEGImages" / f"{image_id}.jpg", 5)
    expected = {}
    for split, image_ids in ids.items():
        target = np.zeros((len(image_ids), 20), dtype=np.int64)
        for row, image_id in enumerate(image_ids):
            for cls, flag in flags[image_id].items():
                target[row, VOC_CLASSES.index(cls)] = flag == 1
        expected[split] = (target, 20)
    return expected


def _cropdiseases(root):
    base = root / "CropDiseases" / "dataset" / "train"
    classes = ["Apple___Apple_scab", "Apple___healthy", "Tomato___Late_blight"]
    labels = [0, 0, 1, 2, 2, 2]
    for i, label in enumerate(labels):
        _image(base / classes[label] / f"img{i}.JPG", i)
    return {"all": (labels, 3)}


def _eurosat(root):
    base = root / "eurosat" / "2750"
    labels = [0, 1, 1, 2]
    for i, label in enumerate(labels):
        _image(base / ["AnnualCrop", "Forest", "SeaLake"][label] / f"x_{i}.jpg", i)
    return {"all": (labels, 3)}


def _isic(root):
    base = root / "ISIC"
    rows = [("ISIC_0024306", 1), ("ISIC_0024307", 1), ("ISIC_0024308", 0), ("ISIC_0024309", 6), ("ISIC_0024310", 3)]
    header = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    lines = [header] + [f"{name}," + ",".join("1.0" if c == label else "0.0" for c in range(7)) for name, label in rows]
    _write(base / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv", "\n".join(lines) + "\n")
    for name, _ in rows:
        _image(base / "ISIC2018_Task3_Training_Input" / f"{name}.jpg", 4)
    return {"all": ([label for _, label in rows], 7)}


def _chestx(root):
    base = root / "chestX"
    rows = [("00000001_000.png", "Cardiomegaly"), ("00000001_001.png", "Cardiomegaly|Emphysema"),
            ("00000002_000.png", "No Finding"), ("00000003_000.png", "Pneumonia"), ("00000004_000.png", "Mass"),
            ("00000005_000.png", "Pneumothorax"), ("00000006_000.png", "Hernia"), ("00000007_000.png", "Atelectasis")]
    header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position," \
             "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    lines = [header] + [f"{name},{labels},0,1,58,M,PA,2682,2749,0.143,0.143" for name, labels in rows]
    _write(base / "Data_Entry_2017.csv", "\n".join(lines) + "\n")
    for k, (name, _) in enumerate(rows):  # Kaggle's layout: images_001/images/, images_002/images/
        _image(base / f"images_00{1 + k % 2}" / "images" / name, 40 * k % 255, mode="L")
    index = {c: i for i, c in enumerate(CHESTX_CLASSES)}
    return {"all": ([index["Cardiomegaly"], index["Mass"], index["Pneumothorax"], index["Atelectasis"]], 7)}


def _imagenet_val(root):
    """torchvision's prepared layout: meta.bin (wnid -> class names, val wnids) and val/<wnid>/."""
    base = root / "imagenet"
    wnids = ["n01440764", "n01443537"]
    base.mkdir(parents=True)
    torch.save(({w: (f"class {w}",) for w in wnids}, [wnids[0], wnids[1], wnids[1]]), base / "meta.bin")
    labels = [0, 1, 1]
    for i, label in enumerate(labels):
        _image(base / "val" / wnids[label] / f"ILSVRC2012_val_{i:08d}.JPEG", i)
    return {"val": (labels, 2)}


BUILDERS = {name: globals()[f"_{name.replace('-', '_')}"] for name in PAPER_DATASETS}


@pytest.fixture(autouse=True)
def _no_md5_for_stand_ins(monkeypatch):
    """CIFAR and Flowers compare md5 sums of the real files; stand-ins only need to exist."""
    import os

    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.flowers102 as flowers

    for module in (cifar, flowers):
        monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_every_paper_dataset_has_a_stand_in_and_the_papers_card():
    assert sorted(list_datasets(zoo="paper")) == sorted(PAPER_DATASETS)
    expected = {  # reference/paper.md §2.1-2.2: classes, metric, on-disk splits
        "aircraft": (100, "mean_per_class", ("train", "val", "test")),
        "caltech101": (102, "mean_per_class", ("train", "test")),
        "cars": (196, "top1", ("train", "test")),
        "cifar10": (10, "top1", ("train", "test")),
        "cifar100": (100, "top1", ("train", "test")),
        "dtd": (47, "top1", ("train", "val", "test")),
        "flowers": (102, "mean_per_class", ("train", "val", "test")),
        "food": (101, "top1", ("train", "test")),
        "pets": (37, "mean_per_class", ("train", "test")),
        "sun397": (397, "top1", ("train", "test")),
        "voc2007": (20, "map11", ("train", "val", "test")),
        "cropdiseases": (38, "top1", ("all",)),
        "eurosat": (10, "top1", ("all",)),
        "isic": (7, "top1", ("all",)),
        "chestx": (7, "top1", ("all",)),
        "imagenet-val": (1000, "top1", ("val",)),
    }
    for name, (classes, metric, splits) in expected.items():
        spec = get_dataset_spec(name)
        assert (spec.num_classes, spec.metric, spec.splits) == (classes, metric, splits), name
        assert spec.kind == ("multilabel" if name == "voc2007" else "classification")
    assert CHESTX_CLASSES == ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_stand_in_splits_open_with_the_right_labels(name, tmp_path):
    expected = BUILDERS[name](tmp_path)
    for split, (labels, n_classes) in expected.items():
        data = open_split(name, split, root=tmp_path, accept_sizes=True)
        assert len(data) == len(labels), (name, split)
        got = [data[i][1] for i in range(len(data))]
        if name == "voc2007":
            np.testing.assert_array_equal(torch.stack(got).numpy(), labels)
        else:
            assert [int(y) for y in got] == list(labels), (name, split)
        assert len(data.classes) == n_classes, (name, split)
        image = data[0][0]
        assert isinstance(image, Image.Image) and image.mode == "RGB"


def test_loaders_apply_the_transform_and_chestx_is_resized_like_cdfsl(tmp_path):
    _chestx(tmp_path)
    raw = open_split("chestx", "all", root=tmp_path)
    assert raw[0][0].size == (256, 256)  # CD-FSL resizes every X-ray to 256x256 before the transform
    cfg = get_model_cfg("byol", zoo="paper")
    data = open_split("chestx", "all", root=tmp_path, transform=eval_transform(cfg))
    x, y = data[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    gray = x.numpy()
    np.testing.assert_allclose(gray[0], gray[1])  # a grey X-ray becomes three equal channels


def test_caltech_keeps_the_papers_repeated_train_lines(tmp_path):
    _caltech101(tmp_path)
    train = open_split("caltech101", "train", root=tmp_path, accept_sizes=True)
    assert train.files[:2] == ["BACKGROUND_Google/image_0001.jpg"] * 2
    assert train.classes == ["BACKGROUND_Google", "Faces", "accordion"]


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_a_missing_dataset_is_one_line_with_what_to_do(name, tmp_path):
    entry = PAPER_DATA.get(name)
    split = get_dataset_spec(name).splits[0]
    with pytest.raises(DataNotFoundError) as info:
        open_split(name, split, root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and name in message
    assert ("download=True" in message) == entry.torchvision_download
    if entry.manual:
        assert "http" in message and "<root>" not in message


def test_half_present_datasets_name_the_missing_manual_part(tmp_path):
    _caltech101(tmp_path)
    (tmp_path / "caltech101" / "caltech101-splits" / "test.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"caltech101-splits/test\.txt is missing: copy .*5fbb1eb0"):
        open_split("caltech101", "test", root=tmp_path)
    _sun397(tmp_path)
    (tmp_path / "SUN397" / "Partitions" / "Testing_01.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"Testing_01\.txt is missing: unzip https://vision\.princeton\.edu/.*Partitions\.zip"):
        open_split("sun397", "test", root=tmp_path)
    with pytest.raises(UnknownNameError, match="Known split of sun397s: train, test"):
        open_split("sun397", "val", root=tmp_path)


CANONICAL_SIZES = {  # reference/paper.md §2 and torchvision's dataset docs
    "aircraft": {"train": 3334, "val": 3333, "test": 3333},
    "caltech101": {"train": 3060, "test": 6728},  # the paper's list: 3060 lines, 2416 unique images
    "cars": {"train": 8144, "test": 8041},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
    "dtd": {"train": 1880, "val": 1880, "test": 1880},
    "flowers": {"train": 1020, "val": 1020, "test": 6149},
    "food": {"train": 75750, "test": 25250},
    "pets": {"train": 3680, "test": 3669},
    "sun397": {"train": 19850, "test": 19850},
    "voc2007": {"train": 2501, "val": 2510, "test": 4952},
    "imagenet-val": {"val": 50000},
    "eurosat": {"all": 27000},
    "isic": {"all": 10015},
    "cropdiseases": {},  # not known for sure: not checked
    "chestx": {},
}


def test_every_paper_card_carries_its_canonical_split_sizes():
    assert sorted(CANONICAL_SIZES) == sorted(PAPER_DATASETS)
    for name, sizes in CANONICAL_SIZES.items():
        spec = get_dataset_spec(name)
        assert dict(spec.split_sizes) == sizes, name
        assert set(sizes) <= set(spec.splits), name
        assert bool(spec.size_hint) == bool(sizes), name


@pytest.mark.parametrize("name", [n for n, sizes in CANONICAL_SIZES.items() if sizes])
def test_a_copy_with_other_split_sizes_stops_with_expected_vs_found(name, tmp_path):
    expected = BUILDERS[name](tmp_path)
    split = next(iter(expected))
    with pytest.raises(SplitSizeError) as info:
        open_split(name, split, root=tmp_path)
    message = str(info.value)
    found, canonical = len(expected[split][0]), CANONICAL_SIZES[name][split]
    assert "\n" not in message and f"has {found} images" in message and f"canonical split has {canonical}" in message
    assert get_dataset_spec(name).size_hint in message and f"accept_split_sizes {name}" in message


def test_the_size_message_names_the_likely_wrong_list_or_mirror(tmp_path):
    _caltech101(tmp_path)
    with pytest.raises(SplitSizeError, match=r"2416 lines is the 2023 de-duplicated list \(ssl-transfer 416913f\)"):
        open_split("caltech101", "train", root=tmp_path)
    _cars(tmp_path)
    with pytest.raises(SplitSizeError, match=r"mirror .* 8143/8040"):
        open_split("cars", "test", root=tmp_path)


def test_cached_features_of_a_copy_are_checked_too(tmp_path, monkeypatch, random_mini_model):
    from ssl_lib.features import get_features

    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path / "cache"))
    _dtd(tmp_path)
    first = get_features(random_mini_model, "dtd", "val", root=tmp_path, accept_sizes=True, progress=False)
    with pytest.raises(SplitSizeError, match="cached features"):
        get_features(random_mini_model, "dtd", "val", root=tmp_path, progress=False)
    again = get_features(random_mini_model, "dtd", "val", root=tmp_path, accept_sizes=True, progress=False)
    assert again.from_cache and again.key == first.key


def _dtd_study(tmp_path, model_spec):
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "t", "zoo": "mini", "models": [model_spec],
                                     "sections": {"linear": {"datasets": ["dtd"]}}}))
    return str(study)


def test_accepting_a_mismatch_is_a_parameter_recorded_in_the_rows(tmp_path, monkeypatch, random_mini_spec):
    from ssl_lib.results import read_results
    from ssl_lib.sections import linear

    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path / "cache"))
    _dtd(tmp_path, repeat=3)  # calibration's 5 folds need 5 test images
    base = dict(study=_dtd_study(tmp_path, random_mini_spec), model=random_mini_spec, n_boot=0,
                data_root=str(tmp_path), results_path=str(tmp_path / "results.csv"))
    monkeypatch.setattr(linear, "create_model", lambda *a, **k: pytest.fail("the check must come before any work"))
    with pytest.raises(SplitSizeError, match="'dtd' split 'train'"):
        linear.run_linear_section(linear.LinearParams(**base))
    monkeypatch.undo()
    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path / "cache"))
    run = linear.run_linear_section(linear.LinearParams(**base, accept_split_sizes="dtd"))
    note = "accepted size mismatch: train 9 (canonical 1880), val 6 (canonical 1880), test 6 (canonical 1880)"
    assert set(run.rows.data_check) == {note}
    assert set(read_results(tmp_path / "results.csv").data_check) == {note}  # every row, calibration rows too


def test_accept_split_sizes_names_are_checked(tmp_path):
    from ssl_lib.data import parse_accepted

    assert parse_accepted("cars, caltech101") == {"cars", "caltech101"}
    with pytest.raises(UnknownNameError, match="Did you mean 'cars'"):
        parse_accepted("crs")
    with pytest.raises(ConfigError, match="no canonical split sizes"):
        parse_accepted("mini-digits")


def test_datasets_check_reports_each_dataset_on_disk(tmp_path, capsys):
    from ssl_lib.cli import main

    _cars(tmp_path)
    _chestx(tmp_path)
    assert main(["datasets", "--check", "cars", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "cars: SIZE MISMATCH" in out and "train 3 (canonical 8144), test 3 (canonical 8041)" in out
    assert "mirror" in out
    assert main(["datasets", "--check", "chestx", "--root", str(tmp_path)]) == 0
    assert "chestx: present" in capsys.readouterr().out
    assert main(["datasets", "--check", "--root", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert {line.split(":")[0] for line in lines if not line.startswith("Also")} == set(PAPER_DATASETS)
    sun = next(line for line in lines if line.startswith("sun397:"))
    assert sun.startswith("sun397: missing: ") and str(tmp_path / "SUN397") in sun


def test_fine_tune_and_the_study_level_pages_check_sizes_too(tmp_path, monkeypatch, random_mini_model,
                                                           random_mini_spec):
    from ssl_lib.evaluate.finetune import FinetuneCfg, run_finetune
    from ssl_lib.sections._common import study_images
    from ssl_lib.study import load_study

    _dtd(tmp_path)
    _imagenet_val(tmp_path)
    cfg = FinetuneCfg(steps=1, batch_size=2, lrs=(0.1,), wds=(0.0,))
    with pytest.raises(SplitSizeError, match="'dtd'"):
        run_finetune(random_mini_model, "dtd", cfg, n_boot=0, root=tmp_path)
    study = load_study(_dtd_study(tmp_path, random_mini_spec))
    monkeypatch.setenv("SSL_LIB_DATA", str(tmp_path))  # the study-level pages read the default data root
    with pytest.raises(SplitSizeError, match="'imagenet-val'"):
        study_images(study, "imagenet-val", "val", 2, seed=0)
    assert study_images(study, "imagenet-val", "val", 2, seed=0, accept_sizes=True).shape[0] == 2
