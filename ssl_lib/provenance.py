"""Where a result came from: code version, environment, device."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from functools import cache

import torch

from . import __version__
from .paths import repo_root

__all__ = ["environment", "git_state", "utc_now"]


@cache
def git_state() -> tuple[str | None, bool | None]:
    """``(sha, dirty)`` of the checkout holding ssl_lib, or ``(None, None)`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
            capture_output=True, text=True, check=True,
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment(device: torch.device | str | None = None) -> dict:
    sha, dirty = git_state()
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "ssl_lib_version": __version__,
        "torch_version": torch.__version__,
        "device": name,
    }
