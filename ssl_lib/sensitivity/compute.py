"""Scoring the variants: every (model, variant, dataset, setting), cached, recorded as rows.

A score is computed once: it is kept in ``<cache>/sensitivity/<key>.npz`` (its value, details and
per-example outcome arrays), keyed by the weights, the dataset's content, the variant and setting,
the section's resolved settings (what the default protocol is; not where the study file lies) and
how torch runs (device, version). A rerun reads it back, trains nothing and fits nothing. Each score becomes a result row
of section ``sensitivity`` (metric ``<variant>:<setting>:<metric>``; the variant, setting, the
section and metric it re-scores are typed fields of its ``extra``), with its outcomes file beside
the results table for the paired comparisons.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..exceptions import ConfigError
from ..features import extraction_mode
from ..paths import atomic_path, cache_dir
from ..results import latest_rows, params_hash, read_results
from .variants import VARIANTS, ModelContext, Score, Variant

__all__ = ["CACHE_VERSION", "BASELINE", "ALTERNATIVE", "SCORE_COLUMNS", "ScoreSet", "score_key", "load_scores",
           "save_scores", "score_variants", "recorded_defaults"]

CACHE_VERSION = 1
BASELINE, ALTERNATIVE = "baseline", "alternative"
SCORE_COLUMNS = ["variant", "setting", "role", "model", "section", "dataset", "metric", "value", "outcomes",
                 "details", "cached", "seconds"]
_UNKEYED = {"study", "results_path", "data_root", "device", "num_workers", "download", "batch_size", "n_boot"}


@dataclass
class ScoreSet:
    """What :func:`score_variants` returns: one line per score, and the result rows it recorded."""

    scores: pd.DataFrame  # SCORE_COLUMNS
    rows: list = field(default_factory=list)  # ResultRow, section "sensitivity"
    seconds: dict[str, float] = field(default_factory=dict)  # variant -> wall seconds (cached: reading)


def score_key(ctx: ModelContext, variant: Variant, dataset: str, label: str, value) -> str:
    """The identity of one computed setting (see the module docstring)."""
    from ..data import get_dataset_spec

    section = variant.section_of_data or variant.section
    resolved = {k: v for k, v in asdict(ctx.section_params(section)).items() if k not in _UNKEYED | {"model"}}
    extra = {"shots": ctx.params.shots} if variant.section == "fewshot" else {}
    payload = {"weights": ctx.model.weights_hash, "adapter": ctx.model.cfg.adapter(), "dataset": dataset,
               "data": get_dataset_spec(dataset).fingerprint, "variant": variant.name, "setting": label,
               "value": repr(value), "section": resolved, "mode": extraction_mode(ctx.device), **extra,
               "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save_scores(path: Path, scores: list[Score]) -> None:
    """One npz per setting: the scores' fields as JSON, their arrays under ``<index>__<name>``."""
    meta = [{"dataset": s.dataset, "metric": s.metric, "value": s.value, "kind": s.kind, "details": s.details}
            for s in scores]
    arrays = {f"{i}__{k}": np.asarray(v) for i, s in enumerate(scores) for k, v in s.arrays.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.asarray(json.dumps(meta, default=float)), **arrays)
    with atomic_path(path, suffix=".npz") as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_scores(path: Path) -> list[Score] | None:
    """The cached scores, or None (absent or unreadable: recompute)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    out = []
    for i, m in enumerate(meta):
        prefix = f"{i}__"
        out.append(Score(m["dataset"], m["metric"], float(m["value"]), m["kind"],
                         {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}, m["details"]))
    return out


def recorded_defaults(results_path: str, models) -> pd.DataFrame:
    """The latest recorded row per (section, model, dataset, metric) of ``models``."""
    if not results_path:
        raise ConfigError("The sensitivity section compares with the study's recorded rows: pass results_path "
                          "(make book uses book/results/results.csv).")
    if not Path(results_path).exists():
        raise ConfigError(f"No results table at {results_path}: run the sections first (make book, or their "
                          "notebooks with -p results_path ...).")
    rows = read_results(results_path)
    rows = rows[rows.model.isin(list(models)) & (rows.section != "sensitivity")]
    return latest_rows(rows)


def _settings(variant: Variant, params) -> list[tuple[str, str, object]]:
    """``(role, label, value)`` for the baseline (when computed) and each alternative."""
    out = [(BASELINE, *variant.baseline)] if variant.baseline is not None else []
    return out + [(ALTERNATIVE, label, value) for label, value in variant.settings(params).items()]


def _row(stamp, ctx, variant: Variant, role: str, label: str, score: Score, outcomes: str, seconds: float, cached: bool):
    protocol = {"variant": variant.name, "setting": label, "section": variant.section, "metric": score.metric,
                "alternative": variant.alternative if role == ALTERNATIVE else variant.default}
    return stamp.row(
        dataset=score.dataset, metric=f"{variant.name}:{label}:{score.metric}", value=float(score.value),
        eval_split="test" if variant.section != "fewshot" else "train+val+test episodes",
        protocol_params=json.dumps(protocol, sort_keys=True), hyperparams=json.dumps(score.details, default=float),
        selected_on="as the section's protocol", params_hash=params_hash(protocol), wall_seconds=seconds,
        extra=json.dumps({"study": ctx.study.name, "source_top1": ctx.model.cfg.source_top1, "variant": variant.name,
                          "setting": label, "role": role, "section": variant.section, "metric": score.metric,
                          "cached": cached}), outcomes=outcomes,
    )


def score_variants(ctx_factory, models: list[str], variants: list[str], params, *, retrain_models: list[str],
                   results_path: str, progress: bool = True) -> ScoreSet:
    """Every selected variant for every model: its settings scored (or read from the cache)."""
    from ..sections._common import RowStamp

    units = [(m, v) for m in models for v in variants if not VARIANTS.get(v).retrains or m in retrain_models]
    lines, rows, seconds = [], [], {}
    bar = tqdm(total=len(units), desc="sensitivity", file=sys.stderr, mininterval=10, disable=not progress)
    for spec in models:
        mine = [v for m, v in units if m == spec]
        if not mine:
            continue
        ctx = ctx_factory(spec)
        stamp = RowStamp("sensitivity", ctx.model, ctx.study.seed, ctx.device)
        for name in mine:
            variant = VARIANTS.get(name)
            start = time.perf_counter()
            for dataset in variant.dataset_names(ctx):
                for role, label, value in _settings(variant, params):
                    t0 = time.perf_counter()
                    path = cache_dir("sensitivity") / f"{score_key(ctx, variant, dataset, label, value)}.npz"
                    scores = load_scores(path)
                    cached = scores is not None
                    if not cached:
                        scores = variant.compute(ctx, dataset, value)
                        save_scores(path, scores)
                    spent = (time.perf_counter() - t0) / max(len(scores), 1)
                    for score in scores:
                        outcomes = stamp.save_outcomes(results_path, dataset, f"{name}:{label}:{score.metric}",
                                                       params_hash({"variant": name, "setting": label}),
                                                       score.kind, **score.arrays)
                        rows.append(_row(stamp, ctx, variant, role, label, score, outcomes, spent, cached))
                        lines.append({"variant": name, "setting": label, "role": role, "model": ctx.model.cfg.name,
                                      "section": variant.section, "dataset": score.dataset, "metric": score.metric,
                                      "value": float(score.value), "outcomes": outcomes,
                                      "details": json.dumps(score.details, default=float), "cached": cached,
                                      "seconds": spent})
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            bar.update(1)
    bar.close()
    return ScoreSet(pd.DataFrame(lines, columns=SCORE_COLUMNS), rows, seconds)
