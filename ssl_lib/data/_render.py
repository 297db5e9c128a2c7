"""Vectorized drawing for the mini suite: shapes as inside-tests on supersampled pixel grids.

Every function draws a whole batch at once with numpy; randomness comes only from the
``np.random.Generator`` passed in, so a fixed generator state gives identical bytes.
Conventions: images are float32 (N, H, W, 3) in [0, 1] until :func:`to_uint8`; pixel centres sit
at ``i + 0.5``; a shape's local frame has ``v`` pointing *up* and fits roughly in the unit disk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ShapeFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]
Point = tuple[float, float]

_PIXEL_BUDGET = 1 << 21  # supersampled pixels rasterized per chunk (bounds memory)


# --------------------------------------------------------------------------------------------
# Primitive inside-tests (local coordinates, arrays broadcast against each other)


def disk(u, v, r: float = 1.0, cx: float = 0.0, cy: float = 0.0):
    return (u - cx) ** 2 + (v - cy) ** 2 <= r * r


def box(u, v, x0: float, x1: float, y0: float, y1: float):
    return (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)


def capsule(u, v, a: Point, b: Point, width: float):
    """Points within ``width`` of the segment a-b (a thick stroke with round caps)."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return (u - ax - t * dx) ** 2 + (v - ay - t * dy) ** 2 <= width * width


def polygon(u, v, pts: Sequence[Point]):
    """Crossing-number inside test; vertices may be scalars or per-instance (n, 1, 1) arrays."""
    inside = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), dtype=bool)
    for (x1, y1), (x2, y2) in zip(pts, list(pts[1:]) + [pts[0]]):
        if np.isscalar(y1) and np.isscalar(y2) and y1 == y2:
            continue  # horizontal edges never cross a horizontal ray
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= ((y1 > v) != (y2 > v)) & (u < x_cross)
    return inside


def regular_pts(n: int, radius: float = 1.0, start: float = math.pi / 2) -> list[Point]:
    angles = [start + 2 * math.pi * k / n for k in range(n)]
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


def star_pts(n: int, r_out: float, r_in: float) -> list[Point]:
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = math.pi / 2 + math.pi * k / n
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def poly_shape(pts: Sequence[Point]) -> ShapeFn:
    return lambda u, v, _p: polygon(u, v, pts)


# --------------------------------------------------------------------------------------------
# Instances and rasterization


@dataclass
class Instances:
    """One drawn object per row: which shape, where (pixels), how big (radius), how posed."""

    shape: np.ndarray  # int index into the shape list handed to rasterize
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray  # pixels covered by one local unit
    rot: np.ndarray  # radians, counter-clockwise
    aspect: np.ndarray  # local u stretched by aspect, v by 1/aspect
    params: np.ndarray | None = None  # (n, k) per-instance shape parameters (fine-grained shapes)

    def __len__(self) -> int:
        return len(self.shape)

    def take(self, idx: np.ndarray) -> Instances:
        params = None if self.params is None else self.params[idx]
        cols = (self.shape, self.cx, self.cy, self.radius, self.rot, self.aspect)
        return Instances(*(c[idx] for c in cols), params)


def local_coords(inst: Instances, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map pixel coordinates (broadcastable grids) into each instance's local (u, v) frame."""
    col = lambda a: a.astype(np.float32)[:, None, None]  # noqa: E731
    dx = (xs - col(inst.cx)) / col(inst.radius)
    dy = (col(inst.cy) - ys) / col(inst.radius)  # v points up
    cos, sin = col(np.cos(inst.rot)), col(np.sin(inst.rot))
    u = (cos * dx + sin * dy) / col(inst.aspect)
    v = (-sin * dx + cos * dy) * col(inst.aspect)
    return u, v


@functools.lru_cache(maxsize=None)
def shape_extent(fn: ShapeFn) -> float:
    """Largest distance from the origin that ``fn`` covers (local units), to crop rasterization.

    A shape may declare it as an ``extent`` attribute (needed for parameterised shapes); others
    are measured once on a grid, with the [-1, 1] box as the fallback.
    """
    if hasattr(fn, "extent"):
        return float(fn.extent)
    g = np.linspace(-1.5, 1.5, 301, dtype=np.float32)
    try:
        inside = np.broadcast_to(fn(g[None, :], g[:, None], None), (301, 301))
    except (TypeError, IndexError):
        return math.sqrt(2.0)
    r = np.hypot(g[None, :], g[:, None])[inside]
    return float(r.max()) + 0.02 if r.size else 0.0


def rasterize(
    shapes: Sequence[ShapeFn],
    inst: Instances,
    size: int,
    ss: int = 4,
    *,
    outline: float = 0.0,
    wobble: np.ndarray | None = None,
) -> np.ndarray:
    """Anti-aliased coverage (n, size, size) in [0, 1]: inside-tests at ``ss``x``ss`` samples per pixel.

    Only a window around each instance is evaluated (its shape's extent), so small objects are cheap.
    ``outline`` > 0 keeps only a stroke of that width (output pixels) around the boundary;
    ``wobble`` (n, 3): amplitude (px), wavelength (px) and phase of a hand-drawn coordinate jitter.
    """
    n = len(inst)
    out = np.zeros((n, size, size), np.float32)
    stretch = np.maximum(inst.aspect, 1 / inst.aspect)
    slack = outline + (0.0 if wobble is None else np.abs(wobble[:, 0]))
    sub_grid = (np.arange(4 * size * ss, dtype=np.float32) + 0.5) / ss
    for sid in np.unique(inst.shape):
        idx = np.flatnonzero(inst.shape == sid)
        pad = slack if np.isscalar(slack) else slack[idx]
        half = inst.radius[idx] * stretch[idx] * shape_extent(shapes[sid]) + pad
        win = math.ceil(2 * half.max() + 3)  # window side in output pixels
        whole = win >= size  # as big as the image: evaluate the image itself
        win = size if whole else win
        chunk = max(1, _PIXEL_BUDGET // (win * ss) ** 2)
        for part in np.array_split(idx, math.ceil(len(idx) / chunk)):
            sub = inst.take(part)
            x0 = np.zeros(len(part), int) if whole else np.clip(np.floor(sub.cx - win / 2).astype(int), -win, size)
            y0 = np.zeros(len(part), int) if whole else np.clip(np.floor(sub.cy - win / 2).astype(int), -win, size)
            xs = (x0[:, None] + sub_grid[None, : win * ss]).astype(np.float32)[:, None, :]
            ys = (y0[:, None] + sub_grid[None, : win * ss]).astype(np.float32)[:, :, None]
            if wobble is not None:
                amp, wav, ph = (wobble[part, j].astype(np.float32)[:, None, None] for j in range(3))
                dx, dy = amp * np.sin(2 * np.pi * ys / wav + ph), amp * np.sin(2 * np.pi * xs / wav + 1.7 * ph)
                xs, ys = xs + dx, ys + dy
            u, v = local_coords(sub, xs, ys)
            params = None if sub.params is None else sub.params.astype(np.float32)[:, :, None, None]
            mask = np.broadcast_to(shapes[sid](u, v, params), u.shape)
            if outline > 0:
                k = max(1, int(round(outline * ss / 2)))
                st = np.ones((1, 2 * k + 1, 2 * k + 1), bool)
                mask = ndimage.binary_dilation(mask, st) & ~ndimage.binary_erosion(mask, st, border_value=0)
            cover = mask.reshape(len(part), win, ss, win, ss).sum(axis=(2, 4), dtype=np.float32) / (ss * ss)
            if whole:
                out[part] = cover
                continue
            padded = np.zeros((len(part), size + 2 * win, size + 2 * win), np.float32)
            rows = (y0 + win)[:, None, None] + np.arange(win)[None, :, None]
            cols = (x0 + win)[:, None, None] + np.arange(win)[None, None, :]
            padded[np.arange(len(part))[:, None, None], rows, cols] = cover
            out[part] = padded[:, win : win + size, win : win + size]
    return out


# --------------------------------------------------------------------------------------------
# Colour, noise, textures, backgrounds


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB; h in [0, 1) (turns), returns (..., 3)."""
    h6 = (np.asarray(h) % 1.0) * 6.0
    k = lambda n: (n + h6) % 6  # noqa: E731
    f = lambda n: v - v * s * np.clip(np.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return np.stack([f(5), f(3), f(1)], axis=-1).astype(np.float32)


def with_luminance(rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rescale colours (m, 3) to luminance ``target`` (m,): darken towards black or mix towards white."""
    lum = np.maximum(luminance(rgb), 1e-6)[:, None]
    t = np.asarray(target, np.float32)[:, None]
    darker = rgb * np.minimum(t / lum, 1.0)
    lighter = rgb + (1 - rgb) * np.clip((t - lum) / np.maximum(1 - lum, 1e-6), 0.0, 1.0)
    return np.where(t <= lum, darker, lighter).astype(np.float32)


def random_colors(rng: np.random.Generator, n: int, sat=(0.0, 1.0), val=(0.0, 1.0), hue=None) -> np.ndarray:
    h = rng.random(n) if hue is None else np.asarray(hue, dtype=np.float64)
    return hsv_to_rgb(h, rng.uniform(*sat, n), rng.uniform(*val, n))


def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells + 1) smoothstep interpolation weights from a coarse lattice to pixels."""
    t = (np.arange(size) + 0.5) / size * cells
    i0 = np.minimum(np.floor(t).astype(int), cells - 1)
    w = t - i0
    w = w * w * (3 - 2 * w)
    m = np.zeros((size, cells + 1), np.float32)
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Value noise (n, size, size, channels) in [0, 1] with ``cells`` lattice cells per side."""
    lattice = rng.random((n, cells + 1, cells + 1, channels), dtype=np.float32)
    m = _interp_matrix(size, cells)
    return np.einsum("yi,nijc,xj->nyxc", m, lattice, m, optimize=True)


def soft(z: np.ndarray, sharpness) -> np.ndarray:
    """Smooth 0/1 threshold at z = 0 (anti-aliased edges for periodic patterns)."""
    return 1.0 / (1.0 + np.exp(-np.clip(z * sharpness, -30, 30)))


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(size, dtype=np.float32) + 0.5
    return g[None, None, :], g[None, :, None]


def object_texture(rng: np.random.Generator, inst: Instances, size: int) -> np.ndarray:
    """Per-instance surface pattern (n, size, size) in [0, 1], in the object's frame so it turns with it.

    Kinds (uniformly random, never tied to a class): flat, stripes, checks, dots, blotches.
    """
    n = len(inst)
    xs, ys = pixel_grid(size)
    u, v = local_coords(inst, xs, ys)
    r = inst.radius.astype(np.float32)[:, None, None]
    period = rng.uniform(2.5, 6.0, n).astype(np.float32)[:, None, None] / r  # pixels -> local units
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    su, sv = np.sin(2 * np.pi * u / period + phase), np.sin(2 * np.pi * v / period)
    patterns = np.stack(
        [
            np.zeros_like(u),
            soft(su, 4.0),
            soft(su * sv, 6.0),
            soft(np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period + phase) - 1.0, 4.0),
            smooth_noise(rng, n, size, 4)[..., 0],
        ]
    )
    kind = rng.integers(0, len(patterns), n)
    return patterns[kind, np.arange(n)]


def line_clutter(rng: np.random.Generator, images: np.ndarray, max_count: int, alpha=(0.2, 0.7)) -> None:
    """Draw 0..``max_count`` random thin line segments per image, in place."""
    n, size = images.shape[:2]
    xs, ys = pixel_grid(size)
    count = rng.integers(0, max_count + 1, n)
    for k in range(max_count):
        a = rng.uniform(-0.2, 1.2, (n, 2)) * size
        b = rng.uniform(-0.2, 1.2, (n, 2)) * size
        width = rng.uniform(0.4, 1.2, n)
        col = lambda x: x.astype(np.float32)[:, None, None]  # noqa: E731
        ax, ay, bx, by = col(a[:, 0]), col(a[:, 1]), col(b[:, 0]), col(b[:, 1])
        dx, dy = bx - ax, by - ay
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
        dist = np.sqrt((xs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2)
        cover = np.clip(col(width) - dist + 0.5, 0, 1) * col(rng.uniform(*alpha, n) * (k < count))
        paint(images, np.arange(n), cover, random_colors(rng, n))


def clutter_background(rng: np.random.Generator, n: int, size: int, lines: int = 3) -> np.ndarray:
    """Busy natural-ish backgrounds: a random base colour, colour blotches, grain and stray lines."""
    base = random_colors(rng, n, sat=(0.0, 0.7), val=(0.15, 0.95))[:, None, None, :]
    blotch = smooth_noise(rng, n, size, 3, 3) - 0.5
    detail = smooth_noise(rng, n, size, max(2, size // 4), 1) - 0.5
    amp = rng.uniform(0.1, 0.5, n).astype(np.float32)[:, None, None, None]
    img = base + amp * blotch + 0.5 * amp * detail
    img = np.clip(img, 0, 1).astype(np.float32)
    line_clutter(rng, img, lines)
    return img


def paint(images: np.ndarray, image_idx: np.ndarray, cover: np.ndarray, color: np.ndarray) -> None:
    """Alpha-blend ``color`` ((m, 3) or (m, H, W, 3)) with coverage (m, H, W) into images[image_idx]."""
    a = cover[..., None]
    col = color[:, None, None, :] if color.ndim == 2 else color
    if len(image_idx) == len(images) and np.array_equal(image_idx, np.arange(len(images))):
        images += a * (col - images)  # every image: update in place, no gather/scatter
        return
    target = images[image_idx]
    target += a * (col - target)
    images[image_idx] = target


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def add_grain(rng: np.random.Generator, images: np.ndarray, sigma=(0.0, 0.05)) -> np.ndarray:
    s = rng.uniform(*sigma, len(images)).astype(np.float32)[:, None, None, None]
    return images + s * rng.standard_normal(images.shape, dtype=np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
