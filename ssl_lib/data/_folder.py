"""``folder:<path>``: a user's image-folder tree, ``<path>/{train,val,test}/<class>/<image>``."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import torchvision.datasets as tvd

from ..exceptions import DataNotFoundError
from ._spec import DatasetSpec

__all__ = ["folder_spec"]


def _open(path: Path, split: str, *, transform=None, root=None, download: bool = False):
    return tvd.ImageFolder(str(path / split), transform=transform)


def folder_spec(spec: str) -> DatasetSpec:
    """A card for an image-folder tree; ``val/`` is optional (else the seeded 20% carve)."""
    path = Path(spec[len("folder:"):]).expanduser()
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        raise DataNotFoundError(
            f"{spec!r}: expected {path}/train/<class>/* and {path}/test/<class>/* (and optionally val/)."
        )
    splits = tuple(s for s in ("train", "val", "test") if (path / s).is_dir())
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    listing = "\n".join(str(p.relative_to(path)) for p in sorted(path.rglob("*")) if p.is_file())
    return DatasetSpec(
        name=spec, zoo="folder", kind="classification", num_classes=len(classes), metric="top1",
        splits=splits, open=partial(_open, path), description=f"Image folder {path}",
        fingerprint=hashlib.sha256(listing.encode()).hexdigest()[:16],
    )
