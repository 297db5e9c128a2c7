"""The mini suite: a seeded, procedurally generated stand-in for the paper's datasets.

The paper asks how ImageNet-pretrained self-supervised models transfer. Here ``mini-source`` plays
ImageNet (shape-defined object classes with nuisance colour, texture, pose and clutter), and each
downstream task isolates one kind of information so the paper's findings can be *tested*, not
forced: colour alone (``mini-colour``, the ISIC analog where colour-jittered SSL should lose), layout
(``mini-spatial``), texture, fine-grained proportions, a new rendering style, real digits, and dense
scenes and surfaces for detection, segmentation and normals.

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
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import paths
from .._registry import unknown_name_message
from ..exceptions import SSLLibError, UnknownNameError
from . import _render as R
from ._shapes import AIRCRAFT_SHAPE, AIRCRAFT_VARIANTS, OBJECT_SHAPES, SOURCE_SHAPES

__all__ = ["SUITE_VERSION", "IMAGE_SIZE", "SCENE_SIZE", "SPLITS", "MiniTask", "MINI_TASKS", "generate", "load"]

SUITE_VERSION = 2  # 2: mini-normals lit from above (a light from any side makes bumps and dents look alike)
IMAGE_SIZE = 32
SCENE_SIZE = 64
SPLITS = ("train", "val", "test")

_BATCH = 1024  # images rendered per batch (bounds memory; fixed, so output does not depend on it)
_SS = 4  # supersampling factor per axis for anti-aliased shapes


@dataclass(frozen=True)
class MiniTask:
    """One task of the suite: what it contains, how it is scored, which paper dataset it mirrors."""

    name: str
    kind: str  # "classification" | "multilabel" | "detection" | "normals"
    num_classes: int
    metric: str  # "top1" | "mean_per_class" | "map11" | "detection" | "normals"
    class_names: tuple[str, ...]
    description: str
    paper_analog: str
    image_size: int
    split_sizes: dict = field(default_factory=dict)


def _per_class(k: int, train: int, val: int, test: int) -> dict:
    return {"train": k * train, "val": k * val, "test": k * test}


# --------------------------------------------------------------------------------------------
# Class vocabularies

SOURCE_CLASSES = tuple(SOURCE_SHAPES)
OBJECT_CLASSES = tuple(OBJECT_SHAPES)
AIRCRAFT_CLASSES = tuple(AIRCRAFT_VARIANTS)
TEXTURE_CLASSES = (
    "stripes-horizontal", "stripes-vertical", "stripes-diagonal", "checks", "dots",
    "waves", "crosshatch", "rings", "blotches", "grain",
)  # fmt: skip
COLOUR_CLASSES = ("red", "orange", "chartreuse", "green", "cyan", "azure", "violet", "magenta")
COUNT_CLASSES = tuple(f"{k} object{'s' if k > 1 else ''}" for k in range(1, 7))
CROSSDOMAIN_CLASSES = ("triangle", "square", "star5", "cross", "arrow", "heart", "crescent", "ell", "house", "gear")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
MULTILABEL_CLASSES = ("disk", "triangle", "square", "star5", "cross", "heart", "crescent", "arrow")
SCENE_CLASSES = ("disk", "triangle", "square", "star5", "cross", "heart")

_SOURCE_FNS = list(SOURCE_SHAPES.values())


def _shape_fns(names: tuple[str, ...]) -> list:
    return [SOURCE_SHAPES[n] for n in names]


# --------------------------------------------------------------------------------------------
# Shared drawing steps


@dataclass
class _Request:
    task: MiniTask
    split: str
    seed: int
    rng: np.random.Generator

    @property
    def n(self) -> int:
        return self.task.split_sizes[self.split]


def _balanced_labels(rng: np.random.Generator, num_classes: int, n: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _pose(rng, shape_ids, size, radius, center_jitter, rot_deg=30.0, aspect=(0.85, 1.18), params=None) -> R.Instances:
    """Random pose: radius as a fraction of the image, centre within ``center_jitter`` of the middle."""
    n = len(shape_ids)
    cx, cy = (size / 2 + rng.uniform(-center_jitter, center_jitter, n) * size for _ in range(2))
    return R.Instances(
        shape=np.asarray(shape_ids),
        cx=cx,
        cy=cy,
        radius=rng.uniform(*radius, n) * size,
        rot=np.deg2rad(rng.uniform(-rot_deg, rot_deg, n)),
        aspect=rng.uniform(*aspect, n),
        params=params,
    )


def _contrasting_colors(rng, images, image_idx, inst: R.Instances, free: float = 0.2) -> np.ndarray:
    """Random-hue object colours whose luminance is 0.3-0.55 away from the background behind them.

    A ``free`` share gets any luminance instead, so some objects are low-contrast as in real photos.
    """
    m, size = len(image_idx), images.shape[1]
    lum = ndimage.uniform_filter(R.luminance(images[image_idx]), size=(1, size // 4 + 1, size // 4 + 1))
    row = np.clip(inst.cy.astype(int), 0, size - 1)
    col = np.clip(inst.cx.astype(int), 0, size - 1)
    local = lum[np.arange(m), row, col]
    gap = rng.uniform(0.3, 0.55, m)
    target = np.where(local > 0.5, local - gap, local + gap)
    target = np.where(rng.random(m) < free, rng.uniform(0.05, 0.95, m), np.clip(target, 0.04, 0.96))
    return R.with_luminance(R.hsv_to_rgb(rng.random(m), rng.uniform(0.25, 1.0, m), np.ones(m)), target)


def _draw_objects(rng, images, image_idx, inst, shapes, base_color, *, texture_strength=(0.0, 0.8)) -> np.ndarray:
    """Paint textured objects into images[image_idx]; returns their coverage (m, H, W)."""
    size = images.shape[1]
    m = len(inst)
    alpha = R.rasterize(shapes, inst, size, _SS)
    tex = R.object_texture(rng, inst, size)[..., None]
    second = R.random_colors(rng, m)[:, None, None, :]
    strength = rng.uniform(*texture_strength, m).astype(np.float32)[:, None, None, None]
    color = base_color[:, None, None, :] * (1 - strength * tex) + second * strength * tex
    R.paint(images, image_idx, alpha, color)
    return alpha


def _draw_fragments(rng: np.random.Generator, images: np.ndarray, prob: float = 0.5) -> None:
    """Distractors: parts of random source shapes poking in from the image border."""
    n, size = images.shape[:2]
    idx = np.flatnonzero(rng.random(n) < prob)
    m = len(idx)
    side = rng.integers(0, 4, m)
    along = rng.uniform(0, size, m)
    depth = rng.uniform(-0.05, 0.12, m) * size
    cx = np.choose(side, [along, along, depth, size - depth])
    cy = np.choose(side, [depth, size - depth, along, along])
    inst = R.Instances(
        shape=rng.integers(0, len(_SOURCE_FNS), m),
        cx=cx,
        cy=cy,
        radius=rng.uniform(0.15, 0.3, m) * size,
        rot=rng.uniform(-np.pi, np.pi, m),
        aspect=rng.uniform(0.8, 1.25, m),
    )
    _draw_objects(rng, images, idx, inst, _SOURCE_FNS, R.random_colors(rng, m))


def _in_batches(render: Callable[[np.random.Generator, np.ndarray], np.ndarray], rng, labels) -> np.ndarray:
    """Render labels in fixed-size batches with one generator and convert to uint8."""
    parts = [R.to_uint8(render(rng, labels[i : i + _BATCH])) for i in range(0, len(labels), _BATCH)]
    return np.concatenate(parts)


def _classification(render: Callable[[np.random.Generator, np.ndarray], np.ndarray]) -> Callable[[_Request], dict]:
    def gen(req: _Request) -> dict:
        labels = _balanced_labels(req.rng, req.task.num_classes, req.n)
        return {"images": _in_batches(render, req.rng, labels), "labels": labels}

    return gen


# --------------------------------------------------------------------------------------------
# Classification renderers: (rng, labels) -> float images (n, 32, 32, 3)


def _object_renderer(shapes: list, radius=(0.27, 0.4), fragments: float = 0.5):
    def render(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
        n, size = len(labels), IMAGE_SIZE
        images = R.clutter_background(rng, n, size)
        _draw_fragments(rng, images, fragments)
        inst = _pose(rng, labels, size, radius, center_jitter=0.12)
        _draw_objects(rng, images, np.arange(n), inst, shapes, _contrasting_colors(rng, images, np.arange(n), inst))
        return R.add_grain(rng, images)

    return render


def _aircraft_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Same part list for every class; only proportions (span, sweep, wing/tail placement) differ."""
    n, size = len(labels), IMAGE_SIZE
    base = np.array(list(AIRCRAFT_VARIANTS.values()), np.float64)[labels]
    params = base + rng.normal(0, 0.025, base.shape) * np.array([1, 1, 1, 1, 0.8, 0.5])
    images = R.clutter_background(rng, n, size, lines=2)
    inst = _pose(rng, np.zeros(n, int), size, (0.4, 0.46), 0.05, rot_deg=35, aspect=(0.93, 1.07), params=params)
    color = _contrasting_colors(rng, images, np.arange(n), inst, free=0.1)
    _draw_objects(rng, images, np.arange(n), inst, [AIRCRAFT_SHAPE], color, texture_strength=(0, 0.4))
    return R.add_grain(rng, images)


def _texture_patterns(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """All ten texture classes for n images at once: (10, n, size, size) in [0, 1]."""
    xs, ys = R.pixel_grid(size)
    col = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731
    th = col(np.deg2rad(rng.uniform(-10, 10, n)))
    x = np.cos(th) * (xs - size / 2) + np.sin(th) * (ys - size / 2)
    y = -np.sin(th) * (xs - size / 2) + np.cos(th) * (ys - size / 2)
    p = col(rng.uniform(4.5, 9.0, n))  # period in pixels
    ph = col(rng.uniform(0, 2 * np.pi, n))
    k = col(rng.uniform(2.5, 8.0, n))  # edge sharpness
    w = lambda z: 2 * np.pi * z / p + ph  # noqa: E731
    diag = col(rng.choice([-1.0, 1.0], n))
    rx, ry = col(rng.uniform(-8, 8, n)), col(rng.uniform(-8, 8, n))
    blotch = R.smooth_noise(rng, n, size, 4)[..., 0]
    grain = R.smooth_noise(rng, n, size, size // 2)[..., 0]
    return np.stack(
        [
            R.soft(np.sin(w(y)), k),
            R.soft(np.sin(w(x)), k),
            R.soft(np.sin(w((x + diag * y) / np.sqrt(2))), k),
            R.soft(np.sin(w(x)) * np.sin(2 * np.pi * y / p), k),
            R.soft(np.cos(w(x)) + np.cos(2 * np.pi * y / p) - 1.0, k),
            R.soft(np.sin(w(y) + 1.6 * np.sin(2 * np.pi * x / (2.5 * p))), k),
            np.maximum(R.soft(np.cos(w((x + y) / np.sqrt(2))) - 0.6, k), R.soft(np.cos(w((x - y) / np.sqrt(2))) - 0.6, k)),
            R.soft(np.sin(w(np.hypot(x - rx, y - ry))), k),
            R.soft(blotch - 0.5, 12 * k),
            grain,
        ]
    )


def _texture_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n, size = len(labels), IMAGE_SIZE
    pattern = _texture_patterns(rng, n, size)[labels, np.arange(n)][..., None]
    c1 = R.random_colors(rng, n, sat=(0, 1), val=(0.1, 1))[:, None, None, :]
    c2 = R.random_colors(rng, n, sat=(0, 1), val=(0.1, 1))[:, None, None, :]
    shade = 1 + R.smooth_noise(rng, n, size, 2) * rng.uniform(-0.3, 0.3, n).astype(np.float32)[:, None, None, None]
    return R.add_grain(rng, (c1 * (1 - pattern) + c2 * pattern) * shade)


def _colour_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Hue bin decides the label; shape, texture, size and position are random; background is grey."""
    n, size = len(labels), IMAGE_SIZE
    grey = rng.uniform(0.15, 0.85, n).astype(np.float32)[:, None, None, None]
    images = np.repeat(grey + 0.25 * (R.smooth_noise(rng, n, size, 3) - 0.5), 3, axis=-1)
    R.line_clutter(rng, images, 2)
    images = np.repeat(R.luminance(images)[..., None], 3, axis=-1)  # keep the clutter grey
    hue = (labels + rng.uniform(-0.38, 0.38, n)) / len(COLOUR_CLASSES)
    color = R.hsv_to_rgb(hue, rng.uniform(0.55, 1.0, n), rng.uniform(0.45, 1.0, n))
    inst = _pose(rng, rng.integers(0, len(_SOURCE_FNS), n), size, (0.26, 0.42), 0.15, rot_deg=180)
    alpha = R.rasterize(_SOURCE_FNS, inst, size, _SS)
    shade = 1 - rng.uniform(0, 0.5, n).astype(np.float32)[:, None, None] * R.object_texture(rng, inst, size)
    R.paint(images, np.arange(n), alpha, color[:, None, None, :] * shade[..., None])
    return R.add_grain(rng, images)


def _grid_positions(rng: np.random.Generator, n: int, slots: int, size: int, radius: np.ndarray):
    """Distinct cells of a jittered 3x3 grid, one per slot, so objects never overlap."""
    cell = size / 3
    order = np.argsort(rng.random((n, 9)), axis=1)[:, :slots]
    slack = np.maximum(cell / 2 - 1.1 * radius, 0)
    cx = (order % 3 + 0.5) * cell + rng.uniform(-1, 1, (n, slots)) * slack
    cy = (order // 3 + 0.5) * cell + rng.uniform(-1, 1, (n, slots)) * slack
    return cx, cy


def _count_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """The label is how many objects there are (1-6); object size shrinks a little with the count."""
    n, size, slots = len(labels), IMAGE_SIZE, len(COUNT_CLASSES)
    count = labels + 1
    images = R.clutter_background(rng, n, size, lines=0)  # no stray lines: they would read as objects
    radius = rng.uniform(3.4, 4.6, (n, 1)) * (count[:, None] / 3.5) ** -0.15 * rng.uniform(0.9, 1.1, (n, slots))
    radius = np.clip(radius, 2.8, 4.8)  # fits a grid cell, so no object is cut by the border
    cx, cy = _grid_positions(rng, n, slots, size, radius)
    present = np.arange(slots)[None, :] < count[:, None]
    shapes = rng.integers(0, len(_SOURCE_FNS), (n, slots))
    _draw_slots(rng, images, _SOURCE_FNS, shapes, present, cx, cy, radius, free=0.0)  # all clearly visible
    return R.add_grain(rng, images)


def _sketch_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Another rendering style: wobbly ink outlines (sometimes hatched) on paper, no clutter."""
    n, size = len(labels), IMAGE_SIZE
    paper = R.hsv_to_rgb(rng.uniform(0.07, 0.16, n), rng.uniform(0.0, 0.25, n), rng.uniform(0.75, 0.97, n))
    fibre = 0.06 * (R.smooth_noise(rng, n, size, 10) - 0.5) + 0.1 * (R.smooth_noise(rng, n, size, 2) - 0.5)
    images = (paper[:, None, None, :] + fibre).astype(np.float32)
    inst = _pose(rng, labels, size, (0.28, 0.4), 0.1)
    wobble = np.stack([rng.uniform(0.2, 0.8, n), rng.uniform(8, 20, n), rng.uniform(0, 2 * np.pi, n)], axis=1)
    shapes = _shape_fns(CROSSDOMAIN_CLASSES)
    ink = R.hsv_to_rgb(rng.choice([0.08, 0.6, 0.0], n), rng.uniform(0.0, 0.7, n), rng.uniform(0.05, 0.35, n))
    fill = R.rasterize(shapes, inst, size, _SS, wobble=wobble)
    xs, ys = R.pixel_grid(size)
    hatch = R.soft(np.cos(2 * np.pi * (xs + ys) / rng.uniform(2.5, 4.0, n)[:, None, None]) - 0.6, 4.0)
    hatch_alpha = (rng.random(n) < 0.5) * rng.uniform(0.2, 0.5, n)
    R.paint(images, np.arange(n), fill * hatch * hatch_alpha[:, None, None].astype(np.float32), ink)
    stroke = R.rasterize(shapes, inst, size, _SS, outline=1.1, wobble=wobble)
    R.paint(images, np.arange(n), stroke * rng.uniform(0.7, 1.0, n).astype(np.float32)[:, None, None], ink)
    return R.add_grain(rng, images, (0.0, 0.03))


# --------------------------------------------------------------------------------------------
# Multi-object scenes (multilabel, detection/segmentation)


def _draw_slots(rng, images, shapes, shape_ids, present, cx, cy, radius, free: float = 0.1) -> np.ndarray:
    """Draw slot 0, 1, ... in order (later ones occlude); returns the visible slot map (0 = none)."""
    n, size = images.shape[:2]
    slot_map = np.zeros((n, size, size), np.int64)
    for j in range(shape_ids.shape[1]):
        idx = np.flatnonzero(present[:, j])
        m = len(idx)
        inst = R.Instances(
            shape=shape_ids[idx, j],
            cx=cx[idx, j],
            cy=cy[idx, j],
            radius=radius[idx, j],
            rot=np.deg2rad(rng.uniform(-30, 30, m)),
            aspect=rng.uniform(0.85, 1.18, m),
        )
        alpha = _draw_objects(rng, images, idx, inst, shapes, _contrasting_colors(rng, images, idx, inst, free))
        slot_map[idx] = np.where(alpha >= 0.5, j + 1, slot_map[idx])
    return slot_map


def _place_apart(rng, present, radius, size, tries: int = 12, min_sep: float = 0.8):
    """Rejection-sample centres so objects overlap only a little; slots that find no room are dropped."""
    n, slots = present.shape
    cx, cy = np.zeros((n, slots)), np.zeros((n, slots))
    present = present.copy()
    for j in range(slots):
        r = radius[:, j : j + 1]
        cand_x = rng.uniform(0, 1, (n, tries)) * (size - 1.4 * r) + 0.7 * r
        cand_y = rng.uniform(0, 1, (n, tries)) * (size - 1.4 * r) + 0.7 * r
        ok = np.ones((n, tries), bool)
        for i in range(j):
            dist = np.hypot(cand_x - cx[:, i : i + 1], cand_y - cy[:, i : i + 1])
            ok &= ~present[:, i : i + 1] | (dist >= min_sep * (radius[:, i : i + 1] + r))
        pick = np.argmax(ok, axis=1)
        cx[:, j], cy[:, j] = cand_x[np.arange(n), pick], cand_y[np.arange(n), pick]
        present[:, j] &= ok.any(axis=1)
    return cx, cy, present


def _scene(rng, n, size, class_names, counts, radius_range):
    """Cluttered scenes with ``counts`` (n,) objects of distinct classes; returns images, slot map, classes."""
    slots, k = int(counts.max()), len(class_names)
    images = R.clutter_background(rng, n, size, lines=3 if size > IMAGE_SIZE else 2)
    if size > IMAGE_SIZE:
        _draw_fragments(rng, images, 0.3)
    classes = np.argsort(rng.random((n, k)), axis=1)[:, :slots]
    radius = rng.uniform(*radius_range, (n, slots)) * size
    cx, cy, present = _place_apart(rng, np.arange(slots)[None, :] < counts[:, None], radius, size)
    slot_map = _draw_slots(rng, images, _shape_fns(class_names), classes, present, cx, cy, radius)
    return R.to_uint8(R.add_grain(rng, images, (0.0, 0.04))), slot_map, np.where(present, classes, -1)


def _visible(slot_map: np.ndarray, slots: int) -> np.ndarray:
    """(n, slots, H, W) bool: the pixels where each slot's object is visible."""
    return slot_map[:, None] == np.arange(1, slots + 1)[None, :, None, None]


def _multilabel(req: _Request) -> dict:
    """1-3 objects of distinct classes; a class is positive if at least 6 of its pixels are visible."""
    k = req.task.num_classes
    counts = req.rng.integers(1, 4, req.n)
    images, slot_map, classes = _scene(req.rng, req.n, IMAGE_SIZE, MULTILABEL_CLASSES, counts, (0.16, 0.26))
    area = _visible(slot_map, classes.shape[1]).sum(axis=(2, 3))
    labels = np.zeros((req.n, k), np.uint8)
    rows, slots = np.nonzero((area >= 6) & (classes >= 0))
    labels[rows, classes[rows, slots]] = 1
    return {"images": images, "labels": labels}


def _detection(req: _Request) -> dict:
    """Boxes are the tight extent of each object's *visible* pixels (coverage >= 0.5), in pixel-edge
    coordinates (x2, y2 exclusive). Placement keeps occlusion partial, so every object has a box and
    every labelled mask pixel lies in a box of its class."""
    counts = req.rng.integers(1, 5, req.n)
    images, slot_map, classes = _scene(req.rng, req.n, SCENE_SIZE, SCENE_CLASSES, counts, (0.12, 0.24))
    vis = _visible(slot_map, classes.shape[1])
    rows_any, cols_any = vis.any(axis=3), vis.any(axis=2)
    keep = vis.any(axis=(2, 3)) & (classes >= 0)
    img, slot = np.nonzero(keep)
    y1 = np.argmax(rows_any, axis=2)[img, slot]
    y2 = SCENE_SIZE - np.argmax(rows_any[..., ::-1], axis=2)[img, slot]
    x1 = np.argmax(cols_any, axis=2)[img, slot]
    x2 = SCENE_SIZE - np.argmax(cols_any[..., ::-1], axis=2)[img, slot]
    lut = np.concatenate([np.zeros((req.n, 1), np.int64), classes + 1], axis=1)
    masks = lut[np.arange(req.n)[:, None, None], slot_map].astype(np.uint8)
    return {
        "images": images,
        "boxes": np.stack([x1, y1, x2, y2], axis=1).astype(np.float32),
        "box_labels": (classes[img, slot] + 1).astype(np.int64),
        "box_image": img.astype(np.int64),
        "masks": masks,
    }


# --------------------------------------------------------------------------------------------
# Surfaces with normals


def _height_field(rng: np.random.Generator, n: int, size: int):
    """Tilted plane + Gaussian bumps/dents + sometimes spheres; returns h, dh/dx, dh/drow, sphere mask."""
    xs, ys = (g.astype(np.float64) for g in R.pixel_grid(size))
    col = lambda a: np.asarray(a, np.float64)[:, None, None]  # noqa: E731
    a, b = col(rng.uniform(-0.35, 0.35, n)), col(rng.uniform(-0.35, 0.35, n))
    h, hx, hy = a * xs + b * ys, a + 0 * xs, b + 0 * ys
    nbumps = rng.integers(2, 7, n)
    for j in range(6):
        amp = col(rng.uniform(3, 12, n) * rng.choice([-1, 1], n) * (j < nbumps))
        sig = col(rng.uniform(0.06, 0.2, n) * size)
        bx, by = col(rng.uniform(0, size, n)), col(rng.uniform(0, size, n))
        g = amp * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / (2 * sig**2))
        h, hx, hy = h + g, hx - g * (xs - bx) / sig**2, hy - g * (ys - by) / sig**2
    on_sphere = np.zeros(h.shape, bool)
    nspheres = rng.integers(0, 3, n)
    for j in range(2):
        rad = col(rng.uniform(0.12, 0.28, n) * size)
        sx, sy = col(rng.uniform(0.2, 0.8, n) * size), col(rng.uniform(0.2, 0.8, n) * size)
        r2 = (xs - sx) ** 2 + (ys - sy) ** 2
        inside = (r2 < (0.97 * rad) ** 2) & col(j < nspheres).astype(bool)
        depth = np.sqrt(np.maximum(rad**2 - r2, 1e-6))
        centre_h = a * sx + b * sy - col(rng.uniform(0.1, 0.5, n)) * rad
        hs = centre_h + depth
        top = inside & (hs > h)
        h = np.where(top, hs, h)
        hx, hy = np.where(top, -(xs - sx) / depth, hx), np.where(top, -(ys - sy) / depth, hy)
        on_sphere |= top
    return h, hx, hy, on_sphere


def _normals(req: _Request) -> dict:
    """Lambertian shading of a random height field under a random light from the upper half, times a random albedo.

    Normals are in camera coordinates: x to the image right, y to the image top, z towards the
    camera (which looks down -z), so every visible normal has z > 0.
    """
    rng, n, size = req.rng, req.n, SCENE_SIZE
    _, hx, hy, on_sphere = _height_field(rng, n, size)
    normals = np.stack([-hx, hy, np.ones_like(hx)], axis=-1)  # y up = -row
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    # Light from the upper half (as the human "light from above" prior): with a light from any
    # side a bump and a dent shade alike, and no model can tell which normals are meant.
    az, el = rng.uniform(np.pi / 4, 3 * np.pi / 4, n), np.deg2rad(rng.uniform(25, 75, n))
    light = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
    lambert = np.clip(np.einsum("nhwc,nc->nhw", normals, light), 0, None)
    ambient = rng.uniform(0.08, 0.3, n)[:, None, None]
    shading = (ambient + (1 - ambient) * lambert)[..., None]
    ground = R.random_colors(rng, n, sat=(0, 0.6), val=(0.55, 1.0))[:, None, None, :]
    ball = R.random_colors(rng, n, sat=(0, 0.8), val=(0.55, 1.0))[:, None, None, :]
    albedo = np.where(on_sphere[..., None], ball, ground)
    albedo = albedo * (1 - rng.uniform(0, 0.35, n)[:, None, None, None] * R.smooth_noise(rng, n, size, 6))
    images = R.add_grain(rng, (albedo * shading).astype(np.float32), (0.0, 0.03))
    return {"images": R.to_uint8(images), "normals": normals.astype(np.float32)}


# --------------------------------------------------------------------------------------------
# Real data: scikit-learn's handwritten digits


def _digits(req: _Request) -> dict:
    """sklearn digits upsampled 8->32 (bicubic), grey on RGB; a seeded stratified 60/15/25 split.

    The partition depends only on the seed (all three splits come from one permutation, so they
    never overlap); the split's own generator only shuffles its order.
    """
    from scipy import ndimage
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images.astype(np.float32), data.target.astype(np.int64)
    part_rng = np.random.default_rng(np.random.SeedSequence([req.seed, _stable_hash(req.task.name), 1000]))
    chosen = []
    for c in range(10):
        members = part_rng.permutation(np.flatnonzero(labels == c))
        chosen.append(np.split(members, _digit_cuts(len(members)))[SPLITS.index(req.split)])
    idx = req.rng.permutation(np.concatenate(chosen))
    big = ndimage.zoom(images[idx], (1, 4, 4), order=3, grid_mode=True, mode="grid-constant")
    grey = np.clip(big / 16.0, 0, 1)
    return {"images": R.to_uint8(np.repeat(grey[..., None], 3, axis=-1)), "labels": labels[idx]}


# --------------------------------------------------------------------------------------------
# The registry


# Images per digit in sklearn's set; fixed, so split sizes are known without importing sklearn.
_DIGIT_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
_DIGIT_FRACTIONS = (0.6, 0.15)  # train, val; the rest is test


def _digit_cuts(count: int) -> np.ndarray:
    return np.cumsum(np.round(np.array(_DIGIT_FRACTIONS) * count).astype(int))


def _digit_split_sizes() -> dict:
    cuts = np.array([_digit_cuts(c) for c in _DIGIT_COUNTS])
    train, val = int(cuts[:, 0].sum()), int((cuts[:, 1] - cuts[:, 0]).sum())
    return {"train": train, "val": val, "test": sum(_DIGIT_COUNTS) - train - val}


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


def _stable_hash(text: str) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


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
