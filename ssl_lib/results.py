"""The tidy results table: one row per section × model × dataset × metric, with provenance.

Rows are appended under a file lock and written atomically (temporary file + rename), so an
interrupted run never leaves a truncated table. Re-running a run replaces its rows (same
resume key) instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd
from filelock import FileLock

from .paths import atomic_path

__all__ = ["ResultRow", "COLUMNS", "RESUME_KEY", "append_rows", "read_results", "latest_rows", "params_hash"]


@dataclass(frozen=True)
class ResultRow:
    # what
    section: str
    model: str
    dataset: str
    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci_method: str = ""
    # inputs
    zoo: str = ""
    weights_sha256: str = ""
    train_split: str = ""
    eval_split: str = ""
    n_train: int = 0
    n_val: int = 0
    n_eval: int = 0
    data_check: str = ""  # the splits' sizes against the canonical ones ("" = none known), or the accepted mismatch
    # the adapter contract: how the model's features were read (ssl_lib.models.ModelCfg.adapter)
    arch: str = ""
    pooling: str = ""  # avgpool | cls_token | mean_patch_tokens | attention_pool ...
    feature_layer: str = ""  # the last stage whose output is pooled: layer4, blocks.11, stages.3
    normalization: str = ""  # imagenet | inception | clip | none | mean=... std=...
    input_size: int | None = None  # the crop side in pixels
    resize_size: int | None = None  # the shorter side before the crop
    patch_size: int | None = None  # patch-embedding models only
    # protocol
    protocol_params: str = "{}"  # JSON: the settings that define the protocol
    hyperparams: str = "{}"  # JSON: what was selected (e.g. {"C": 0.1})
    selected_on: str = ""  # which split chose the hyperparameters ("val", never "test")
    params_hash: str = ""
    seed: int = 0
    feature_cache_key: str = ""
    # provenance
    wall_seconds: float = math.nan
    run_id: str = ""
    created_utc: str = ""
    git_sha: str | None = None
    git_dirty: bool | None = None
    ssl_lib_version: str = ""
    torch_version: str = ""
    device: str = ""
    extra: str = field(default="{}")  # JSON for section-specific fields
    # per-example evidence (ssl_lib.outcomes), relative to the results file: what paired comparisons read
    outcomes: str = ""


COLUMNS = [f.name for f in fields(ResultRow)]
RESUME_KEY = ["section", "model", "weights_sha256", "dataset", "metric", "params_hash", "seed"]


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_results(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path)
    for col in COLUMNS:  # heal older tables that lack newer columns
        if col not in table.columns:
            table[col] = pd.NA
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def latest_rows(rows: pd.DataFrame, section: str | None = None) -> pd.DataFrame:
    """The most recent row per (section, model, dataset, metric), optionally of one section.

    The table keeps rows whose weights or settings differ (the resume key); a page reports the
    latest of them.
    """
    if section is not None:
        rows = rows[rows.section == section]
    return rows.sort_values("created_utc", kind="stable").drop_duplicates(
        ["section", "model", "dataset", "metric"], keep="last")


def append_rows(path: str | Path, rows: list[ResultRow]) -> pd.DataFrame:
    """Add ``rows``; rows with the same resume key are replaced. Returns the whole table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
    with FileLock(str(path) + ".lock"):
        old = read_results(path)
        table = pd.concat([old, new], ignore_index=True) if len(old) else new
        table = table.drop_duplicates(subset=RESUME_KEY, keep="last").reset_index(drop=True)
        with atomic_path(path, suffix=".csv") as tmp:
            table.to_csv(tmp, index=False)
    return table
