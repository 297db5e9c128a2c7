"""The sensitivity page: the study's models re-scored under named protocol variants. Study-level.

It reads the sections' recorded rows (the defaults), scores every variant of
:data:`ssl_lib.sensitivity.VARIANTS` from cached inputs, and records one row per score (section
``sensitivity``) plus one row per (variant, finding) counting the settings under which the
finding's scorecard verdict flips (model ``(study)``), which the scorecard page reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace

import pandas as pd
from threadpoolctl import threadpool_limits

from ..exceptions import ConfigError
from ..models import create_model, get_model_cfg
from ..provenance import environment, utc_now
from ..results import ResultRow, append_rows, latest_rows, read_results
from ..sensitivity import (VARIANTS, MemoComparer, ModelContext, changes, rank_correlations, recorded_defaults,
                           score_variants, verdict_flips, verdict_table)
from ..study import load_study
from ._common import split_names
from ._record import SECTIONS, Section

__all__ = ["SensitivityParams", "SensitivityPage", "STUDY_MODEL", "run_sensitivity", "robustness"]

STUDY_MODEL = "(study)"  # the model of the rows that summarise the study (verdict flips)


@dataclass(frozen=True)
class SensitivityParams:
    """Parameters of ``notebooks/sensitivity.ipynb``."""

    study: str = "mini"
    model: str = "all"  # "all" (the study's models), or a comma-separated list
    variants: str = "all"  # "all" or a comma-separated list of names in ssl_lib.sensitivity.VARIANTS
    # these four: "" takes the study file's setting, else "all"
    retrain_models: str = ""  # the models the variants that train run on ("all": every model above)
    linear_datasets: str = ""  # the linear and calibration variants' datasets ("all": the study's linear ones)
    fewshot_datasets: str = ""  # the few-shot variants' datasets ("all": the study's few-shot ones)
    finetune_datasets: str = ""  # the fine-tune variants' datasets ("all": the study's fine-tune ones)
    shots: str = ""  # few-shot settings re-scored ("": the study's setting, else 20, the paper's main-text one)
    carve_seeds: str = "1,2,3,4"  # validation carve seeds compared with seed 0
    episode_seeds: str = "1,2,3,4"  # few-shot episode seeds compared with the study's
    train_seeds: str = "1,2"  # training seeds (fine-tune, detection, dense) compared with the study's
    n_boot: int = 1000  # resamples of the paired intervals and of the scorecard's comparisons
    seed: int = 0
    results_path: str = "book/results/results.csv"  # the study's results (read; sensitivity rows appended)
    # BLAS threads while scoring (None: the study's setting, else the library's default). On a small, busy machine scikit-learn's
    # unconverged path runs 45x slower with OpenBLAS threads that wait on each other (mini: 1)
    blas_threads: int | None = None
    device: str = ""


@dataclass
class SensitivityPage:
    """What the notebook shows."""

    summary: pd.DataFrame  # the verdict table, one line per variant
    changes: pd.DataFrame  # one line per (variant, setting, model, task)
    ranks: pd.DataFrame  # Spearman per (variant, setting, task)
    flips: pd.DataFrame  # per (variant, setting, finding)
    variants: list[str]
    models: list[str]
    retrain_models: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, float] = field(default_factory=dict)  # variant -> share of its scores read from the cache
    total_seconds: float = 0.0


def _names(value: str, known: list[str]) -> list[str]:
    return list(known) if value == "all" else split_names(value)


def run_sensitivity(params: SensitivityParams) -> SensitivityPage:
    """Score the variants for the chosen models and compare them with the recorded defaults."""
    start = time.perf_counter()
    study = load_study(params.study)
    params = replace(params, shots=params.shots or "20")
    variants = _names(params.variants, list(VARIANTS))
    for name in variants:
        VARIANTS.get(name)
    specs = _names(params.model, list(study.models))
    names = [get_model_cfg(s, zoo=study.zoo).name for s in specs]
    retrain = [s for s, n in zip(specs, names)
               if params.retrain_models in ("", "all") or n in split_names(params.retrain_models)]
    if not specs:
        raise ConfigError(f"Parameter 'model' names no model, got {params.model!r}.")
    defaults = recorded_defaults(params.results_path, [*study.models, *names])
    device = params.device or None

    def context(spec: str) -> ModelContext:
        return ModelContext(study, params, create_model(spec, zoo=study.zoo, device=device), device)

    with threadpool_limits(params.blas_threads or None, user_api="blas"):
        scored = score_variants(context, specs, variants, params, retrain_models=retrain,
                                results_path=params.results_path)
    table = changes(scored.scores, defaults, params.results_path, n_boot=params.n_boot, seed=params.seed)
    ranks = rank_correlations(table)
    compare = MemoComparer(params.results_path, n_boot=params.n_boot, seed=params.seed)
    flips = verdict_flips(defaults, scored.scores, study.zoo, compare)
    append_rows(params.results_path, scored.rows + _flip_rows(flips, study, device))
    cached = scored.scores.groupby("variant", sort=False).cached.mean().to_dict() if len(scored.scores) else {}
    return SensitivityPage(verdict_table(table, ranks, flips), table, ranks, flips, variants, names,
                           [get_model_cfg(s, zoo=study.zoo).name for s in retrain], scored.seconds, cached,
                           time.perf_counter() - start)


def _flip_rows(flips: pd.DataFrame, study, device) -> list[ResultRow]:
    """One row per (variant, finding): how many of the variant's settings flip the finding."""
    env, now = environment(device), utc_now()
    rows = []
    for (variant, finding), g in flips.groupby(["variant", "finding"], sort=False):
        flipped = g[g.flipped]
        detail = [{"setting": r.setting, "from": r.default, "to": r.variant_status} for r in flipped.itertuples()]
        rows.append(ResultRow(
            section="sensitivity", model=STUDY_MODEL, dataset="(scorecard)", metric=f"flips:{variant}:{finding}",
            value=float(len(flipped)), zoo=study.zoo, created_utc=now, **env,
            protocol_params=json.dumps({"variant": variant, "finding": finding}, sort_keys=True),
            selected_on="(no hyperparameters)",
            extra=json.dumps({"study": study.name, "variant": variant, "finding": finding, "settings": len(g),
                              "flips": detail}),
        ))
    return rows


def robustness(results_path: str) -> dict[str, str]:
    """Finding → what the sensitivity section found for it ("" when it has not run): the variants
    under which its verdict flips, or how many variants leave it unchanged."""
    if not results_path:
        return {}
    rows = latest_rows(read_results(results_path), "sensitivity")
    rows = rows[(rows.model == STUDY_MODEL) & rows.metric.str.startswith("flips:")]
    out: dict[str, list] = {}
    for r in rows.itertuples():
        e = json.loads(r.extra)
        out.setdefault(e["finding"], []).append(e)
    text = {}
    for finding, entries in out.items():
        flipped = [e for e in entries if e["flips"]]
        if not flipped:
            text[finding] = f"unchanged under {len(entries)} variants"
            continue
        parts = [f"{e['variant']} ({len(e['flips'])} of {e['settings']}: "
                 f"{', '.join(sorted({f['from'] + ' → ' + f['to'] for f in e['flips']}))})" for e in flipped]
        seeds = any(e["variant"].endswith("-seed") for e in flipped)
        text[finding] = ("flips with a seed, so it is not a verdict: " if seeds else "flips under ") + "; ".join(parts)
    return text


SECTIONS.add("sensitivity", Section(
    "sensitivity", "Protocol sensitivity", 105, SensitivityParams, run_sensitivity, per_model=False,
    reads=("linear", "fewshot", "finetune", "calibration", "detection", "dense"),
))
