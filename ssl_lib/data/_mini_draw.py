"""Shared drawing steps of the mini suite (:mod:`ssl_lib.data.mini`): the task card, the class
vocabularies, random poses, contrasting colours, textured objects and fragments, batched rendering.

The renderers (:mod:`._mini_renderers`, :mod:`._mini_scenes`) compose these; every random draw goes
through the one generator of a ``(task, split, seed)``, in a fixed order, so the bytes of a split
depend on nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import _render as R
from ._shapes import AIRCRAFT_VARIANTS, OBJECT_SHAPES, SOURCE_SHAPES

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


def _stable_hash(text: str) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))



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
