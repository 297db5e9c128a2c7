"""The mini zoo: one small ResNet pretrained on the generated source domain by ``ssl_lib.pretrain``.

Checkpoints and their sha256 live in ``ssl_lib/zoo/mini/`` (``manifest.json``); ``make models``
regenerates them. Names follow the paper's method names so ``-p model byol`` means the mini BYOL
in the mini study.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._cfg import ModelCfg

__all__ = ["MINI_ZOO_DIR", "MINI_MODEL_NAMES", "mini_models", "read_manifest", "zoo_table", "paper_ratios"]

MINI_ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo" / "mini"

# name -> (family, one-line description); the order is the order of tables and plots.
MINI_MODEL_NAMES: dict[str, tuple[str, str]] = {
    "supervised": ("supervised", "Cross-entropy on the labelled source classes."),
    "simclr": ("contrastive", "SimCLR: NT-Xent between two augmented views."),
    "moco-v2": ("contrastive", "MoCo-v2: InfoNCE against a momentum encoder's queue."),
    "byol": ("contrastive", "BYOL: predict an EMA target's projection, no negatives."),
    "swav": ("clustering", "SwAV: swapped prediction of Sinkhorn cluster codes."),
    "barlow-twins": ("redundancy-reduction", "Barlow Twins: cross-correlation towards identity."),
    "dino": ("distillation", "DINO: self-distillation with a centred, sharpened EMA teacher."),
    "moco-v2-crop-only": ("contrastive", "MoCo-v2 with crop and flip only (the follow-up's 'ventral')."),
    "moco-v2-colour-only": ("contrastive", "MoCo-v2 with colour jitter and greyscale only ('dorsal')."),
    "random": ("baseline", "Random initialisation, no training."),
}

_DEFAULT_MEAN = (0.5, 0.5, 0.5)
_DEFAULT_STD = (0.25, 0.25, 0.25)


def read_manifest(zoo_dir: Path = MINI_ZOO_DIR) -> dict:
    path = zoo_dir / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def mini_models(zoo_dir: Path = MINI_ZOO_DIR) -> dict[str, ModelCfg]:
    """Model cards for the mini zoo, filled in from the manifest that ``make models`` writes."""
    manifest = read_manifest(zoo_dir)
    cfgs = {}
    for name, (family, description) in MINI_MODEL_NAMES.items():
        entry = manifest.get(name, {})
        cfgs[name] = ModelCfg(
            name=name,
            zoo="mini",
            arch=entry.get("arch", "mini_resnet"),
            weights=f"zoo:{entry.get('file', name + '.pth')}",
            sha256=entry.get("sha256"),
            mean=tuple(entry.get("mean", _DEFAULT_MEAN)),
            std=tuple(entry.get("std", _DEFAULT_STD)),
            input_size=32,
            resize_size=32,
            interpolation="bilinear",
            family=family,
            source_top1=entry.get("source_top1"),
            description=description,
            extra={k: entry[k] for k in ("objective", "augmentation", "seed", "train_seconds") if k in entry},
        )
    return cfgs


def zoo_table(zoo_dir: Path = MINI_ZOO_DIR):
    """What each mini model is (the manifest): objective, augmentation, epochs, training size and
    time, device, final loss, mini-source top-1 and its ratio to supervised's."""
    import pandas as pd

    rows = []
    for name, entry in read_manifest(zoo_dir).items():
        recipe = entry.get("recipe", {})
        rows.append({
            "model": name, "objective": entry.get("objective"), "augmentation": entry.get("augmentation"),
            "epochs": recipe.get("epochs"), "train px": recipe.get("train_size", 32),
            "train min": (entry.get("train_seconds") or 0) / 60, "device": entry.get("device", "cpu"),
            "final loss": entry.get("final_loss"), "source top-1": entry.get("source_top1"),
            "ratio to supervised": entry.get("ratio_to_supervised"),
        })
    return pd.DataFrame(rows).set_index("model")


def paper_ratios():
    """The paper's regime: each model's ImageNet top-1 as a fraction of supervised's (Table 1)."""
    from ..paper_tables import paper_table

    top1 = paper_table("table1_linear").set_index("model")["imagenet_top1"]
    return (top1 / top1["Supervised"]).rename("ratio to supervised")
