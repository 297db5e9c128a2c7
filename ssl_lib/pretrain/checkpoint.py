"""Checkpoint files: ``{"state_dict": backbone tensors, "meta": plain types}``, loadable with
``torch.load(path, weights_only=True)``; written atomically so an interrupted run leaves none."""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn as nn

from ..exceptions import DataNotFoundError
from ..paths import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_bytes"]


def save_checkpoint(backbone: nn.Module, meta: dict, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Save the backbone's state dict with floating tensors cast to ``dtype`` (fp16 halves the files).

    ``meta`` must hold only plain Python types; it is stored next to the weights so a checkpoint
    found on its own still says how it was made.
    """
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().clone()
        for k, v in backbone.state_dict().items()
    }
    blob = {"state_dict": state, "meta": {**meta, "dtype": str(dtype).removeprefix("torch.")}}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(checkpoint_bytes(blob))
    return path


def checkpoint_bytes(blob: dict) -> bytes:
    """``torch.save`` into memory: a file path would name the zip's top folder after the (random)
    temporary file, so the same weights would never give the same bytes or sha256."""
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    return buffer.getvalue()


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict as float32, meta)``."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"No checkpoint at {path}; train it with `python -m ssl_lib.pretrain --model NAME`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    return state, blob.get("meta", {})
