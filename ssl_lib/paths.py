"""Where things live on disk: the cache root, the repository's study files, atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "repo_root", "atomic_path"]


def cache_dir(sub: str = "") -> Path:
    """Cache root for generated data and features: ``$SSL_LIB_CACHE`` or ``~/.cache/ssl_lib``."""
    root = Path(os.environ.get("SSL_LIB_CACHE") or Path.home() / ".cache" / "ssl_lib")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_root() -> Path:
    """The checkout that holds ``params/`` and ``notebooks/`` (the package is installed editable)."""
    return Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    A crash leaves the old ``target`` intact and no half-written file under its name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def data_dir() -> Path:
    """Root of real datasets: ``$SSL_LIB_DATA`` or ``<cache>/data``."""
    root = Path(os.environ.get("SSL_LIB_DATA") or cache_dir("data"))
    root.mkdir(parents=True, exist_ok=True)
    return root
