"""The tidy results table: one row per section × model × dataset × metric, with provenance.

Rows are appended under a file lock and written atomically (temporary file + rename), so an
interrupted run never leaves a truncated table. Re-running a run replaces its rows (same
resume key) instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd
from filelock import FileLock

from .exceptions import SSLLibError
from .paths import atomic_path

__all__ = ["ResultRow", "COLUMNS", "RESUME_KEY", "append_rows", "read_results", "latest_rows", "params_hash",
           "parsed", "SchemaError"]


@dataclass(frozen=True)
class ResultRow:
    # what
    section: str
    model: str
    dataset: str
    metric: str
    value: float
    protocol: str = ""  # the protocol within its section: linear/finetune (calibration), frozen/finetune (detection), ...
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci_method: str = ""
    # inputs
    zoo: str = ""
    weights_sha256: str = ""
    train_split: str = ""
    eval_split: str = ""
    n_train: int | None = None  # None (NaN in the table): not applicable, never 0 for "unknown"
    n_val: int | None = None
    n_eval: int | None = None
    source_top1: float = math.nan  # the model's source (ImageNet / mini-source) linear top-1, %
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


class SchemaError(SSLLibError):
    """A results table or row that is not this library's schema."""


_JSON_COLUMNS = ("protocol_params", "hyperparams", "extra")
_TEXT = {f.name for f in fields(ResultRow) if f.type in ("str", "str | None")} - set(_JSON_COLUMNS)


def read_results(path: str | Path) -> pd.DataFrame:
    """The table as written; older tables get newer columns (empty), so every reader sees one schema.

    Text columns are strings ("" when empty), numbers are floats (NaN when missing).
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        table = pd.read_csv(path, dtype={c: str for c in _TEXT | set(_JSON_COLUMNS)}, keep_default_na=False,
                            na_values={c: [""] for c in COLUMNS if c not in _TEXT | set(_JSON_COLUMNS)})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SchemaError(f"{path} is not a results table ({type(err).__name__}); move it aside or delete it.") from None
    if len(table.columns) and "section" not in table.columns:
        raise SchemaError(f"{path} has no 'section' column: it is not a results table; move it aside or delete it.")
    for col in COLUMNS:  # heal older tables that lack newer columns
        if col not in table.columns:
            table[col] = "" if col in _TEXT else ("{}" if col in _JSON_COLUMNS else math.nan)
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def parsed(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """A JSON column (``hyperparams``, ``protocol_params``, ``extra``) as a frame of its fields, one
    row per result row (same index): read typed values instead of matching text."""
    if column not in _JSON_COLUMNS:
        raise SchemaError(f"Column {column!r} is not a JSON column; those are {list(_JSON_COLUMNS)}.")
    records = [json.loads(v) if isinstance(v, str) and v else {} for v in rows[column]]
    return pd.DataFrame.from_records(records, index=rows.index)


def _check_rows(rows: list[ResultRow]) -> None:
    """Appends take :class:`ResultRow` s with their identity filled in and a numeric value."""
    for row in rows:
        if not isinstance(row, ResultRow):
            raise SchemaError(f"append_rows takes ResultRow objects, got {type(row).__name__}.")
        empty = [k for k in ("section", "model", "dataset", "metric") if not getattr(row, k)]
        if empty:
            raise SchemaError(f"A result row has no {', '.join(empty)}: {row.section}/{row.model}/{row.metric}.")
        if not isinstance(row.value, (int, float)) or isinstance(row.value, bool):
            raise SchemaError(f"Row {row.section}/{row.model}/{row.dataset}/{row.metric}: value must be a number "
                              f"(NaN for a skipped setting), got {row.value!r}.")
        for column in _JSON_COLUMNS:
            try:
                json.loads(getattr(row, column))
            except (TypeError, ValueError):
                raise SchemaError(f"Row {row.section}/{row.model}/{row.metric}: {column} must be JSON text.") from None


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
    _check_rows(rows)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SSLLibError(f"Cannot create the results folder {path.parent} ({err.strerror}); "
                          "pass a writable results_path.") from None
    if not os.access(path.parent, os.W_OK):
        raise SSLLibError(f"The results folder {path.parent} is not writable; pass a writable results_path.")
    new = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
    with FileLock(str(path) + ".lock"):
        old = read_results(path)
        table = pd.concat([old, new], ignore_index=True) if len(old) else new
        table = table.drop_duplicates(subset=RESUME_KEY, keep="last").reset_index(drop=True)
        with atomic_path(path, suffix=".csv") as tmp:
            table.to_csv(tmp, index=False)
    return table
