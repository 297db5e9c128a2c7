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

from ..paths import atomic_path, cache_dir, repo_root
from .checkpoint import load_checkpoint, save_checkpoint
from .probe import extract_features, linear_probe
from .recipes import ARCH, MEAN, SOURCE, STD, ZOO, Recipe
from .train import TrainingState, build_backbone, pretrain

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
        _ratios(manifest)
        order = {n: i for i, n in enumerate(ZOO)}
        manifest = dict(sorted(manifest.items(), key=lambda kv: order.get(kv[0], len(order))))
        with atomic_path(out / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")


def _ratios(manifest: dict) -> None:
    """Each entry's source top-1 as a fraction of supervised's (the paper's regime: 0.77-0.98)."""
    supervised = (manifest.get("supervised") or {}).get("source_top1")
    for entry in manifest.values():
        if isinstance(entry, dict) and "source_top1" in entry:
            top1 = entry["source_top1"]
            entry["ratio_to_supervised"] = round(top1 / supervised, 3) if supervised and top1 is not None else None


def load_source(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The labelled source domain's splits as ``{split: (uint8 images NHWC, int64 labels)}``."""
    from ..data.mini import load

    splits = {s: load(SOURCE, s, seed=seed) for s in ("train", "val", "test")}
    return {s: (d["images"], d["labels"].astype(np.int64)) for s, d in splits.items()}


def source_top1(backbone: torch.nn.Module, source: dict) -> dict:
    feats = {s: (extract_features(backbone, x), y) for s, (x, y) in source.items()}
    return linear_probe(feats["train"], feats["val"], feats["test"])


def state_path(name: str, recipe: Recipe) -> Path:
    """Where an interrupted training of ``name`` keeps its last finished epoch: outside the repository,
    named by the recipe's hash (a changed recipe starts afresh)."""
    return cache_dir("pretrain") / f"{name}-{recipe.identity()}.pt"


def build_model(name: str, recipe: Recipe, source: dict, out: Path, *, force: bool = False,
                device: str | torch.device | None = None) -> dict:
    """Train (or reuse, or resume) one checkpoint, probe it, record it; returns its manifest entry."""
    out = Path(out)
    path = out / f"{name}.pth"
    previous = read_manifest(out).get(name, {})
    stale = previous.get("recipe") not in (None, recipe.to_dict())
    device = torch.device(device or "cpu")
    if path.exists() and not force and not stale:
        if previous.get("sha256") == sha256_file(path) and previous.get("source_top1") is not None:
            print(f"[{name}] exists, skipping (use --force to retrain)")
            return previous
        print(f"[{name}] exists without a manifest entry; probing it")
        train_seconds, losses = previous.get("train_seconds"), previous.get("loss_curve", [])
        trained_on = previous.get("device")
    else:
        if stale and not force:
            print(f"[{name}] the recipe changed since this checkpoint was trained; retraining")
        images, labels = source["train"]
        resume = state_path(name, recipe)
        if force and resume.exists() and TrainingState.load(resume, recipe.identity()) is None:
            resume.unlink()
        backbone, losses, train_seconds = pretrain(
            recipe, torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels).long(),
            int(labels.max()) + 1, desc=name, state_path=resume if recipe.epochs else None, device=device,
        )
        train_seconds, trained_on = round(train_seconds, 1), str(device)
        meta = {"name": name, "arch": ARCH, "recipe": recipe.to_dict(), "mean": list(MEAN), "std": list(STD),
                "source": SOURCE, "epoch_losses": [round(v, 6) for v in losses], "device": trained_on}
        save_checkpoint(backbone, meta, path)
        resume.unlink(missing_ok=True)  # the checkpoint is written: the training state has done its job
    # Probe the weights as saved (fp16-rounded), so the number describes the committed file.
    state, meta = load_checkpoint(path)
    backbone = build_backbone(recipe.seed)
    backbone.load_state_dict(state)
    start = time.perf_counter()
    probe = source_top1(backbone, source)
    losses = [round(v, 6) for v in (meta.get("epoch_losses") or losses or [])]
    entry = {
        "file": path.name,
        "sha256": sha256_file(path),
        "arch": ARCH,
        "objective": recipe.objective,
        "augmentation": recipe.augmentation,
        "recipe": recipe.to_dict(),
        "epochs": recipe.epochs,
        "seed": recipe.seed,
        "device": meta.get("device", trained_on),
        "threads": torch.get_num_threads(),
        "train_seconds": train_seconds,
        "probe_seconds": round(time.perf_counter() - start, 1),
        "mean": list(MEAN),
        "std": list(STD),
        "source": SOURCE,
        "source_top1": round(probe["top1"], 2),
        "source_val_top1": round(probe["val_top1"], 2),
        "probe_C": probe["C"],
        "final_loss": losses[-1] if losses else None,
        "loss_curve": losses,
    }
    write_manifest_entry(out, name, entry)
    print(f"[{name}] source top-1 {entry['source_top1']:.2f}% (C={probe['C']}), "
          f"train {train_seconds}s, probe {entry['probe_seconds']}s")
    return entry


def build_zoo(names: list[str], out: Path = DEFAULT_OUT, *, epochs: int | None = None, force: bool = False,
              device: str | torch.device | None = None) -> dict:
    """Train ``names`` in order. ``force`` regenerates them all, resumably: a plan outside the
    repository lists the models this regeneration has finished, so after a kill the same command
    skips those, resumes the interrupted one from its last epoch, and goes on."""
    recipes = {n: ZOO.get(n).with_epochs(epochs) for n in names}  # unknown names fail before any work
    source = load_source()
    plan = _Plan.start(out, recipes) if force else None
    entries = {}
    for name, recipe in recipes.items():
        again = force and name not in plan.done
        entries[name] = build_model(name, recipe, source, out, force=again, device=device)
        if plan is not None:
            plan.finish(name)
    if plan is not None:
        plan.path.unlink(missing_ok=True)
    return entries


class _Plan:
    """The models one regeneration has finished, saved atomically after each."""

    def __init__(self, path: Path, identity: dict, done: list[str]) -> None:
        self.path, self.identity, self.done = path, identity, done

    @classmethod
    def start(cls, out: Path, recipes: dict[str, Recipe]) -> _Plan:
        key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:12]
        path = cache_dir("pretrain") / f"regeneration-{key}.json"
        identity = {name: recipe.identity() for name, recipe in recipes.items()}
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        done = saved.get("done", []) if saved.get("identity") == identity else []
        if done:
            print(f"resuming the regeneration: {len(done)} of {len(recipes)} models already done ({', '.join(done)})")
        plan = cls(path, identity, done)
        plan._save()
        return plan

    def finish(self, name: str) -> None:
        self.done.append(name)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, suffix=".json") as tmp:
            tmp.write_text(json.dumps({"identity": self.identity, "done": self.done}))
