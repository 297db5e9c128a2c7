"""Renderers of the mini suite's classification tasks: ``(rng, labels) -> float images`` for the
generated tasks, and scikit-learn's handwritten digits for the real one."""

from __future__ import annotations

import numpy as np

from . import _render as R
from ._mini_draw import (_SOURCE_FNS, _SS, COLOUR_CLASSES, COUNT_CLASSES, CROSSDOMAIN_CLASSES, IMAGE_SIZE, SPLITS,
                         _contrasting_colors, _draw_fragments, _draw_objects, _draw_slots, _pose, _Request, _shape_fns,
                         _stable_hash)
from ._shapes import AIRCRAFT_SHAPE, AIRCRAFT_VARIANTS

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


# Images per digit in sklearn's set; fixed, so split sizes are known without importing sklearn.
_DIGIT_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
_DIGIT_FRACTIONS = (0.6, 0.15)  # train, val; the rest is test


def _digit_cuts(count: int) -> np.ndarray:
    return np.cumsum(np.round(np.array(_DIGIT_FRACTIONS) * count).astype(int))


def _digit_split_sizes() -> dict:
    cuts = np.array([_digit_cuts(c) for c in _DIGIT_COUNTS])
    train, val = int(cuts[:, 0].sum()), int((cuts[:, 1] - cuts[:, 0]).sum())
    return {"train": train, "val": val, "test": sum(_DIGIT_COUNTS) - train - val}
