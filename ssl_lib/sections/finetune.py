"""The fine-tune section: the paper's lr x wd grid per dataset for one model → result rows."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data import parse_accepted
from ..evaluate.calibration import Calibration
from ..evaluate.finetune import FinetuneCfg, FinetuneResult, run_finetune
from ..exceptions import ConfigError
from ..models import create_model
from ..paths import cache_dir
from ..results import COLUMNS, append_rows, params_hash
from ..study import load_study
from ._common import RowStamp, check_data, parse_numbers, section_datasets
from ._record import SECTIONS, Section
from .calibration import calibration_rows
from .summary import SummaryParams

__all__ = ["FinetuneParams", "FinetuneRun", "PROTOCOL", "finetune_cfg", "run_finetune_section", "grid_table"]

PROTOCOL = {
    "model": "pretrained backbone + new linear head, all weights trained, batch-norm in train mode",
    "optimiser": "SGD, Nesterov momentum 0.9, weight decay = wd / lr, cosine schedule stepped per iteration",
    "layer decay": "off unless layer_decay is set: then timm's layer-wise lr decay over the backbone's blocks "
                   "(lr x decay^depth from the top, no weight decay on biases, norms and tokens), head at lr",
    "augmentation": "RandomResizedCrop + horizontal flip (off: resize + centre crop)",
    "selection": "validation split (official, else seeded 20% carve of train); first best in grid order",
    "final": "the chosen (lr, wd) retrained on train+val, scored on test",
    "resume": "each grid point's validation score is saved as it finishes",
    "calibration": "ECE (15 bins) of the final model's test logits: unscaled, temperature-scaled by 5-fold CV on "
                   "test (the paper's) and by the chosen point's validation temperature; not for multi-label tasks",
}


@dataclass(frozen=True)
class FinetuneParams:
    """Parameters of ``notebooks/finetune.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name>, hf-hub:<repo> or file:<path>
    dataset: str = "all"  # "all" (the study's fine-tune datasets) or one dataset name
    # steps, lrs and wds: None / "" take the study's setting (mini: a small grid), else the paper's
    # (5000 steps; lr 0.1,0.01,0.001,0.0001; wd 0,1e-6,1e-5,1e-4,1e-3, divided by lr)
    steps: int | None = None
    batch_size: int = 64
    lrs: str = ""
    wds: str = ""
    augment: bool = True  # RandomResizedCrop + flip (False: the code's --no-da)
    # layer-wise lr decay (the modern ViT recipe, e.g. 0.65; timm backbones): None / "" take the study's
    # setting, else off (the paper: one lr for every weight)
    layer_decay: float | None = None
    seed: int = 0
    n_boot: int = 1000  # bootstrap resamples for the test-metric CI (0: none)
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""  # root of real datasets ("" = $SSL_LIB_DATA or the cache)
    download: bool = False
    device: str = ""  # "" = CUDA when present, else CPU
    num_workers: int = 0  # DataLoader workers (use several for real images)
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to run even if their split sizes differ from the canonical ones


@dataclass
class FinetuneRun:
    rows: pd.DataFrame
    results: dict[str, FinetuneResult]
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)  # "calibration" rows (not multi-label)


def finetune_cfg(params: FinetuneParams) -> FinetuneCfg:
    """The protocol: the parameters, the paper's grid for those left unset (the notebook's ``setup``
    has already filled them from the study file)."""
    paper = FinetuneCfg()

    def pick(name, default):
        value = getattr(params, name)
        return default if value in (None, "") else value

    decay = pick("layer_decay", None)
    try:
        return FinetuneCfg(
            int(pick("steps", paper.steps)), params.batch_size, tuple(parse_numbers(pick("lrs", paper.lrs), "lrs")),
            tuple(parse_numbers(pick("wds", paper.wds), "wds")), bool(params.augment),
            layer_decay=None if decay in (None, "") else parse_numbers(decay, "layer_decay")[0],
        )
    except ValueError as err:
        raise ConfigError(f"Fine-tune settings: {err}.") from None


def state_path(weights_hash: str, dataset: str, cfg: FinetuneCfg, seed: int):
    """Where one (model, dataset, protocol, seed) grid keeps its finished points."""
    payload = json.dumps({"w": weights_hash, "d": dataset, "cfg": cfg.identity(), "seed": seed}, sort_keys=True)
    return cache_dir("finetune") / f"{hashlib.sha256(payload.encode()).hexdigest()[:32]}.json"


def run_finetune_section(params: FinetuneParams) -> FinetuneRun:
    study = load_study(params.study)
    cfg = finetune_cfg(params)
    datasets = section_datasets(study, "finetune", params.dataset, splits=("train", "test"))
    checks = check_data(datasets, params.accept_split_sizes, root=params.data_root or None, download=params.download)
    accepted = parse_accepted(params.accept_split_sizes)
    device = params.device or None
    model = create_model(params.model, zoo=study.zoo, device=device)
    stamp = RowStamp("finetune", model, params.seed, device, data_checks=checks)
    protocol = {**cfg.identity(), "n_boot": params.n_boot, "carve_seed": 0}
    rows, cal_rows, results = [], [], {}
    bar = tqdm(total=len(datasets) * (len(cfg.grid) + 1), desc=f"finetune · {model.cfg.name}", file=sys.stderr,
               mininterval=10)
    for name in datasets:
        start = time.perf_counter()
        result = run_finetune(
            model, name, cfg, seed=params.seed, state_path=state_path(model.weights_hash, name, cfg, params.seed),
            n_boot=params.n_boot, device=device, root=params.data_root or None, download=params.download,
            num_workers=params.num_workers, on_point=lambda _: bar.update(1), accept_sizes=name in accepted,
        )
        bar.update(1 + result.resumed_points)
        results[name] = result
        outcome = dict(result.final["test_outcome"])
        outcomes = stamp.save_outcomes(params.results_path, name, result.metric, params_hash(protocol),
                                       outcome.pop("kind"), **{k: np.asarray(v) for k, v in outcome.items()})
        rows.append(stamp.row(
            dataset=name, metric=result.metric, value=result.test_score, ci_low=result.ci_low,
            ci_high=result.ci_high, ci_method=f"bootstrap{params.n_boot} over test images" if params.n_boot else "",
            train_split="train+val", eval_split="test", n_train=result.n_train, n_val=result.n_val,
            n_eval=result.n_test, protocol_params=json.dumps(protocol, sort_keys=True),
            hyperparams=json.dumps({"lr": result.best_lr, "wd": result.best_wd}),
            selected_on=f"val ({result.val_source})", params_hash=params_hash(protocol),
            wall_seconds=time.perf_counter() - start,
            extra=json.dumps({"study": study.name,
                              "resumed_points": result.resumed_points, "grid": result.grid}),
            outcomes=outcomes,
        ))
        if result.calibration is not None:  # computed with the final fit, kept in the resumable state
            cal = Calibration.from_dict(result.calibration)
            cal_rows += calibration_rows(
                stamp, cal, protocol="finetune", dataset=name,
                protocol_params=protocol, n_train=result.n_train, n_val=result.n_val, val_source=result.val_source,
                extra={"study": study.name, "lr": result.best_lr,
                       "wd": result.best_wd},
                seconds=cal.seconds,
            )
    bar.close()
    if params.results_path:
        append_rows(params.results_path, rows + cal_rows)
    return FinetuneRun(pd.DataFrame([asdict(r) for r in rows]), results,
                       pd.DataFrame([asdict(r) for r in cal_rows], columns=COLUMNS))


def grid_table(run: FinetuneRun) -> pd.DataFrame:
    """Long table of validation score per (dataset, lr, wd) for the selection heatmaps."""
    return pd.DataFrame([{"dataset": name, **point} for name, r in run.results.items() for point in r.grid])


SECTIONS.add("finetune", Section(
    "finetune", "Fine-tune", 20, FinetuneParams, run_finetune_section, reads=("finetune", "linear"),
    tasks=("classification", "multilabel"), setting=lambda dataset, metric: "finetune", summary=SummaryParams,
))
