"""The scorecard page: the paper's headline findings tested on the study's results. Study-level."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..results import read_results
from ..scorecard import scorecard
from ..study import load_study
from ._record import SECTIONS, Section

__all__ = ["ScorecardParams", "study_scorecard"]


@dataclass(frozen=True)
class ScorecardParams:
    """Parameters of ``notebooks/scorecard.ipynb``."""

    study: str = "mini"
    results_path: str = "book/results/results.csv"
    seed: int = 0


def study_scorecard(params: ScorecardParams) -> pd.DataFrame:
    study = load_study(params.study)
    rows = read_results(params.results_path)
    return scorecard(rows[rows.model.isin(study.models)], study.zoo, params.results_path, seed=params.seed)


SECTIONS.add("scorecard", Section(
    "scorecard", "Scorecard", 110, ScorecardParams, study_scorecard, per_model=False, reads=("*",), compute=False,
))
