"""The shape vocabulary of the mini suite: source classes, new object classes and aircraft variants.

Each entry is an inside-test ``fn(u, v, params) -> bool`` in a local frame (v up, unit-disk scale).
Source classes differ by outline; the new object classes are compositions of parts that are not
themselves source classes; aircraft share one part list and differ only in proportions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._render import ShapeFn, box, capsule, disk, poly_shape, polygon, regular_pts, star_pts


def _polar(u, v):
    return np.sqrt(u * u + v * v), np.arctan2(v, u)


def _ring(u, v, _p):
    r2 = u * u + v * v
    return (r2 <= 0.92**2) & (r2 >= 0.55**2)


def _cross(u, v, _p):
    return box(u, v, -0.3, 0.3, -0.92, 0.92) | box(u, v, -0.92, 0.92, -0.3, 0.3)


def _heart(u, v, _p):
    x, y = u * 1.25, v * 1.25 + 0.15
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


def _crescent(u, v, _p):
    return disk(u, v, 0.92) & ~disk(u, v, 0.75, cx=0.42, cy=0.1)


def _half_disk(u, v, _p):
    return disk(u, v + 0.42, 0.95) & (v >= -0.42)


def _frame(u, v, _p):
    return box(u, v, -0.82, 0.82, -0.82, 0.82) & ~box(u, v, -0.45, 0.45, -0.45, 0.45)


def _gear(u, v, _p):
    r, th = _polar(u, v)
    return (r <= 0.68 + 0.27 * (np.cos(8 * th) > 0)) & (r >= 0.25)


SOURCE_SHAPES: dict[str, ShapeFn] = {
    "disk": lambda u, v, _p: disk(u, v, 0.85),
    "ellipse": lambda u, v, _p: u * u + (v / 0.5) ** 2 <= 0.95**2,
    "triangle": poly_shape(regular_pts(3, 1.0)),
    "square": poly_shape(regular_pts(4, 1.0, math.pi / 4)),
    "pentagon": poly_shape(regular_pts(5, 0.95)),
    "hexagon": poly_shape(regular_pts(6, 0.95)),
    "star5": poly_shape(star_pts(5, 1.0, 0.42)),
    "star4": poly_shape(star_pts(4, 1.0, 0.33)),
    "ring": _ring,
    "cross": _cross,
    "arrow": poly_shape([(-0.92, -0.2), (0.15, -0.2), (0.15, -0.6), (0.95, 0.0), (0.15, 0.6), (0.15, 0.2),
                         (-0.92, 0.2)]),
    "heart": _heart,
    "crescent": _crescent,
    "half-disk": _half_disk,
    "ell": poly_shape([(-0.7, -0.9), (0.8, -0.9), (0.8, -0.4), (-0.2, -0.4), (-0.2, 0.9), (-0.7, 0.9)]),
    "tee": poly_shape([(-0.9, 0.9), (0.9, 0.9), (0.9, 0.45), (0.25, 0.45), (0.25, -0.9), (-0.25, -0.9),
                       (-0.25, 0.45), (-0.9, 0.45)]),
    "chevron": poly_shape([(-0.95, -0.35), (0.0, 0.65), (0.95, -0.35), (0.6, -0.62), (0.0, 0.05), (-0.6, -0.62)]),
    "trapezoid": poly_shape([(-0.95, -0.55), (0.95, -0.55), (0.42, 0.55), (-0.42, 0.55)]),
    "parallelogram": poly_shape([(-0.95, -0.45), (0.4, -0.45), (0.95, 0.45), (-0.4, 0.45)]),
    "diamond": poly_shape([(0.0, 1.0), (0.55, 0.0), (0.0, -1.0), (-0.55, 0.0)]),
    "hourglass": poly_shape([(-0.75, 0.92), (0.75, 0.92), (0.12, 0.0), (0.75, -0.92), (-0.75, -0.92), (-0.12, 0.0)]),
    "house": poly_shape([(-0.6, -0.88), (0.6, -0.88), (0.6, 0.1), (0.92, 0.1), (0.0, 0.92), (-0.92, 0.1), (-0.6, 0.1)]),
    "frame": _frame,
    "gear": _gear,
}


def _snowman(u, v, _p):
    return disk(u, v, 0.55, cy=-0.38) | disk(u, v, 0.38, cy=0.52)


def _dumbbell(u, v, _p):
    return disk(u, v, 0.36, cx=-0.58) | disk(u, v, 0.36, cx=0.58) | box(u, v, -0.6, 0.6, -0.12, 0.12)


def _mushroom(u, v, _p):
    return (disk(u, v, 0.95, cy=0.0) & (v >= 0.0)) | box(u, v, -0.22, 0.22, -0.9, 0.05)


def _tree(u, v, _p):
    return polygon(u, v, [(-0.75, -0.42), (0.75, -0.42), (0.0, 0.95)]) | box(u, v, -0.15, 0.15, -0.95, -0.4)


def _target(u, v, _p):
    r2 = u * u + v * v
    return (r2 <= 0.27**2) | ((r2 >= 0.52**2) & (r2 <= 0.92**2))


def _letter_h(u, v, _p):
    return box(u, v, -0.8, -0.42, -0.9, 0.9) | box(u, v, 0.42, 0.8, -0.9, 0.9) | box(u, v, -0.8, 0.8, -0.17, 0.17)


def _horseshoe(u, v, _p):
    r2 = u * u + v * v
    lower = (r2 >= 0.45**2) & (r2 <= 0.88**2) & (v <= 0)
    return lower | (box(u, v, -0.88, -0.45, 0.0, 0.85) | box(u, v, 0.45, 0.88, 0.0, 0.85))


def _letter_y(u, v, _p):
    w = 0.17
    arms = [capsule(u, v, (0, 0), tip, w) for tip in ((0, -0.88), (-0.72, 0.62), (0.72, 0.62))]
    return arms[0] | arms[1] | arms[2]


def _key(u, v, _p):
    r2 = (u + 0.52) ** 2 + v * v
    bow = (r2 <= 0.4**2) & (r2 >= 0.18**2)
    shaft = box(u, v, -0.15, 0.95, -0.1, 0.1)
    return bow | shaft | box(u, v, 0.5, 0.64, -0.42, 0.0) | box(u, v, 0.78, 0.95, -0.36, 0.0)


def _sun(u, v, _p):
    r, th = _polar(u, v)
    return (r <= 0.42) | ((r >= 0.58) & (r <= 0.95) & (np.cos(8 * th) > 0.55))


OBJECT_SHAPES: dict[str, ShapeFn] = {
    "snowman": _snowman,
    "dumbbell": _dumbbell,
    "mushroom": _mushroom,
    "tree": _tree,
    "target": _target,
    "letter-h": _letter_h,
    "horseshoe": _horseshoe,
    "letter-y": _letter_y,
    "key": _key,
    "sun": _sun,
}


# --------------------------------------------------------------------------------------------
# Aircraft: one part list (fuselage, swept wings, tailplane), ten proportion variants

# per-instance params columns
AIRCRAFT_PARAMS = ("span", "sweep", "wing_pos", "tail_span", "length", "chord")


def _aircraft(u, v, p):
    span, sweep, wing_pos, tail_span, length, chord = (p[:, j] for j in range(len(AIRCRAFT_PARAMS)))
    au = np.abs(u)
    body = (u / 0.12) ** 2 + (v / length) ** 2 <= 1.0
    lead = wing_pos + chord / 2
    tip = lead - sweep
    wings = polygon(au, v, [(-0.05, lead), (span, tip), (span, tip - 0.45 * chord), (-0.05, lead - chord)])
    tail_y = -0.78 * length
    tail = polygon(
        au, v, [(-0.05, tail_y + 0.14), (tail_span, tail_y + 0.02), (tail_span, tail_y - 0.06), (-0.05, tail_y - 0.08)]
    )
    return body | wings | tail


_aircraft.extent = 1.12  # longest fuselage (0.95 + jitter) and widest span stay inside this radius


def _aircraft_variants() -> dict[str, tuple[float, ...]]:
    """Ten classes from a 2x2x2x2 grid of span, sweep, wing position and tail span."""
    grid = itertools.product((0.62, 0.9), (0.06, 0.34), (-0.02, 0.22), (0.24, 0.42))
    chosen = [c for i, c in enumerate(grid) if i not in (3, 6, 9, 12, 13, 15)]
    names = {}
    for span, sweep, pos, tail in chosen:
        words = (
            "wide" if span > 0.8 else "narrow",
            "swept" if sweep > 0.2 else "straight",
            "fwd" if pos > 0.1 else "mid",
            "bigtail" if tail > 0.3 else "smalltail",
        )
        name = "-".join(words)
        names[name] = (span, sweep, pos, tail, 0.95, 0.34)
    return names


AIRCRAFT_VARIANTS: dict[str, tuple[float, ...]] = _aircraft_variants()
AIRCRAFT_SHAPE: ShapeFn = _aircraft
