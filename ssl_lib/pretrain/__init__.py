"""Pretraining the mini zoo: objectives, batched augmentations, recipes, the training loop.

``python -m ssl_lib.pretrain --all`` retrains every checkpoint in ``ssl_lib/zoo/mini`` and its
``manifest.json`` (sha256, recipe, normalisation and source linear-probe accuracy per model).
"""

from .augment import AUGMENTATIONS, AugmentSpec
from .checkpoint import load_checkpoint, save_checkpoint
from .objectives import OBJECTIVES, Objective
from .recipes import MEAN, STD, ZOO, Recipe
from .train import build_backbone, build_objective, pretrain, train_step
from .zoo import build_model, build_zoo, read_manifest

__all__ = [
    "AUGMENTATIONS", "AugmentSpec", "load_checkpoint", "save_checkpoint", "OBJECTIVES",
    "Objective", "MEAN", "STD", "ZOO", "Recipe", "build_backbone", "build_objective", "pretrain",
    "train_step", "build_model", "build_zoo", "read_manifest",
]
