"""The mini suite: a seeded, procedurally generated stand-in for the paper's datasets.

The paper asks how ImageNet-pretrained self-supervised models transfer. Here ``mini-source`` plays
ImageNet (shape-defined object classes with nuisance colour, texture, pose and clutter), and each
downstream task isolates one kind of information so the paper's findings can be *tested*, not
forced: colour alone (``mini-colour``, the ISIC analog where colour-jittered SSL should lose), layout
(``mini-spatial``), texture, fine-grained proportions, a new rendering style, real digits, and dense
scenes and surfaces for detection, segmentation and normals.

This module is the suite's registry (each task's card and its generator) and its entry points;
the images are drawn by :mod:`._mini_renderers` (classification) and :mod:`._mini_scenes` (scenes
and surfaces) from the shared steps of :mod:`._mini_draw`.

Everything is a pure function of ``(name, split, seed)``; :func:`load` caches it as ``.npz``.
Bytes are reproducible for a given numpy build and CPU; bump :data:`SUITE_VERSION` whenever the
generation changes, since it is part of every cache file name.

Arrays per kind:

- classification: ``images`` uint8 (N, 32, 32, 3), ``labels`` int64 (N,), classes balanced.
- multilabel: ``images``, ``labels`` uint8 (N, K) of 0/1, at least one positive per row.
- detection: ``images`` uint8 (N, 64, 64, 3); ``boxes`` float32 (M, 4) x1, y1, x2, y2 in pixel-edge
  coordinates of the *visible* extent; ``box_labels`` int64 in 1..K; ``box_image`` int64 (sorted);
  ``masks`` uint8 (N, 64, 64) with 0 = background.
- normals: ``images`` uint8 (N, 64, 64, 3); ``normals`` float32 (N, 64, 64, 3) unit vectors with
  x = image right, y = image up, z = towards the camera (z > 0).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import paths
from .._registry import unknown_name_message
from ..exceptions import SSLLibError, UnknownNameError
from ._mini_draw import (_SOURCE_FNS, AIRCRAFT_CLASSES, COLOUR_CLASSES, COUNT_CLASSES, CROSSDOMAIN_CLASSES,
                         DIGIT_CLASSES, IMAGE_SIZE, MULTILABEL_CLASSES, OBJECT_CLASSES, SCENE_CLASSES, SCENE_SIZE,
                         SOURCE_CLASSES, SPLITS, TEXTURE_CLASSES, MiniTask, _classification, _Request, _stable_hash)
from ._mini_renderers import (_aircraft_images, _colour_images, _count_images, _digit_split_sizes, _digits,
                              _object_renderer, _sketch_images, _texture_images)
from ._mini_scenes import _detection, _multilabel, _normals
from ._shapes import OBJECT_SHAPES

__all__ = ["SUITE_VERSION", "IMAGE_SIZE", "SCENE_SIZE", "SPLITS", "MiniTask", "MINI_TASKS", "generate", "load"]

SUITE_VERSION = 2  # 2: mini-normals lit from above (a light from any side makes bumps and dents look alike)


def _per_class(k: int, train: int, val: int, test: int) -> dict:
    return {"train": k * train, "val": k * val, "test": k * test}


# --------------------------------------------------------------------------------------------
# The registry


def _transfer_task(name: str, classes, metric: str, description: str, mirrors: str,
                   render: Callable[[np.random.Generator, np.ndarray], np.ndarray]):
    """A downstream classification task of the suite: 100 / 25 / 50 images per class."""
    task = MiniTask(name, "classification", len(classes), metric, classes, description, mirrors, IMAGE_SIZE,
                    _per_class(len(classes), 100, 25, 50))
    return task, _classification(render)


_TASKS_AND_GENERATORS: list[tuple[MiniTask, Callable[[_Request], dict]]] = [
    (
        MiniTask("mini-source", "classification", len(SOURCE_CLASSES), "top1", SOURCE_CLASSES,
                 "24 object classes defined by outline shape; colour, surface texture, size, pose, position, "
                 "background clutter and border fragments vary at random.",
                 "ImageNet", IMAGE_SIZE, _per_class(len(SOURCE_CLASSES), 400, 50, 100)),
        _classification(_object_renderer(_SOURCE_FNS)),
    ),
    _transfer_task("mini-objects", OBJECT_CLASSES, "top1",
                   "10 new object classes composed of parts (snowman, key, tree, ...) drawn in the source style; "
                   "the composite shape decides the label.",
                   "Caltech101 / CIFAR10", _object_renderer(list(OBJECT_SHAPES.values()))),
    _transfer_task("mini-finegrained", AIRCRAFT_CLASSES, "mean_per_class",
                   "10 aircraft built from the same fuselage, wings and tailplane; only wing span, sweep, wing "
                   "position and tail span differ between classes.",
                   "FGVC Aircraft / Stanford Cars", _aircraft_images),
    _transfer_task("mini-textures", TEXTURE_CLASSES, "top1",
                   "10 full-frame texture classes; colours, phase, period, edge softness and a small rotation "
                   "are random, the pattern type decides the label.",
                   "DTD", _texture_images),
    _transfer_task("mini-colour", COLOUR_CLASSES, "mean_per_class",
                   "One object on a grey background; its hue bin (8 bins of 45 degrees) decides the label, "
                   "shape, shading, size, rotation and position are uninformative.",
                   "ISIC", _colour_images),
    _transfer_task("mini-spatial", COUNT_CLASSES, "top1",
                   "1-6 non-overlapping objects of random shape and colour on a jittered 3x3 layout; the number "
                   "of objects decides the label.",
                   "CLEVR-count (spatial reasoning)", _count_images),
    _transfer_task("mini-crossdomain", CROSSDOMAIN_CLASSES, "top1",
                   "10 source shape classes redrawn as wobbly ink outlines (sometimes hatched) on paper; the "
                   "shape decides the label, the rendering domain is new.",
                   "CD-FSL (ChestX / ISIC / EuroSAT / CropDisease)", _sketch_images),
    (
        MiniTask("mini-digits", "classification", 10, "top1", DIGIT_CLASSES,
                   "Real 8x8 handwritten digits from scikit-learn, upsampled to 32x32 grey; the digit decides "
                   "the label.",
                   "SVHN / MNIST", IMAGE_SIZE, _digit_split_sizes()),
        _digits,
    ),
    (
        MiniTask("mini-multilabel", "multilabel", len(MULTILABEL_CLASSES), "map11", MULTILABEL_CLASSES,
                 "1-3 objects of distinct classes in a cluttered image; the set of visible classes is the "
                 "label vector.",
                 "Pascal VOC2007 classification", IMAGE_SIZE, {"train": 800, "val": 200, "test": 400}),
        _multilabel,
    ),
    (
        MiniTask("mini-scenes", "detection", len(SCENE_CLASSES), "detection", SCENE_CLASSES,
                 "64x64 cluttered scenes with 1-4 objects (limited occlusion); boxes are the visible extent, "
                 "masks give each pixel's class (0 = background).",
                 "Pascal VOC detection / ADE20K segmentation", SCENE_SIZE,
                 {"train": 600, "val": 100, "test": 200}),
        _detection,
    ),
    (
        MiniTask("mini-normals", "normals", 3, "normals", ("x", "y", "z"),
                 "64x64 Lambertian renderings of random height fields (bumps, dents, planes, spheres) under a "
                 "random light from above and albedo; the per-pixel surface normal is the target.",
                 "NYUv2 surface normals", SCENE_SIZE, {"train": 600, "val": 100, "test": 200}),
        _normals,
    ),
]  # fmt: skip

MINI_TASKS: dict[str, MiniTask] = {task.name: task for task, _ in _TASKS_AND_GENERATORS}
_GENERATORS: dict[str, Callable[[_Request], dict]] = {task.name: gen for task, gen in _TASKS_AND_GENERATORS}


# --------------------------------------------------------------------------------------------
# Public entry points


def _task(name: str) -> MiniTask:
    try:
        return MINI_TASKS[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("mini task", name, list(MINI_TASKS))) from None


def _check(name: str, split: str, seed: int) -> MiniTask:
    task = _task(name)
    if split not in SPLITS:
        raise SSLLibError(f"Unknown split {split!r} for {name}; valid splits: {', '.join(SPLITS)}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SSLLibError(f"Seed must be a non-negative integer, got {seed!r}.")
    return task


def generate(name: str, split: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Pure and deterministic: the same (name, split, seed) gives the same bytes.

    Each (task, split) has its own generator seeded from ``(seed, stable_hash(name), split)``, so
    generating or changing one split never shifts another.
    """
    task = _check(name, split, seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _stable_hash(name), SPLITS.index(split)]))
    return _GENERATORS[name](_Request(task, split, int(seed), rng))


def cache_file(name: str, split: str, *, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """Where :func:`load` keeps ``(name, split, seed)``; the suite version is part of the name."""
    root = Path(cache_dir) if cache_dir is not None else paths.cache_dir("mini")
    return root / f"{name}_{split}_seed{seed}_v{SUITE_VERSION}.npz"


def load(name: str, split: str, *, seed: int = 0, cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """:func:`generate` cached on disk as ``.npz``, written atomically; an unreadable file is remade."""
    _check(name, split, seed)
    path = cache_file(name, split, seed=seed, cache_dir=cache_dir)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # truncated or foreign file: regenerate below
    arrays = generate(name, split, seed=seed)
    with paths.atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # a file object, so numpy does not append another ".npz"
    return arrays
