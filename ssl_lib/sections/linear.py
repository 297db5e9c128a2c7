"""The many-shot linear section: one model over the study's datasets → result rows."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data import get_dataset_spec, parse_accepted
from ..evaluate.calibration import calibrate, fit_temperature
from ..evaluate.linear import LinearResult, run_linear
from ..evaluate.logreg import C_GRID, SOLVERS
from ..models import create_model
from ..results import COLUMNS, append_rows, params_hash
from ..study import load_study
from ._common import RowStamp, check_data, section_datasets
from ._record import SECTIONS, Section
from .calibration import calibration_rows
from .summary import SummaryParams

__all__ = ["LinearParams", "LinearRun", "PROTOCOL", "run_linear_section", "val_curves"]

PROTOCOL = {
    "classifier": "multinomial logistic regression (one binary per class for multi-label)",
    "features": "frozen, pooled, unnormalised",
    "c_grid": "1/logspace(-6, 5, 45), walked from C=1e6 down, first best wins",
    "selection": "validation split (official, else seeded 20% carve of train)",
    "refit": "train+val at the chosen C",
    "calibration": "ECE (15 bins) of the refit's test logits: unscaled, temperature-scaled by 5-fold CV on test "
                   "(the paper's) and by T fitted on the chosen-C selection fit's validation logits; not for "
                   "multi-label tasks",
}


@dataclass(frozen=True)
class LinearParams:
    """Parameters of ``notebooks/linear.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name>, hf-hub:<repo> or file:<path>
    dataset: str = "all"  # "all" (the study's datasets for this section) or one dataset name
    solver: str = "torch"  # torch | sklearn | sklearn-paper
    seed: int = 0
    n_boot: int = 1000  # bootstrap resamples for the test-metric CI (0: none)
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""  # root of real datasets ("" = $SSL_LIB_DATA or the cache)
    download: bool = False
    device: str = ""  # "" = CUDA when present, else CPU
    batch_size: int = 256  # feature extraction
    num_workers: int = 0  # DataLoader workers for feature extraction (use several for real images)
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to run even if their split sizes differ from the canonical ones


@dataclass
class LinearRun:
    """What the notebook shows: the rows, plus each dataset's validation curve."""

    rows: pd.DataFrame
    results: dict[str, LinearResult]
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)  # "calibration" rows (not multi-label)


def run_linear_section(params: LinearParams) -> LinearRun:
    """Evaluate ``params.model`` on every dataset of the section and (optionally) record rows."""
    SOLVERS.get(params.solver)
    study = load_study(params.study)
    datasets = section_datasets(study, "linear", params.dataset, splits=("train", "test"))
    checks = check_data(datasets, params.accept_split_sizes, root=params.data_root or None, download=params.download)
    device = params.device or None
    model = create_model(params.model, zoo=study.zoo, device=device)
    stamp = RowStamp("linear", model, params.seed, device, data_checks=checks)
    protocol_params = {"solver": params.solver, "c_grid_size": len(C_GRID), "carve_seed": 0, "n_boot": params.n_boot}
    rows, cal_rows, results = [], [], {}
    # One bar over datasets: per-split bars would fill the notebook's stored output.
    for name in tqdm(datasets, desc=f"linear · {model.cfg.name}", file=sys.stderr, mininterval=10):
        start = time.perf_counter()
        result, splits = run_linear(
            model, name, solver=params.solver, n_boot=params.n_boot, seed=params.seed, device=device,
            root=params.data_root or None, download=params.download, progress=False,
            batch_size=params.batch_size, num_workers=params.num_workers,
            accept_sizes=name in parse_accepted(params.accept_split_sizes),
        )
        results[name] = result
        multilabel = get_dataset_spec(name).multilabel
        outcomes = stamp.save_outcomes(
            params.results_path, name, result.metric, params_hash(protocol_params),
            *(("scores",) if multilabel else ("labels",)),
            **({"y_true": splits.y_test, "scores": result.test_scores_raw.astype(np.float32)} if multilabel else
               {"y_true": splits.y_test, "y_pred": result.test_scores_raw.argmax(1)}),
        )
        rows.append(stamp.row(
            dataset=name, metric=result.metric,
            value=result.test_score, ci_low=result.ci_low, ci_high=result.ci_high,
            ci_method=f"bootstrap{params.n_boot} over test images" if params.n_boot else "",
            train_split="train+val", eval_split="test",
            n_train=result.n_train, n_val=result.n_val, n_eval=result.n_test,
            protocol_params=json.dumps(protocol_params, sort_keys=True),
            hyperparams=json.dumps({"C": result.best_C}),
            selected_on=f"val ({splits.val_source})", params_hash=params_hash(protocol_params),
            feature_cache_key=json.dumps(splits.cache_keys, sort_keys=True),
            wall_seconds=time.perf_counter() - start,
            extra=json.dumps({"study": study.name,
                              "fit_seconds": result.fit_seconds, "extract_seconds": splits.extract_seconds}),
            outcomes=outcomes,
        ))
        if not multilabel:  # the paper skips calibration for VOC (multi-label)
            start = time.perf_counter()
            # T for the "val" variant: the selection fit at the chosen C (train only) scored on val
            t_val = fit_temperature(result.val_scores_raw, splits.y_val)
            cal = calibrate(result.test_scores_raw, splits.y_test, temperature_val=t_val, seed=params.seed)
            cal_rows += calibration_rows(
                stamp, cal, protocol="linear", dataset=name, protocol_params=protocol_params,
                n_train=result.n_train, n_val=result.n_val, val_source=splits.val_source,
                extra={"study": study.name, "C": result.best_C},
                seconds=time.perf_counter() - start,
            )
    if params.results_path:
        append_rows(params.results_path, rows + cal_rows)
    return LinearRun(pd.DataFrame([asdict(r) for r in rows]), results,
                     pd.DataFrame([asdict(r) for r in cal_rows], columns=COLUMNS))


def val_curves(run: LinearRun) -> pd.DataFrame:
    """Long table of validation score against C for every dataset (for the C-selection plot)."""
    return pd.concat(
        [pd.DataFrame({"dataset": name, "C": r.c_grid, "val_score": r.val_scores, "chosen": np.isclose(r.c_grid, r.best_C)})
         for name, r in run.results.items()],
        ignore_index=True,
    )


SECTIONS.add("linear", Section(
    "linear", "Linear", 10, LinearParams, run_linear_section, reads=("linear",), tasks=("classification", "multilabel"),
    setting=lambda dataset, metric: "linear", summary=SummaryParams, choices={"solver": SOLVERS},
))
