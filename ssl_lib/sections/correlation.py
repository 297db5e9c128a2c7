"""The correlation section: does source (ImageNet) accuracy predict transfer? Study-level."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..correlation import (
    correlate,
    paper_settings,
    paper_source_accuracy,
    results_settings,
)
from ..results import read_results
from ..study import load_study
from ._record import SECTIONS, Section

__all__ = ["CorrelationParams", "study_correlations", "paper_correlations", "scatter_table"]


@dataclass(frozen=True)
class CorrelationParams:
    """Parameters of ``notebooks/correlation.ipynb``."""

    study: str = "mini"
    results_path: str = "book/results/results.csv"
    seed: int = 0
    n_boot: int = 10000  # bootstrap resamples of models for each interval


def _study_rows(params: CorrelationParams) -> pd.DataFrame:
    """The results rows of the study's models (other studies sharing the table are left out)."""
    study = load_study(params.study)
    rows = read_results(params.results_path)
    return rows[rows.model.isin(study.models)]


def study_correlations(params: CorrelationParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``(correlations, settings, source)`` for this study's own results (empty below 3 models)."""
    rows = _study_rows(params)
    if rows.model.nunique() < 3:
        return pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=float)
    settings, source = results_settings(rows)
    return correlate(settings, source, n_boot=params.n_boot, seed=params.seed), settings, source


def paper_correlations(params: CorrelationParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The same analysis on the paper's published tables (its Figures 1 and 2)."""
    settings, source = paper_settings(), paper_source_accuracy()
    return correlate(settings, source, n_boot=params.n_boot, seed=params.seed), settings, source


def scatter_table(settings: pd.DataFrame, source: pd.Series) -> pd.DataFrame:
    """Long table (model, setting, source %, score) for the per-setting scatter plots."""
    from ..stats import logit

    long = settings.rename_axis("model").reset_index().melt(id_vars="model", var_name="setting", value_name="score")
    long["logit_source"] = logit(source.reindex(long.model).to_numpy())
    return long.dropna(subset=["score"])


SECTIONS.add("correlation", Section(
    "correlation", "Correlation", 100, CorrelationParams, study_correlations, per_model=False, reads=("*",), compute=False,
))
