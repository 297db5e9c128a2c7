"""``folder:<path>`` trees: one class list for every split, the three layouts, a content fingerprint."""

import os

import numpy as np
import pytest
import yaml
from PIL import Image

from ssl_lib.data import get_dataset_spec, open_split, split_roles
from ssl_lib.exceptions import BadDataError, ConfigError, DataNotFoundError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tree(root, layout: dict[str, dict[str, int]], ext=".png"):
    """``{split: {class: n_images}}``; split "" is a flat tree. Each image's colour encodes its class."""
    for split, classes in layout.items():
        for c, (cls, n) in enumerate(classes.items()):
            for i in range(n):
                path = root / split / cls / f"{i}{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (ord(cls[0]), 10 * i, 7)).save(path)
    return f"folder:{root}"


def _labels(data):
    return [int(data[i][1]) for i in range(len(data))]


def test_every_split_takes_its_labels_from_trains_class_list(tmp_path):
    name = _tree(tmp_path, {"train": {"ant": 2, "bee": 2, "cat": 2}, "val": {"bee": 1, "cat": 1},
                            "test": {"ant": 1, "cat": 2}})
    spec = get_dataset_spec(name)
    assert spec.num_classes == 3 and spec.splits == ("train", "val", "test")
    test = open_split(name, "test")
    assert test.classes == ["ant", "bee", "cat"]
    assert _labels(test) == [0, 2, 2]  # per-split ImageFolder maps test's 'cat' to 1 (it lacks 'bee')
    assert _labels(open_split(name, "val")) == [1, 2]
    for split in ("val", "test"):  # the label matches the image's class (its colour)
        data = open_split(name, split)
        assert [data.classes[y][0] for y in _labels(data)] == [chr(data[i][0].getpixel((0, 0))[0]) for i in range(len(data))]


def test_a_class_that_only_test_has_is_one_clear_error(tmp_path):
    name = _tree(tmp_path, {"train": {"ant": 1, "bee": 1}, "test": {"ant": 1, "zebra": 1}})
    with pytest.raises(BadDataError) as info:
        get_dataset_spec(name)
    message = str(info.value)
    assert "\n" not in message and "'zebra'" in message and "train/" in message and "test/zebra/" in message


def test_replacing_an_image_under_the_same_name_changes_the_fingerprint(tmp_path):
    name = _tree(tmp_path, {"train": {"ant": 2, "bee": 2}, "test": {"ant": 1, "bee": 1}})
    before = get_dataset_spec(name).fingerprint
    assert get_dataset_spec(name).fingerprint == before  # stable when nothing changes
    path = tmp_path / "test" / "bee" / "0.png"
    stat = path.stat()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)  # same name and size, other pixels
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert get_dataset_spec(name).fingerprint != before
    again = get_dataset_spec(name).fingerprint
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)  # another size, mtime restored
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert get_dataset_spec(name).fingerprint != again


def test_the_tutorial_layout_uses_val_as_test_and_carves_validation(tmp_path, random_mini_model):
    from ssl_lib.evaluate.linear import load_linear_splits

    name = _tree(tmp_path, {"train": {"ants": 10, "bees": 10}, "val": {"ants": 3, "bees": 4}})
    spec = get_dataset_spec(name)
    assert spec.splits == ("train", "test") and not spec.has_official_val
    assert "val/ → test" in split_roles(spec) and "carve" in split_roles(spec)
    assert len(open_split(name, "test")) == 7
    splits = load_linear_splits(random_mini_model, name, progress=False, use_cache=False)
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (16, 4, 7)
    assert splits.val_source == "carve20(seed=0)"


def test_a_flat_tree_is_a_few_shot_pool_and_linear_refuses_it(tmp_path):
    from ssl_lib.sections._common import section_datasets
    from ssl_lib.study import load_study

    name = _tree(tmp_path / "data", {"": {"ant": 3, "bee": 2, "cat": 4}})
    spec = get_dataset_spec(name)
    assert spec.splits == ("all",) and spec.num_classes == 3
    assert _labels(open_split(name, "all")) == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "t", "zoo": "mini", "models": ["byol"],
                                     "sections": {"fewshot": {"datasets": [name]}}}))
    assert section_datasets(load_study(study), "fewshot", "all") == [name]
    study.write_text(yaml.safe_dump({"name": "t", "zoo": "mini", "models": ["byol"],
                                     "sections": {"linear": {"datasets": [name]}, "fewshot": {"datasets": [name]}}}))
    with pytest.raises(ConfigError) as info:  # refused when the study loads, before any work
        load_study(study)
    assert "\n" not in str(info.value) and "few-shot" in str(info.value) and "train/<class>" in str(info.value)


def test_test_without_train_and_train_alone_are_one_line_each(tmp_path):
    _tree(tmp_path / "a", {"test": {"ant": 1}})
    _tree(tmp_path / "b", {"train": {"ant": 1}})
    for sub, needle in (("a", "no train/"), ("b", "no test/")):
        with pytest.raises(DataNotFoundError, match=needle) as info:
            get_dataset_spec(f"folder:{tmp_path / sub}")
        assert "\n" not in str(info.value)


def test_hidden_folders_and_other_extensions_are_not_classes_or_images(tmp_path):
    name = _tree(tmp_path, {"train": {"ant": 2, "bee": 2}, "test": {"ant": 1, "bee": 1}})
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # ImageFolder would make this a class
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "ant" / "anim.gif")
    (tmp_path / "train" / "bee" / ".DS_Store").write_bytes(b"\0")
    spec = get_dataset_spec(name)
    assert spec.num_classes == 2 and len(open_split(name, "train")) == 4
    assert "3 files skipped" in spec.description


def test_an_unreadable_image_stops_with_its_path(tmp_path):
    name = _tree(tmp_path, {"train": {"ant": 2, "bee": 2}, "test": {"ant": 1, "bee": 1}}, ext=".jpg")
    bad = tmp_path / "test" / "bee" / "0.jpg"
    bad.write_text("not a jpeg")
    data = open_split(name, "test")
    with pytest.raises(BadDataError) as info:
        data[1]
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    np.testing.assert_equal(_labels(open_split(name, "train")), [0, 0, 1, 1])


def test_datasets_check_describes_a_folder_tree(tmp_path, capsys):
    from ssl_lib.cli import main

    name = _tree(tmp_path, {"train": {"ant": 5, "bee": 5}, "val": {"ant": 2, "bee": 1}}, ext=".jpg")
    assert main(["datasets", "--check", name]) == 0
    out = capsys.readouterr().out
    assert "train/val (tutorial) layout" in out and "val/ → test" in out and "classes (2, from train/): ant, bee" in out
    assert "train (train/): 10 images (ant 5, bee 5)" in out and "test (val/): 3 images (ant 2, bee 1)" in out
    assert "seeded 20% carve of train (seed 0): 2 of 10 images" in out and "ready." in out
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "ant" / "anim.gif")
    (tmp_path / "train" / "bee" / "notes.jpg").write_text("not an image")
    jpeg = (tmp_path / "train" / "ant" / "0.jpg").read_bytes()
    (tmp_path / "val" / "bee" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert main(["datasets", "--check", name]) == 1
    out = capsys.readouterr().out
    assert "train/ant/anim.gif: .gif: not an image extension" in out
    assert "train/bee/notes.jpg: cannot identify image file" in out
    assert "val/bee/cut.jpg: " in out.split("unreadable")[1] and "not ready" in out
    assert main(["datasets", "--check", f"folder:{tmp_path / 'nowhere'}"]) == 1
    assert "is not a directory" in capsys.readouterr().out
