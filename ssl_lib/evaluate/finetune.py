"""Fine-tuning, the paper's recipe (reference/paper.md §3.2).

The whole backbone plus a new linear head is trained with SGD (Nesterov momentum 0.9) and a
cosine schedule stepped every iteration, batch-norm in train mode, RandomResizedCrop + flip.
The grid is ``lr x wd`` with the optimiser's weight decay set to ``wd / lr`` (the official code;
the paper: "weight decay values are divided by the learning rate"). Every grid point starts from
the same pretrained weights and is scored on validation; the first best point (grid order, strict
``>``) is refit on train+val and scored on test. The test split takes part in no choice.

Each grid point's score is written to a small JSON state file as soon as it finishes (atomically),
so an interrupted run resumes at the next unfinished point.

Calibration (classification only, as the paper: no multi-label): each grid point also records the
temperature fitted on its validation logits; the final model's test logits give the unscaled ECE,
the paper's 5-fold cross-validated scaled ECE, and the ECE scaled by the chosen point's validation
temperature (:mod:`ssl_lib.evaluate.calibration`). All of it is kept in the state file, so a
resumed run still has it.

Layer-wise learning-rate decay (``layer_decay``, off by default; the modern ViT recipe of BEiT, MAE
and DINOv2's fine-tuning) takes timm's ``param_groups_layer_decay``: the backbone's blocks in
timm's ``group_matcher`` order get ``lr · layer_decay^(depth from the top)``, the new head (the top)
the full ``lr``, the same rates timm gives the model with its own head; as in that recipe, biases,
norms and the tokens timm lists in ``no_weight_decay()`` get no weight decay.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from tqdm import tqdm

from ..data import carve_validation, eval_transform, get_dataset_spec, open_split
from ..data.transforms import PerImage
from ..exceptions import ConfigError
from ..features import default_device
from ..metrics import compute_metric
from ..models import FeatureModel
from ..paths import atomic_path
from ..stats import bootstrap_ci
from .calibration import calibrate, fit_temperature

__all__ = [
    "LR_GRID",
    "WD_GRID",
    "FinetuneCfg",
    "FinetuneResult",
    "Finetuner",
    "train_transform",
    "finetune_once",
    "predict",
    "layer_decay_groups",
    "run_finetune",
]

LR_GRID = (0.1, 0.01, 0.001, 0.0001)  # torch.logspace(-4, -1, 4), flipped
WD_GRID = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)  # divided by lr before reaching the optimiser
STATE_VERSION = 3  # 2: grid points carry their validation temperature, the final its calibration; 3: its test outcomes


@dataclass(frozen=True)
class FinetuneCfg:
    """The protocol's settings (they identify a run's resumable state)."""

    steps: int = 5000
    batch_size: int = 64
    lrs: tuple[float, ...] = LR_GRID
    wds: tuple[float, ...] = WD_GRID
    augment: bool = True  # RandomResizedCrop + flip; False: the code's --no-da (resize + centre crop)
    layer_decay: float | None = None  # None: one lr for all weights (the paper); e.g. 0.65 for a ViT-B

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if not self.lrs or not self.wds or min(self.lrs) <= 0 or min(self.wds) < 0:
            raise ValueError(f"lrs must be positive and wds non-negative, got {self.lrs} and {self.wds}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")

    def identity(self) -> dict:
        """The settings as recorded in states and rows; an option left off is left out, so the
        paper recipe's resumable states and params hashes are the same as before the option existed."""
        out = asdict(self)
        if self.layer_decay is None:
            del out["layer_decay"]
        return out

    @property
    def grid(self) -> list[tuple[float, float]]:
        """Grid order of the official loops: lr descending (outer), wd ascending (inner)."""
        return [(lr, wd) for lr in self.lrs for wd in self.wds]


@dataclass
class FinetuneResult:
    metric: str
    test_score: float
    ci_low: float
    ci_high: float
    best_lr: float
    best_wd: float
    grid: list[dict]  # one dict per point: lr, wd, val_score, seconds
    n_train: int
    n_val: int
    n_test: int
    val_source: str
    seconds: float
    resumed_points: int = 0
    final: dict = field(default_factory=dict)
    calibration: dict | None = None  # Calibration.to_dict() of the final test logits (None: multi-label)


class Finetuner(nn.Module):
    """The pretrained backbone (normalisation included) and a fresh linear head."""

    def __init__(self, backbone: FeatureModel, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def train_transform(model_cfg, augment: bool = True):
    """RandomResizedCrop (the model's interpolation) + horizontal flip, applied image by image."""
    if not augment:
        return eval_transform(model_cfg)
    return PerImage(v2.Compose([
        v2.ToImage(),
        v2.RGB(),
        v2.RandomResizedCrop(model_cfg.input_size, interpolation=InterpolationMode(model_cfg.interpolation),
                             antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
    ]))


def layer_decay_groups(model: Finetuner, *, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """SGD parameter groups with timm's layer-wise decay over the backbone (see the module docstring).

    Each group carries its own ``lr`` (the cosine schedule anneals every group from its own start).
    """
    from timm.optim import param_groups_layer_decay

    body = model.backbone.backbone
    if not hasattr(body, "group_matcher"):
        raise ConfigError(
            f"layer_decay needs a timm backbone (its group_matcher orders the blocks); "
            f"{model.backbone.cfg.qualified_name!r} is a {type(body).__name__}. Leave layer_decay unset for it."
        )
    no_decay = body.no_weight_decay() if hasattr(body, "no_weight_decay") else ()
    groups = param_groups_layer_decay(body, weight_decay=weight_decay, no_weight_decay_list=no_decay,
                                      layer_decay=layer_decay)
    for group in groups:  # the new head is the top layer, as timm counts a model's own head: one more decay
        group["lr"] = lr * group.pop("lr_scale", 1.0) * layer_decay
    return [*groups, {"params": list(model.head.parameters()), "weight_decay": weight_decay, "lr": lr}]


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def finetune_once(
    backbone: FeatureModel, train: Dataset, *, num_classes: int, multilabel: bool, lr: float, wd: float,
    cfg: FinetuneCfg, seed: int = 0, device=None, num_workers: int = 0, progress: bool = False, desc: str = "",
) -> Finetuner:
    """Train a copy of ``backbone`` + a new head for ``cfg.steps`` iterations; returns it in eval mode."""
    device = torch.device(device) if device is not None else default_device()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Finetuner(copy.deepcopy(backbone).requires_grad_(True), num_classes).to(device).train()
        loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, num_workers=num_workers,
                            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
        params = model.parameters() if cfg.layer_decay is None else layer_decay_groups(
            model, lr=lr, weight_decay=wd / lr, layer_decay=cfg.layer_decay)
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd / lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
        criterion = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
        batches = _cycle(loader)
        for _ in tqdm(range(cfg.steps), desc=desc or f"lr={lr:g} wd={wd:g}", disable=not progress, leave=False):
            images, targets = next(batches)
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = criterion(model(images), targets.float() if multilabel else targets.long())
            if not torch.isfinite(loss):
                break  # diverged (a too-large lr); scored as it stands, so selection passes it over
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.inference_mode()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 256, device=None, num_workers: int = 0):
    """``(scores, labels)`` of ``model`` over ``data`` (eval mode, in order)."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    scores, labels = [], []
    for images, targets in DataLoader(data, batch_size=batch_size, num_workers=num_workers):
        scores.append(model(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(targets))
    scores = torch.cat(scores)
    scores = torch.nan_to_num(scores, nan=0.0, posinf=1e30, neginf=-1e30)  # a diverged run scores at chance
    return scores.numpy(), torch.cat(labels).numpy()


def _select(points: list[dict]) -> dict:
    """The first best validation score in grid order (strict ``>``, as for linear C)."""
    best = points[0]
    for point in points[1:]:
        if point["val_score"] > best["val_score"]:
            best = point
    return best


def _load_state(path: Path | None, identity: dict) -> dict:
    identity = json.loads(json.dumps(identity))  # as it reads back (tuples become lists)
    if path is not None and path.exists():
        try:
            state = json.loads(path.read_text())
            if state.get("identity") == identity:
                return state
        except (OSError, ValueError):
            pass  # an unreadable state is started afresh
    return {"identity": identity, "points": {}, "final": None}


def _save_state(path: Path | None, state: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))


def _splits(dataset: str, model_cfg, cfg: FinetuneCfg, *, root, download, carve_seed: int = 0,
            accept_sizes: bool = False):
    """``(train, val, trainval, test)`` datasets; validation is official or the seeded 20% carve."""
    spec = get_dataset_spec(dataset)
    train_tf, eval_tf = train_transform(model_cfg, cfg.augment), eval_transform(model_cfg)

    def open_(split, tf):
        return open_split(dataset, split, transform=tf, root=root, download=download, accept_sizes=accept_sizes)

    test = open_("test", eval_tf)
    if spec.has_official_val:
        train, trainval_val, val = open_("train", train_tf), open_("val", train_tf), open_("val", eval_tf)
        return train, val, ConcatDataset([train, trainval_val]), test, "official"
    full_train, full_eval = open_("train", train_tf), open_("train", eval_tf)
    tr_idx, val_idx = carve_validation(len(full_train), seed=carve_seed)
    source = f"carve20(seed={carve_seed})"
    return Subset(full_train, tr_idx.tolist()), Subset(full_eval, val_idx.tolist()), full_train, test, source


def run_finetune(
    model: FeatureModel, dataset: str, cfg: FinetuneCfg, *, seed: int = 0, state_path: Path | None = None,
    n_boot: int = 1000, device=None, root=None, download: bool = False, num_workers: int = 0,
    progress: bool = False, on_point: Callable[[dict], None] | None = None, accept_sizes: bool = False,
) -> FinetuneResult:
    """The grid on train → val, then the best point on train+val → test, resuming from ``state_path``.

    ``accept_sizes``: run on a paper dataset whose split sizes differ from the canonical ones."""
    start = time.perf_counter()
    spec = get_dataset_spec(dataset)
    if spec.kind not in ("classification", "multilabel"):
        raise ValueError(f"Dataset {dataset!r} is a {spec.kind} task; fine-tuning here needs classification data.")
    if cfg.layer_decay is not None:  # refuse a backbone without timm's block order before any training
        layer_decay_groups(Finetuner(model, 1), lr=1.0, weight_decay=0.0, layer_decay=cfg.layer_decay)
    train, val, trainval, test, val_source = _splits(dataset, model.cfg, cfg, root=root, download=download,
                                                     accept_sizes=accept_sizes)
    identity = {"weights": model.weights_hash, "dataset": dataset, "data": spec.fingerprint,
                "cfg": cfg.identity(), "seed": seed, "n_boot": n_boot, "version": STATE_VERSION}
    state = _load_state(state_path, identity)
    resumed = len(state["points"])
    common = dict(num_classes=spec.num_classes, multilabel=spec.multilabel, cfg=cfg, seed=seed,
                  device=device, num_workers=num_workers, progress=progress)

    for lr, wd in cfg.grid:
        key = f"lr={lr:g},wd={wd:g}"
        if key in state["points"]:
            continue
        t0 = time.perf_counter()
        net = finetune_once(model, train, lr=lr, wd=wd, desc=f"{dataset} {key}", **common)
        scores, labels = predict(net, val, num_workers=num_workers)
        point = {"lr": lr, "wd": wd, "val_score": compute_metric(spec.metric, labels, scores),
                 "val_temperature": None if spec.multilabel else fit_temperature(scores, labels),
                 "seconds": time.perf_counter() - t0}
        state["points"][key] = point
        _save_state(state_path, state)
        if on_point is not None:
            on_point(point)

    points = [state["points"][f"lr={lr:g},wd={wd:g}"] for lr, wd in cfg.grid]
    best = _select(points)
    if state["final"] is None:
        t0 = time.perf_counter()
        net = finetune_once(model, trainval, lr=best["lr"], wd=best["wd"], desc=f"{dataset} final", **common)
        scores, labels = predict(net, test, num_workers=num_workers)
        metric = lambda y, s: compute_metric(spec.metric, y, s)  # noqa: E731
        low, high = bootstrap_ci(metric, labels, scores, n_boot=n_boot, seed=seed)
        # per-example evidence for paired comparisons (ssl_lib.outcomes): predicted labels, or scores
        outcome = ({"kind": "scores", "y_true": labels.tolist(), "scores": np.round(scores, 5).tolist()}
                   if spec.multilabel else
                   {"kind": "labels", "y_true": labels.tolist(), "y_pred": scores.argmax(1).tolist()})
        state["final"] = {"lr": best["lr"], "wd": best["wd"], "seconds": time.perf_counter() - t0,
                          "test_score": metric(labels, scores), "ci_low": low, "ci_high": high,
                          "test_outcome": outcome,
                          "calibration": None if spec.multilabel else calibrate(
                              scores, labels, temperature_val=best["val_temperature"], seed=seed).to_dict()}
        _save_state(state_path, state)
    final = state["final"]
    return FinetuneResult(
        metric=spec.metric, test_score=final["test_score"], ci_low=final["ci_low"], ci_high=final["ci_high"],
        best_lr=best["lr"], best_wd=best["wd"], grid=points,
        n_train=len(train), n_val=len(val), n_test=len(test), val_source=val_source,
        seconds=time.perf_counter() - start, resumed_points=resumed, final=final,
        calibration=final["calibration"],
    )
