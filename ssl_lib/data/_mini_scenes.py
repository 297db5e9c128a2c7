"""Renderers of the mini suite's multi-object scenes (multi-label, detection and segmentation) and
its surface-normal images."""

from __future__ import annotations

import numpy as np

from . import _render as R
from ._mini_draw import (IMAGE_SIZE, MULTILABEL_CLASSES, SCENE_CLASSES, SCENE_SIZE, _draw_fragments, _draw_slots,
                         _Request, _shape_fns)

# --------------------------------------------------------------------------------------------
# Multi-object scenes (multilabel, detection/segmentation)


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
