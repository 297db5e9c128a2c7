"""Cross-model summary pages: read the results table, pivot, and set the paper's table beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..results import latest_rows, read_results
from ..study import load_study

__all__ = ["SummaryParams", "format_ci", "paper_with_ci", "section_table", "with_average"]


@dataclass(frozen=True)
class SummaryParams:
    """Parameters of ``notebooks/*_summary.ipynb``."""

    study: str = "mini"
    results_path: str = "book/results/results.csv"


def section_table(params: SummaryParams, section: str) -> pd.DataFrame:
    """The section's rows for the study's models and datasets (latest row per model × dataset)."""
    study = load_study(params.study)
    datasets = list(study.section(section).datasets)
    rows = read_results(params.results_path)
    rows = latest_rows(rows[rows.model.isin(study.models) & rows.dataset.isin(datasets)], section)
    rows["model"] = pd.Categorical(rows.model, categories=list(study.models), ordered=True)
    rows["dataset"] = pd.Categorical(rows.dataset, categories=datasets, ordered=True)
    return rows.sort_values(["model", "dataset"])


def with_average(wide: pd.DataFrame) -> pd.DataFrame:
    """Append the paper's ``avg`` column (plain mean over datasets)."""
    out = wide.copy()
    out["avg"] = wide.mean(axis=1, skipna=False)
    return out


def format_ci(value: float, low: float, high: float) -> str:
    if np.isnan(low):
        return f"{value:.1f}"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def paper_with_ci(name: str) -> pd.DataFrame:
    """A published few-shot table with ``x`` and ``x_ci`` columns as ``"x ± ci"`` cells, by model,
    in the paper's own digits."""
    from ..paper_tables import printed_table

    table = printed_table(name)
    values = [c for c in table.columns if not c.endswith("_ci")]
    return pd.DataFrame({c: [f"{v} ± {e}" for v, e in zip(table[c], table[f"{c}_ci"])] for c in values},
                        index=table.index)
