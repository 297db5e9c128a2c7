"""Canonical split sizes: a local copy of a paper dataset whose counts differ stops the run.

A dead link sends users to mirrors, and mirrors differ (a Cars copy with 8143/8040 images, the
de-duplicated Caltech-101 list): numbers computed on them are not the paper's. Opening a split
compares its image count with the card's; a difference is one :class:`SplitSizeError` line with
expected vs found and what is likely wrong, unless the dataset is named in the explicit
``accept_split_sizes`` parameter, and then the rows' ``data_check`` column records it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..exceptions import ConfigError, SplitSizeError
from ._spec import DatasetSpec

__all__ = ["ACCEPT_HINT", "check_split_size", "size_note", "parse_accepted"]

ACCEPT_HINT = ("To run on this copy anyway, name it in the parameter accept_split_sizes "
               "(`-p accept_split_sizes {name}`, or in the study section's params); the rows record it.")


def check_split_size(spec: DatasetSpec, split: str, found: int, *, accept: bool = False, where: str = "") -> None:
    """Raise :class:`SplitSizeError` when ``found`` differs from the card's size for ``split``."""
    expected = dict(spec.split_sizes).get(split)
    if expected is None or found == expected or accept:
        return
    others = ", ".join(f"{s} {n}" for s, n in spec.split_sizes if s != split)
    place = f" under {where}" if where else ""
    raise SplitSizeError(
        f"Dataset {spec.name!r} split {split!r}{place} has {found} images; the canonical split has {expected}"
        f"{f' (and {others})' if others else ''}. Likely: {spec.size_hint} {ACCEPT_HINT.format(name=spec.name)}"
    )


def size_note(spec: DatasetSpec, counts: dict[str, int]) -> str:
    """What a row records: ``""`` (no canonical sizes), the matching sizes, or the accepted mismatch."""
    expected = dict(spec.split_sizes)
    checked = {s: n for s, n in counts.items() if s in expected}
    if not checked:
        return ""
    off = {s: n for s, n in checked.items() if n != expected[s]}
    if not off:
        return "canonical sizes: " + ", ".join(f"{s} {n}" for s, n in checked.items())
    return "accepted size mismatch: " + ", ".join(
        f"{s} {n} (canonical {expected[s]})" if s in off else f"{s} {n}" for s, n in checked.items())


def parse_accepted(value: str | Iterable[str]) -> frozenset[str]:
    """``"cars, caltech101"`` → the dataset names whose size mismatch a run accepts (each checked)."""
    from . import get_dataset_spec

    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    for name in names:
        if not get_dataset_spec(name).split_sizes:
            raise ConfigError(f"accept_split_sizes names {name!r}, which has no canonical split sizes to differ "
                              "from; name only paper datasets.")
    return frozenset(names)
