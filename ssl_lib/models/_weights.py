"""Fetching, verifying and converting checkpoints into backbone state dicts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

from ..exceptions import ChecksumError, DataNotFoundError
from ..paths import cache_dir

__all__ = ["sha256_file", "verify_sha256", "fetch_weights", "convert_state_dict", "state_dict_fingerprint"]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> str:
    """Return the file's sha256; raise :class:`ChecksumError` naming the file if it differs."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ChecksumError(
            f"Checksum mismatch for {path}: expected sha256 {expected[:12]}…, got {actual[:12]}…. "
            "The file is corrupt or was replaced; delete it and download or regenerate it."
        )
    return actual


def fetch_weights(url: str, sha256: str | None) -> Path:
    """Download ``url`` once into the cache (verified by sha256 when one is recorded)."""
    target = cache_dir("weights") / Path(url.split("?")[0]).name
    if not target.exists():
        try:
            torch.hub.download_url_to_file(url, str(target), hash_prefix=None, progress=True)
        except Exception as err:  # network errors come in many types
            raise DataNotFoundError(
                f"Could not download {url} ({type(err).__name__}: {err}). "
                f"Download it by hand to {target} and run again."
            ) from None
    actual = verify_sha256(target, sha256)
    if sha256 is None:
        print(f"sha256 of {target.name}: {actual} (not recorded upstream; pin it in your study file)")
    return target


def load_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def convert_state_dict(
    checkpoint: Mapping,
    *,
    state_dict_key: tuple[str, ...] = ("state_dict", "model", "resnet"),
    key_prefix: str = "",
    drop_keys: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Unwrap, strip the method's prefix and drop head keys (the paper's ``LoadedResNet``).

    With a prefix, only keys that carry it are kept: MoCo checkpoints also hold the momentum
    encoder (``module.encoder_k.``), which must not leak into the backbone.
    """
    state = checkpoint
    for key in state_dict_key:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if key_prefix:
        state = {k[len(key_prefix):]: v for k, v in state.items() if k.startswith(key_prefix)}
    return {k: v for k, v in state.items() if not any(d in k for d in drop_keys)}


def state_dict_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over parameter names and bytes: identifies the weights whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
