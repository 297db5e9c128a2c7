"""``folder:<path>``: a user's image tree, in one of the three layouts users have.

- ``<path>/train/<class>/*`` + ``<path>/test/<class>/*``, optionally ``val/``: the folders' names
  are their roles (validation: ``val/``, else the seeded 20% carve of ``train/``);
- ``<path>/train/`` + ``<path>/val/`` without ``test/`` (the PyTorch transfer-learning tutorial's
  layout): ``val/`` is the held-out test split and validation is carved from ``train/``;
- ``<path>/<class>/*`` (the usual few-shot layout): one split, ``all``; few-shot pools every image,
  linear and fine-tune refuse it (they need a test split nobody chose by looking at it).

Labels come from one class list for every split: ``train/``'s sorted class folders (``<path>``'s
for a flat tree), so a val/test that lacks a class keeps the others' labels; a class folder that
only val/test has is one error. Images are files with torchvision's image extensions; hidden files
and other extensions are skipped (``python -m ssl_lib datasets --check folder:<path>`` lists them
and decodes every image). The fingerprint covers every image's path, size and mtime, so an image
replaced under the same name changes the feature-cache keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from ..exceptions import BadDataError, DataNotFoundError
from ._spec import DatasetSpec

__all__ = ["FolderScan", "FolderImage", "scan_folder", "folder_spec", "LAYOUTS"]

# layout → the line a page shows for it: which folder plays which role
LAYOUTS = {
    "train/test": "train/ → train · val/ → validation (official) · test/ → test",
    "train/test, no val": "train/ → train, minus a seeded 20% carve → validation · test/ → test",
    "train/val (tutorial)": ("train/ → train, minus a seeded 20% carve → validation · val/ → test "
                             "(the PyTorch tutorial layout has no test/; its val/ is the held-out set)"),
    "flat": ("<class>/* → all: one pool for few-shot; linear and fine-tune need "
             "train/<class>/* and test/<class>/* (or val/<class>/*) folders"),
}


@dataclass(frozen=True)
class FolderImage:
    path: str  # relative to the tree's root
    label: int
    size: int
    mtime_ns: int


@dataclass
class FolderScan:
    """What a folder tree holds: the split → folder map, one class list, images and skipped files."""

    root: Path
    layout: str
    dirs: dict[str, str]  # split → folder under root ("" for a flat tree)
    classes: list[str]
    images: dict[str, list[FolderImage]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    extra_classes: dict[str, list[str]] = field(default_factory=dict)  # split → class folders train lacks
    empty_classes: list[str] = field(default_factory=list)  # class folders of the class list without images

    def problems(self) -> list[str]:
        """Why the tree cannot be used as it is (each a sentence with what to do)."""
        out = []
        source = f"{self.dirs['train']}/" if "train" in self.dirs else "the tree"
        for split, extra in self.extra_classes.items():
            folder = self.dirs[split]
            names = ", ".join(repr(c) for c in extra[:5]) + (", ..." if len(extra) > 5 else "")
            out.append(f"{folder}/ has class folder(s) {names} that {source} lacks; labels come from {source}'s "
                       f"classes, so add {source}{extra[0]}/ or remove {folder}/{extra[0]}/")
        if self.empty_classes:
            out.append(f"class folder(s) {', '.join(repr(c) for c in self.empty_classes[:5])} of {source} hold no "
                       f"images ({', '.join(IMG_EXTENSIONS)}); add images or remove the folder(s)")
        for split, images in self.images.items():
            if not images:
                out.append(f"{self.dirs[split] or 'the tree'}/ holds no images ({', '.join(IMG_EXTENSIONS)})")
        return out

    def fingerprint(self) -> str:
        """Hash of the layout, the class list and every image's path, label, size and mtime."""
        h = hashlib.sha256(f"{self.layout}\n{self.classes}\n".encode())
        for split, images in self.images.items():
            for im in images:
                h.update(f"{split}\t{im.path}\t{im.label}\t{im.size}\t{im.mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def _visible_dirs(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _layout(spec: str, root: Path) -> tuple[str, dict[str, str]]:
    top = set(_visible_dirs(root))
    if "train" in top:
        if "test" in top:
            dirs = {s: s for s in ("train", "val", "test") if s in top}
            return ("train/test" if "val" in top else "train/test, no val"), dirs
        if "val" in top:
            return "train/val (tutorial)", {"train": "train", "test": "val"}
        raise DataNotFoundError(f"{spec!r}: {root}/train/ has no test/ (or val/) beside it; add {root}/test/<class>/* "
                                "for the held-out images, or pass the train/ folder itself for a flat few-shot pool.")
    if top & {"val", "test"}:
        raise DataNotFoundError(f"{spec!r}: {root} has {'/'.join(sorted(top & {'val', 'test'}))}/ but no train/; "
                                f"add {root}/train/<class>/*.")
    return "flat", {"all": ""}


def scan_folder(spec: str) -> FolderScan:
    """Walk the tree once (no image is opened): layout, class list, images, skipped files."""
    root = Path(spec[len("folder:"):]).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            f"{spec!r}: {root} is not a directory; expected {root}/train/<class>/* and {root}/test/<class>/* "
            f"(or train/ + val/, or a flat {root}/<class>/*)."
        )
    layout, dirs = _layout(spec, root)
    class_root = root / dirs.get("train", "")
    classes = _visible_dirs(class_root)
    index = {c: i for i, c in enumerate(classes)}
    scan = FolderScan(root, layout, dirs, classes)
    for split, folder in dirs.items():
        base = root / folder
        found = _visible_dirs(base)
        if extra := [c for c in found if c not in index]:
            scan.extra_classes[split] = extra
        with os.scandir(base) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                rel = str(Path(folder, e.name)) + ("/" if e.is_dir() else "")
                if e.name.startswith("."):
                    scan.skipped.append((rel, "hidden"))
                elif not e.is_dir():
                    scan.skipped.append((rel, "not inside a class folder"))
        images = []
        for cls in found:
            if cls not in index:
                continue
            for dirpath, dirnames, filenames in os.walk(base / cls, followlinks=True):  # as ImageFolder
                dirnames.sort()
                rel_dir = Path(dirpath).relative_to(root)
                for name in [d for d in dirnames if d.startswith(".")]:
                    scan.skipped.append((f"{rel_dir / name}/", "hidden folder"))
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in sorted(filenames):
                    rel = str(rel_dir / name)
                    if name.startswith("."):
                        scan.skipped.append((rel, "hidden file"))
                    elif not has_file_allowed_extension(name, IMG_EXTENSIONS):
                        suffix = Path(name).suffix or "no extension"
                        scan.skipped.append((rel, f"{suffix}: not an image extension torchvision reads"))
                    else:
                        st = os.stat(Path(dirpath) / name)
                        images.append(FolderImage(rel, index[cls], st.st_size, st.st_mtime_ns))
        scan.images[split] = images
    if layout != "flat":
        known = set(dirs.values())
        scan.skipped += [(f"{d}/", "not a split folder (train/, val/, test/)") for d in _visible_dirs(root) if d not in known]
    counted = {im.label for im in scan.images["train" if "train" in dirs else "all"]}
    scan.empty_classes = [c for i, c in enumerate(classes) if i not in counted]
    return scan


def _open(scan: FolderScan, split: str, *, transform=None, root=None, download: bool = False):
    from ._paper import FileListDataset

    images = scan.images[split]
    return FileListDataset(scan.root, [im.path for im in images], [im.label for im in images], transform,
                           classes=scan.classes)


def folder_spec(spec: str) -> DatasetSpec:
    """A card for an image tree; one line naming the first problem if it cannot be used as it is."""
    scan = scan_folder(spec)
    problems = scan.problems()
    if problems:
        more = f" ({len(problems) - 1} more problem(s); see `python -m ssl_lib datasets --check {spec}`)" if len(problems) > 1 else ""
        raise BadDataError(f"{spec!r}: {problems[0]}.{more}")
    counts = ", ".join(f"{split} {len(images)}" for split, images in scan.images.items())
    skipped = f"; {len(scan.skipped)} files skipped (see --check)" if scan.skipped else ""
    return DatasetSpec(
        name=spec, zoo="folder", kind="classification", num_classes=len(scan.classes), metric="top1",
        splits=tuple(scan.images), open=partial(_open, scan),
        description=f"Image folder {scan.root} ({scan.layout} layout: {counts} images{skipped})",
        fingerprint=scan.fingerprint(), layout=LAYOUTS[scan.layout],
    )
