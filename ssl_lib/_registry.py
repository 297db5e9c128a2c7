"""A small name → entry registry shared by models, datasets, protocols and solvers."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .exceptions import UnknownNameError

__all__ = ["Registry", "unknown_name_message"]

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, known: list[str], hint: str = "") -> str:
    """``Unknown model 'byl'. Did you mean 'byol'? Known: ... <hint>`` — one line."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    parts = [f"Unknown {kind} {name!r}."]
    if close:
        parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
    shown = ", ".join(known[:25]) + (", ..." if len(known) > 25 else "")
    parts.append(f"Known {kind}s: {shown}.")
    if hint:
        parts.append(hint)
    return " ".join(parts)


class Registry(Generic[T]):
    """Ordered mapping of unique names to entries; duplicates raise, misses name close matches."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered.")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                unknown_name_message(self.kind, name, list(self._entries), self.hint)
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()
