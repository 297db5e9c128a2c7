"""The generated mini suite: determinism, array contracts, caching, errors, and that each task
depends on what it claims to (cheap linear probes on small subsets)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from ssl_lib.data import mini
from ssl_lib.exceptions import SSLLibError, UnknownNameError

CLASSIFICATION = [n for n, t in mini.MINI_TASKS.items() if t.kind == "classification"]


@functools.lru_cache(maxsize=None)
def _gen(name: str, split: str = "val", seed: int = 0) -> dict[str, np.ndarray]:
    """Generate once per session; tests must not mutate the arrays."""
    return mini.generate(name, split, seed=seed)


def _digest(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in arrays.items()}


# --------------------------------------------------------------------------------------------
# The registry


def test_registry_lists_every_task_with_consistent_metadata():
    expected = [
        "mini-source", "mini-objects", "mini-finegrained", "mini-textures", "mini-colour", "mini-spatial",
        "mini-crossdomain", "mini-digits", "mini-multilabel", "mini-scenes", "mini-normals",
    ]  # fmt: skip
    assert list(mini.MINI_TASKS) == expected
    for name, task in mini.MINI_TASKS.items():
        assert task.name == name
        assert task.kind in {"classification", "multilabel", "detection", "normals"}
        assert task.metric in {"top1", "mean_per_class", "map11", "detection", "normals"}
        assert len(task.class_names) == task.num_classes == len(set(task.class_names))
        assert set(task.split_sizes) == set(mini.SPLITS)
        assert task.description and task.paper_analog
        assert task.image_size == (mini.SCENE_SIZE if task.kind in {"detection", "normals"} else mini.IMAGE_SIZE)
    assert mini.MINI_TASKS["mini-source"].num_classes >= 20


def test_downstream_classes_have_enough_images_for_50_shot_episodes():
    for name in CLASSIFICATION:
        task = mini.MINI_TASKS[name]
        assert sum(task.split_sizes.values()) / task.num_classes >= 70, name


# --------------------------------------------------------------------------------------------
# Determinism and seeding


@pytest.mark.parametrize("name", ["mini-colour", "mini-digits", "mini-multilabel", "mini-scenes", "mini-normals"])
def test_same_name_split_seed_gives_identical_bytes(name):
    assert _digest(mini.generate(name, "val", seed=0)) == _digest(_gen(name))


def test_different_seed_gives_different_images():
    assert not np.array_equal(mini.generate("mini-colour", "val", seed=1)["images"], _gen("mini-colour")["images"])
    assert not np.array_equal(mini.generate("mini-digits", "val", seed=1)["labels"], _gen("mini-digits")["labels"])


def test_splits_differ_from_each_other():
    val, test = _gen("mini-textures", "val"), _gen("mini-textures", "test")
    assert not np.array_equal(val["images"][:50], test["images"][:50])


def test_digits_partition_is_stratified_and_disjoint():
    splits = {s: _gen("mini-digits", s) for s in mini.SPLITS}
    sizes = {s: len(a["labels"]) for s, a in splits.items()}
    assert sizes == mini.MINI_TASKS["mini-digits"].split_sizes
    assert sum(sizes.values()) == 1797
    fractions = {s: sizes[s] / 1797 for s in sizes}
    assert fractions["train"] == pytest.approx(0.6, abs=0.01) and fractions["val"] == pytest.approx(0.15, abs=0.01)
    rows = {s: {im.tobytes() for im in a["images"]} for s, a in splits.items()}
    assert len(rows["train"] & rows["test"]) < 5  # disjoint up to the raw set's exact duplicates


# --------------------------------------------------------------------------------------------
# Array contracts per kind


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_arrays(name):
    task, arrays = mini.MINI_TASKS[name], _gen(name)
    images, labels = arrays["images"], arrays["labels"]
    assert set(arrays) == {"images", "labels"}
    assert images.dtype == np.uint8 and images.shape == (task.split_sizes["val"], 32, 32, 3)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert set(np.unique(labels)) == set(range(task.num_classes))  # every class in the split
    assert images.std() > 10  # not blank


def test_every_class_in_every_split_for_a_small_task():
    for split in mini.SPLITS:
        labels = _gen("mini-objects", split)["labels"]
        assert len(labels) == mini.MINI_TASKS["mini-objects"].split_sizes[split]
        assert np.bincount(labels).min() > 0


def test_multilabel_arrays():
    task, arrays = mini.MINI_TASKS["mini-multilabel"], _gen("mini-multilabel")
    images, labels = arrays["images"], arrays["labels"]
    assert images.dtype == np.uint8 and images.shape == (task.split_sizes["val"], 32, 32, 3)
    assert labels.shape == (len(images), task.num_classes) and set(np.unique(labels)) <= {0, 1}
    assert labels.sum(axis=1).min() >= 1 and labels.sum(axis=1).max() <= 3
    assert labels.sum(axis=0).min() > 0  # every class occurs


def test_detection_boxes_and_masks_agree():
    task, a = mini.MINI_TASKS["mini-scenes"], _gen("mini-scenes")
    n, size = task.split_sizes["val"], mini.SCENE_SIZE
    assert a["images"].dtype == np.uint8 and a["images"].shape == (n, size, size, 3)
    assert a["masks"].dtype == np.uint8 and a["masks"].shape == (n, size, size)
    boxes, labels, owner = a["boxes"], a["box_labels"], a["box_image"]
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == np.int64 and owner.dtype == np.int64 and len(owner) == len(labels)
    assert labels.min() >= 1 and labels.max() <= task.num_classes
    assert np.all(np.diff(owner) >= 0) and set(owner) == set(range(n))  # sorted; every image has a box
    assert np.all(boxes >= 0) and np.all(boxes <= size)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert a["masks"].max() <= task.num_classes
    for (x1, y1, x2, y2), label, i in zip(boxes.astype(int), labels, owner):
        region = a["masks"][i, y1:y2, x1:x2]
        assert (region == label).any()
        # the box is tight: its border rows/columns touch the class
        assert (region[0] == label).any() or (region[-1] == label).any() or (region[:, 0] == label).any()
    for i in range(n):  # every labelled pixel class has a box in that image
        assert set(np.unique(a["masks"][i])) - {0} <= set(labels[owner == i])


def test_normals_are_unit_vectors_facing_the_camera():
    task, a = mini.MINI_TASKS["mini-normals"], _gen("mini-normals")
    n, size = task.split_sizes["val"], mini.SCENE_SIZE
    assert a["images"].dtype == np.uint8 and a["images"].shape == (n, size, size, 3)
    assert a["normals"].dtype == np.float32 and a["normals"].shape == (n, size, size, 3)
    np.testing.assert_allclose(np.linalg.norm(a["normals"], axis=-1), 1.0, atol=1e-5)
    assert a["normals"][..., 2].min() > 0
    assert a["normals"][..., 2].mean() < 0.97  # not all flat


def test_normals_explain_the_shading():
    """Brightness follows n.l: flat-albedo regions get brighter where the normal faces the light."""
    a = _gen("mini-normals")
    grey = a["images"].astype(np.float32).mean(axis=-1)
    nx, ny = a["normals"][..., 0], a["normals"][..., 1]
    # per image, shading correlates with some horizontal light direction
    corr = [max(abs(np.corrcoef(grey[i].ravel(), c[i].ravel())[0, 1]) for c in (nx, ny)) for i in range(40)]
    assert np.median(corr) > 0.3


# --------------------------------------------------------------------------------------------
# Caching


def test_load_round_trip_atomic_and_reads_the_cache(tmp_path, monkeypatch):
    arrays = mini.load("mini-colour", "val", cache_dir=tmp_path)
    assert _digest(arrays) == _digest(_gen("mini-colour"))
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [f"mini-colour_val_seed0_v{mini.SUITE_VERSION}.npz"]  # no temp files
    assert files[0] == mini.cache_file("mini-colour", "val", cache_dir=tmp_path)

    def boom(*args, **kwargs):
        raise AssertionError("load() should read the cached file")

    monkeypatch.setattr(mini, "generate", boom)
    assert _digest(mini.load("mini-colour", "val", cache_dir=tmp_path)) == _digest(arrays)


def test_load_uses_ssl_lib_cache_and_remakes_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path))
    path = mini.cache_file("mini-digits", "val", seed=3)
    assert tmp_path in path.parents
    path.write_bytes(b"not an npz")
    arrays = mini.load("mini-digits", "val", seed=3)
    assert _digest(arrays) == _digest(mini.generate("mini-digits", "val", seed=3))
    assert _digest(dict(np.load(path))) == _digest(arrays)


# --------------------------------------------------------------------------------------------
# Errors


def test_unknown_task_is_a_one_line_error_with_suggestions():
    with pytest.raises(UnknownNameError, match=r"Unknown mini task 'mini-colours'\. Did you mean 'mini-colour'") as err:
        mini.generate("mini-colours", "train")
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError):
        mini.load("nope", "train")


def test_unknown_split_and_bad_seed_are_one_line_errors(tmp_path):
    with pytest.raises(SSLLibError, match=r"Unknown split 'training'.*train, val, test") as err:
        mini.load("mini-colour", "training", cache_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
    with pytest.raises(SSLLibError, match="non-negative"):
        mini.generate("mini-colour", "val", seed=-1)


# --------------------------------------------------------------------------------------------
# Each task depends on what it claims to


def _mean_rgb_probe(name: str, n_train: int = 500) -> float:
    """Accuracy of a logistic regression on per-image mean RGB (train subset -> val)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, val = _gen(name, "train"), _gen(name, "val")
    feats = lambda a: a["images"].reshape(len(a["images"]), -1, 3).mean(axis=1) / 255.0  # noqa: E731
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=100.0, max_iter=2000))
    probe.fit(feats(train)[:n_train], train["labels"][:n_train])
    return probe.score(feats(val), val["labels"])


def test_colour_is_solved_by_mean_colour():
    assert _mean_rgb_probe("mini-colour") > 0.8


@pytest.mark.parametrize("name", ["mini-textures", "mini-objects", "mini-spatial", "mini-finegrained"])
def test_mean_colour_is_near_chance_elsewhere(name):
    chance = 1.0 / mini.MINI_TASKS[name].num_classes
    assert _mean_rgb_probe(name) < chance + 0.12


def test_spatial_label_is_the_number_of_objects():
    """Count the blobs that differ from the local background: more objects, more changed area."""
    a = _gen("mini-spatial")
    from scipy import ndimage

    grey = a["images"].astype(np.float32).mean(axis=-1)
    edges = np.hypot(ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=2))
    energy = edges.reshape(len(grey), -1).mean(axis=1)
    assert np.corrcoef(energy, a["labels"])[0, 1] > 0.3
