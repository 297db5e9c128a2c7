"""User-facing errors: each says what is wrong and what to do, in one line.

All derive from :class:`SSLLibError` (a ``ValueError``) so that the CLI and the notebooks can
print ``str(err)`` instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "SSLLibError",
    "UnknownNameError",
    "ChecksumError",
    "DataNotFoundError",
    "ConfigError",
    "BadDataError",
    "SplitSizeError",
]


class SSLLibError(ValueError):
    """Base class for errors caused by user input (names, files, parameters)."""

    def _render_traceback_(self) -> list[str]:
        """IPython/Jupyter hook: show the message as one line, not a traceback."""
        return [f"{type(self).__name__}: {self}"]


class UnknownNameError(SSLLibError, KeyError):
    """A model, dataset, protocol or solver name that no registry knows."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ChecksumError(SSLLibError):
    """A file whose sha256 does not match the registered one."""


class DataNotFoundError(SSLLibError, FileNotFoundError):
    """A dataset or checkpoint that is not on disk (and cannot be downloaded here)."""


class ConfigError(SSLLibError):
    """A study file or notebook parameter that is malformed."""


class BadDataError(SSLLibError):
    """Data on disk that cannot be used as it is: an unreadable image, a folder tree whose val/ or
    test/ has a class that train/ lacks."""


class SplitSizeError(BadDataError):
    """A local copy of a paper dataset whose split sizes differ from the canonical ones."""
