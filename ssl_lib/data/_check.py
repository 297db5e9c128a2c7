"""``python -m ssl_lib datasets --check``: what is on disk, per dataset, without running anything.

Users' most common failure with the paper's datasets is a dead link or a mirror with another
split, so the report opens each split (no image is decoded), counts it and compares the count
with the canonical one. For a ``folder:`` tree it says what a run would see: the layout and the
split roles, the classes, images per split and class, the validation carve, and every file that
would be skipped (and why) or that cannot be decoded (named by its path; a run stops there).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from ..exceptions import DataNotFoundError, SSLLibError
from ._spec import VAL_FRACTION, carve_validation

__all__ = ["check_dataset", "check_folder"]

_SHOWN = 20  # files listed per kind before "... and N more"


def check_dataset(name: str, root: str | Path | None = None) -> tuple[bool, list[str]]:
    """``(ok, lines)`` for one registered dataset (or ``folder:<path>``)."""
    from . import get_dataset_spec
    from ..paths import data_dir

    if name.startswith("folder:"):
        try:
            return check_folder(name)
        except SSLLibError as err:  # no tree, or no train/ beside test/
            return False, [f"{name}: {err}"]
    spec = get_dataset_spec(name)
    if spec.zoo == "mini":
        return True, [f"{name}: generated on demand (the mini suite); nothing on disk to check."]
    root = Path(root).expanduser() if root else data_dir()
    counts = {}
    for split in spec.splits:
        try:
            counts[split] = len(spec.open(split, root=root, download=False))
        except SSLLibError as err:  # missing files, or a loader's one-line complaint about them
            kind = "missing" if isinstance(err, DataNotFoundError) else "unusable"
            return False, [f"{name}: {kind}: {err}"]
    expected = dict(spec.split_sizes)
    found = ", ".join(f"{s} {n}" + (f" (canonical {expected[s]})" if s in expected and n != expected[s] else "")
                      for s, n in counts.items())
    if not expected:
        return True, [f"{name}: present under {root}: {found}; no canonical sizes to compare with."]
    if all(counts[s] == n for s, n in expected.items()):
        return True, [f"{name}: ok under {root}: {found} (the canonical sizes)."]
    return False, [f"{name}: SIZE MISMATCH under {root}: {found}. Likely: {spec.size_hint}"]


def _per_class(images, classes: list[str]) -> str:
    counts = [0] * len(classes)
    for im in images:
        counts[im.label] += 1
    if len(classes) <= 12:
        return ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
    return f"per class {min(counts)}–{max(counts)}"


def _listing(title: str, items: list[tuple[str, str]]) -> list[str]:
    if not items:
        return []
    lines = [f"  {title} ({len(items)}):"] + [f"    {path}: {why}" for path, why in items[:_SHOWN]]
    if len(items) > _SHOWN:
        lines.append(f"    ... and {len(items) - _SHOWN} more")
    return lines


def _unreadable(scan, progress: bool) -> list[tuple[str, str]]:
    """Decode every image with the loader a run uses; the ones that fail, with PIL's reason."""
    from ._paper import FileListDataset

    loader = FileListDataset(scan.root, [], []).loader
    images = [im for split in scan.images.values() for im in split]
    bad = []
    for im in tqdm(images, desc="decoding", file=sys.stderr, disable=not progress or len(images) < 200, mininterval=1):
        try:
            loader(scan.root / im.path)
        except (OSError, SyntaxError, ValueError) as err:
            bad.append((im.path, (str(err).splitlines() or [type(err).__name__])[0]))
    return bad


def check_folder(name: str, *, progress: bool = True) -> tuple[bool, list[str]]:
    """``(ok, lines)`` describing a ``folder:`` tree as a run would read it."""
    from ._folder import LAYOUTS, scan_folder

    scan = scan_folder(name)
    lines = [f"{name}: {scan.layout} layout — {LAYOUTS[scan.layout]}"]
    shown = ", ".join(scan.classes[:12]) + (", ..." if len(scan.classes) > 12 else "")
    lines.append(f"  classes ({len(scan.classes)}, from {scan.dirs.get('train', '.') or '.'}/): {shown}")
    for split, images in scan.images.items():
        folder = scan.dirs[split] or "."
        lines.append(f"  {split} ({folder}/): {len(images)} images ({_per_class(images, scan.classes)})")
    if "train" in scan.images and "val" not in scan.images:
        n = len(scan.images["train"])
        n_val = len(carve_validation(n)[1]) if n else 0
        lines.append(f"  validation: the seeded {VAL_FRACTION:.0%} carve of train (seed 0): {n_val} of {n} images; "
                     f"{n - n_val} remain for fitting")
    elif "val" in scan.images:
        lines.append(f"  validation: val/ ({len(scan.images['val'])} images, official)")
    lines += _listing("skipped", scan.skipped)
    bad = _unreadable(scan, progress)
    lines += _listing("unreadable images (a run stops at the first; remove or replace them)", bad)
    problems = scan.problems()
    lines += [f"  problem: {p}" for p in problems]
    ok = not problems and not bad
    lines.append("  ready." if ok else "  not ready: fix the problems above.")
    return ok, lines
