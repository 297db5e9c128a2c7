"""Train the mini zoo model by model: checkpoint, source probe, manifest entry (resumable)."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from ..paths import atomic_path, repo_root
from .checkpoint import load_checkpoint, save_checkpoint
from .probe import extract_features, linear_probe
from .recipes import ARCH, MEAN, SOURCE, STD, ZOO, Recipe
from .train import build_backbone, pretrain

__all__ = ["DEFAULT_OUT", "read_manifest", "write_manifest_entry", "build_model", "build_zoo", "load_source"]

DEFAULT_OUT = repo_root() / "ssl_lib" / "zoo" / "mini"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest_entry(out: Path, name: str, entry: dict) -> None:
    """Insert/replace one model's entry (kept in zoo order) and rewrite the manifest atomically.

    A lock file makes the read-modify-write safe when several ``--model`` runs share ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = Path(tempfile.gettempdir()) / f"ssl_lib-manifest-{hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:12]}.lock"
    with FileLock(str(lock)):  # outside the repo, so no stray lock file gets committed
        manifest = read_manifest(out)
        manifest[name] = entry
        order = {n: i for i, n in enumerate(ZOO)}
        manifest = dict(sorted(manifest.items(), key=lambda kv: order.get(kv[0], len(order))))
        with atomic_path(out / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")


def load_source(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The labelled source domain's splits as ``{split: (uint8 images NHWC, int64 labels)}``."""
    from ..data.mini import load

    splits = {s: load(SOURCE, s, seed=seed) for s in ("train", "val", "test")}
    return {s: (d["images"], d["labels"].astype(np.int64)) for s, d in splits.items()}


def source_top1(backbone: torch.nn.Module, source: dict) -> dict:
    feats = {s: (extract_features(backbone, x), y) for s, (x, y) in source.items()}
    return linear_probe(feats["train"], feats["val"], feats["test"])


def build_model(name: str, recipe: Recipe, source: dict, out: Path, *, force: bool = False) -> dict:
    """Train (or reuse) one checkpoint, probe it, record it; returns its manifest entry."""
    out = Path(out)
    path = out / f"{name}.pth"
    previous = read_manifest(out).get(name, {})
    train_seconds = previous.get("train_seconds")
    stale = previous.get("recipe") not in (None, recipe.to_dict())
    if path.exists() and not force and not stale:
        if previous.get("sha256") == sha256_file(path) and previous.get("source_top1") is not None:
            print(f"[{name}] exists, skipping (use --force to retrain)")
            return previous
        print(f"[{name}] exists without a manifest entry; probing it")
    else:
        if stale and not force:
            print(f"[{name}] the recipe changed since this checkpoint was trained; retraining")
        images, labels = source["train"]
        start = time.perf_counter()
        backbone, losses = pretrain(
            recipe, torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels).long(),
            int(labels.max()) + 1, desc=name,
        )
        train_seconds = round(time.perf_counter() - start, 1)
        meta = {"name": name, "arch": ARCH, "recipe": recipe.to_dict(), "mean": list(MEAN), "std": list(STD),
                "source": SOURCE, "epoch_losses": [round(v, 6) for v in losses]}
        save_checkpoint(backbone, meta, path)
    # Probe the weights as saved (fp16-rounded), so the number describes the committed file.
    state, meta = load_checkpoint(path)
    backbone = build_backbone(recipe.seed)
    backbone.load_state_dict(state)
    start = time.perf_counter()
    probe = source_top1(backbone, source)
    entry = {
        "file": path.name,
        "sha256": sha256_file(path),
        "arch": ARCH,
        "objective": recipe.objective,
        "augmentation": recipe.augmentation,
        "recipe": recipe.to_dict(),
        "seed": recipe.seed,
        "train_seconds": train_seconds,
        "probe_seconds": round(time.perf_counter() - start, 1),
        "mean": list(MEAN),
        "std": list(STD),
        "source": SOURCE,
        "source_top1": round(probe["top1"], 2),
        "source_val_top1": round(probe["val_top1"], 2),
        "probe_C": probe["C"],
        "final_loss": (meta.get("epoch_losses") or [None])[-1],
    }
    write_manifest_entry(out, name, entry)
    print(f"[{name}] source top-1 {entry['source_top1']:.2f}% (C={probe['C']}), "
          f"train {train_seconds}s, probe {entry['probe_seconds']}s")
    return entry


def build_zoo(names: list[str], out: Path = DEFAULT_OUT, *, epochs: int | None = None, force: bool = False) -> dict:
    recipes = {n: ZOO.get(n).with_epochs(epochs) for n in names}  # unknown names fail before any work
    source = load_source()
    return {n: build_model(n, r, source, out, force=force) for n, r in recipes.items()}
