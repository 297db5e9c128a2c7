"""The mini zoo's recipes: one dataclass per model, names fixed to the paper's method names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .._registry import Registry

__all__ = ["Recipe", "ZOO", "MEAN", "STD", "ARCH", "SOURCE"]

ARCH = "mini_resnet"
SOURCE = "mini-source"
# Fixed input normalisation for every mini model (recorded in the manifest; the model registry
# applies it before the backbone). Round numbers, not data statistics, so regenerating the
# source data never silently changes the contract.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class Recipe:
    """How one mini model is trained. ``epochs == 0`` means no training (the random baseline)."""

    objective: str
    augmentation: str
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-5
    warmup_epochs: float = 0.5
    seed: int = 0
    objective_kwargs: dict = field(default_factory=dict)
    train_size: int = 32  # views are cropped to this side: cheaper pretraining; the zoo is evaluated at 32 px

    def with_epochs(self, epochs: int | None) -> "Recipe":
        """The ``--epochs`` override (the random baseline stays untrained)."""
        if epochs is None or self.epochs == 0:
            return self
        return dataclasses.replace(self, epochs=epochs)

    def to_dict(self) -> dict:
        """The recipe and the augmentation it names, spelt out (the manifest records both)."""
        from .augment import AUGMENTATIONS

        import json

        out = dataclasses.asdict(self)
        if self.augmentation in AUGMENTATIONS:
            out["augmentation_spec"] = AUGMENTATIONS.get(self.augmentation).to_dict()
        return json.loads(json.dumps(out))  # as the manifest reads it back (tuples are lists)

    def identity(self) -> str:
        """A hash of everything that shapes the trained weights (names a resumable training state)."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


ZOO: Registry[Recipe] = Registry("mini model", hint="List them with `python -m ssl_lib.pretrain --list`.")

# Epochs sized for the budget (the whole zoo in under an hour on 2 idle cores; an SSL epoch is
# 2 x 9,600 forward/backward passes, ~27 s for SimCLR). At 3 epochs the SSL models were only
# 2-4 points above random init on mini-source; 10 epochs of SimCLR gave 16.7% vs random's 6.2%.
# Adam(W) rather than SGD/LARS: at a few hundred steps it gets every method off the random
# baseline, which SGD at these batch sizes does not.
_SSL_EPOCHS = 8
ZOO.add("supervised", Recipe("supervised", "supervised", epochs=8))
ZOO.add("simclr", Recipe("simclr", "simclr", epochs=_SSL_EPOCHS))
ZOO.add("moco-v2", Recipe("moco-v2", "simclr", epochs=_SSL_EPOCHS))
ZOO.add("byol", Recipe("byol", "simclr", epochs=_SSL_EPOCHS))
ZOO.add("swav", Recipe("swav", "simclr", epochs=_SSL_EPOCHS))
ZOO.add("barlow-twins", Recipe("barlow-twins", "simclr", epochs=_SSL_EPOCHS))
# DINO's paper defaults (1024-d output, teacher momentum 0.99, teacher temperature 0.04) stayed at
# uniform output (loss ~ ln 1024) for the whole short run, below the random baseline; a smaller
# output, a faster-following teacher and a slightly softer teacher get it off the ground.
ZOO.add("dino", Recipe("dino", "simclr", epochs=_SSL_EPOCHS,
                       objective_kwargs={"out_dim": 256, "momentum": 0.95, "teacher_temp": 0.05}))
ZOO.add("moco-v2-crop-only", Recipe("moco-v2", "crop-only", epochs=_SSL_EPOCHS))
ZOO.add("moco-v2-colour-only", Recipe("moco-v2", "colour-only", epochs=_SSL_EPOCHS))
ZOO.add("random", Recipe("random", "none", epochs=0))
