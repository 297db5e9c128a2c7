"""Fetching, verifying and converting checkpoints into backbone state dicts.

Checksums: a card's ``sha256`` wins when set. None of the paper's upstream files publishes one,
so a user pins the hashes of the files they downloaded or converted in a ``sha256sum``-format
file (``<sha256>  <file name>`` per line), ``$SSL_LIB_WEIGHTS_SHA256`` or
``~/.config/ssl_lib/weights.sha256``; ``python -m ssl_lib.models.convert hash <model> --record``
writes it. Every later load of a file in the weights cache is checked against its pin, so a
re-download that changed upstream, or a corrupted file, is refused by name.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..exceptions import ChecksumError, ConfigError, DataNotFoundError
from ..paths import atomic_path, cache_dir

__all__ = [
    "PINS_ENV", "sha256_file", "verify_sha256", "pins_path", "read_pins", "record_pin", "expected_sha256",
    "cached_weights_path", "fetch_weights", "load_checkpoint", "convert_state_dict", "load_strict",
    "state_dict_fingerprint",
]

PINS_ENV = "SSL_LIB_WEIGHTS_SHA256"
_PIN_LINE = re.compile(r"^(?P<hash>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
_verified: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) → sha256 already checked


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, source: str = "the model card") -> str:
    """Return the file's sha256; raise :class:`ChecksumError` naming the file and both hashes if it differs."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    actual = _verified.get(key) or sha256_file(path)
    if expected and actual != expected.lower():
        raise ChecksumError(
            f"Checksum mismatch for {path}: expected sha256 {expected.lower()} ({source}), got {actual}. "
            "The file is corrupt or was replaced: delete it and download or convert it again, "
            f"or, if the new file is the right one, update {source}."
        )
    _verified[key] = actual
    return actual


def pins_path() -> Path:
    """The user's checksum file: ``$SSL_LIB_WEIGHTS_SHA256`` or ``$XDG_CONFIG_HOME/ssl_lib/weights.sha256``."""
    if os.environ.get(PINS_ENV):
        return Path(os.environ[PINS_ENV]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "ssl_lib" / "weights.sha256"


def read_pins(path: Path | None = None) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-format file (``#`` comments allowed)."""
    path = path or pins_path()
    if not path.exists():
        return {}
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN_LINE.match(line)
        if not match:
            raise ConfigError(
                f"{path}, line {number}: expected '<64 hex digits>  <file name>' (sha256sum format), got {line[:60]!r}."
            )
        pins[Path(match["name"]).name] = match["hash"].lower()
    return pins


def record_pin(name: str, digest: str, path: Path | None = None) -> Path:
    """Add or replace the pin for file ``name``; the file is rewritten atomically."""
    path = path or pins_path()
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if not ((m := _PIN_LINE.match(line.strip())) and Path(m["name"]).name == name)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join([*kept, f"{digest.lower()}  {name}"]) + "\n")
    return path


def expected_sha256(path: Path, card_sha256: str | None) -> tuple[str | None, str]:
    """The hash ``path`` must have and where it comes from: the card, else a user pin (weights cache only)."""
    if card_sha256:
        return card_sha256, "the model card"
    if Path(path).resolve().parent == cache_dir("weights").resolve():
        pinned = read_pins().get(Path(path).name)
        if pinned:
            return pinned, f"the pin in {pins_path()}"
    return None, ""


def cached_weights_path(weights: str) -> Path | None:
    """The local file for a card's ``weights`` (URL or ``manual:``); None for torchvision/timm/zoo sources."""
    if weights.startswith(("http://", "https://")):
        return cache_dir("weights") / Path(weights.split("?")[0]).name
    if weights.startswith("manual:"):
        return cache_dir("weights") / weights.split(":", 1)[1]
    return None


def fetch_weights(url: str, sha256: str | None) -> Path:
    """Download ``url`` once into the cache; verify it against the card's or the user's pinned sha256."""
    target = cached_weights_path(url)
    if not target.exists():
        try:
            torch.hub.download_url_to_file(url, str(target), hash_prefix=None, progress=True)
        except Exception as err:  # network errors come in many types
            raise DataNotFoundError(
                f"Could not download {url} ({type(err).__name__}: {err}). "
                f"Download it by hand to {target} and run again."
            ) from None
    expected, source = expected_sha256(target, sha256)
    actual = verify_sha256(target, expected, source)
    if expected is None:
        print(
            f"sha256 of {target.name}: {actual} (no published checksum; pin it with "
            f"`python -m ssl_lib.models.convert hash {target} --record`)"
        )
    return target


def load_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    """``torch.load`` with ``weights_only=True`` (``.safetensors`` through safetensors); files in the
    weights cache are checked against their pins."""
    path = Path(path)
    expected, source = expected_sha256(path, None)
    if expected:
        verify_sha256(path, expected, source)
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # a valid pickle, but of classes a safe load refuses
            raise ConfigError(
                f"Checkpoint {path} holds Python objects besides tensors (e.g. an optimizer or a class), which a "
                "safe load (weights_only=True) refuses: save only the weights (torch.save(model.state_dict(), path)), "
                "or re-save the state dict from a session you trust."
            ) from None
        raise ConfigError(f"Checkpoint {path} cannot be read as a PyTorch state dict ({_first_line(err)}).") from None
    except (RuntimeError, EOFError, OSError) as err:  # truncated, corrupt, or not a zip / pickle at all
        raise ConfigError(f"Checkpoint {path} cannot be read as a PyTorch state dict ({_first_line(err)}); "
                          "it may be truncated: download or save it again.") from None


def _first_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # torch colours parts of its messages
    return text.splitlines()[0][:160] if text else type(err).__name__


def convert_state_dict(
    checkpoint: Mapping,
    *,
    state_dict_key: tuple[str, ...] = ("state_dict", "model", "resnet"),
    key_prefix: str = "",
    drop_keys: tuple[str, ...] = (),
    drop_prefixes: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Unwrap, strip the method's prefix and drop head keys (the paper's ``LoadedResNet``).

    With a prefix, only keys that carry it are kept: MoCo/PCL checkpoints also hold the momentum
    encoder (``module.encoder_k.``) and the queue, which must not leak into the backbone.
    A SimCLR-v2 state dict in Separius' layout (``net.0.0.weight``...) is renamed to torchvision
    keys first, as the paper's ``simclr_keys.pkl`` does.
    """
    from .convert import is_separius_layout, simclr_v2_from_separius

    state = checkpoint
    for key in state_dict_key:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if key_prefix:
        state = {k[len(key_prefix):]: v for k, v in state.items() if k.startswith(key_prefix)}
    if is_separius_layout(state):
        state = simclr_v2_from_separius(state)
    return {k: v for k, v in state.items() if not any(d in k for d in drop_keys) and not k.startswith(drop_prefixes)}


def load_strict(backbone: torch.nn.Module, state: Mapping[str, torch.Tensor], cfg) -> None:
    """Strict load with one readable error (missing/unexpected keys or shape mismatches)."""
    if cfg.zoo == "file":
        hint = "Check the arch= and prefix= options."
    elif cfg.zoo == "timm" and cfg.weights not in ("random",) and not cfg.weights.startswith(("timm:", "hf-hub:")):
        hint = "Check the timm architecture name and the prefix= and key= options."
    else:
        hint = "The checkpoint does not match its card."
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)[:200])
        raise ConfigError(
            f"Checkpoint for {cfg.qualified_name!r} does not fit architecture {cfg.arch!r}: {first} {hint}"
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"Checkpoint for {cfg.qualified_name!r} does not fit architecture {cfg.arch!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}). {hint}"
        )


def state_dict_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over parameter names and bytes: identifies the weights whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
