"""The statistical rules that turn a study's results into a verdict on one of the paper's claims.

Two kinds of claim, two rules, each stated beside the verdict it decides:

- **"A beats B"** (a model against supervised, on a task): the paired 95% bootstrap interval of
  ``score(A) − score(B)`` over the same test images or episodes (:mod:`ssl_lib.outcomes`). A task is
  a *win* when the interval lies above zero, a *loss* when below, else a *tie*. A claim about most
  tasks agrees when wins are more than half the tasks, disagrees when losses are at least half,
  and is otherwise inconclusive.
- **"r has this value"** (a correlation across models): the study's 95% interval is compared with
  the paper's (both bootstrapped over models). It agrees when the intervals overlap and the point
  estimates share a sign, and disagrees otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .outcomes import PairedDifference, paired_difference

__all__ = ["AGREES", "DISAGREES", "INCONCLUSIVE", "NOT_RUN", "Verdict", "Tally", "Comparer", "majority",
           "compatible", "PAIRED_RULE", "MAJORITY_RULE", "COMPATIBLE_RULE"]

AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN = "agrees", "disagrees", "inconclusive", "not run"

PAIRED_RULE = ("paired 95% bootstrap interval of the difference over the same test images (episodes for few-shot), "
               "{n_boot} resamples; win = above 0, loss = below 0, else tie")
MAJORITY_RULE = "agrees if wins > half the comparisons, disagrees if losses >= half, else inconclusive"
COMPATIBLE_RULE = ("agrees if the study's and the paper's 95% intervals (bootstrap over models) overlap and the "
                   "point estimates share a sign, else disagrees")


@dataclass(frozen=True)
class Verdict:
    status: str  # agrees | disagrees | inconclusive | not run
    evidence: str
    rule: str = ""


@dataclass
class Tally:
    """Outcomes of several paired comparisons, by label (a task, or a model)."""

    wins: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    ties: list[str] = field(default_factory=list)
    details: dict[str, PairedDifference] = field(default_factory=dict)

    def add(self, label: str, diff: PairedDifference) -> None:
        self.details[label] = diff
        {1: self.wins, -1: self.losses, 0: self.ties}[diff.sign].append(label)

    @property
    def n(self) -> int:
        return len(self.details)

    def describe(self, digits: int = 1) -> str:
        parts = [f"{label} {d.describe(digits)}" for label, d in self.details.items()]
        return f"{len(self.wins)} wins, {len(self.ties)} ties, {len(self.losses)} losses of {self.n}: " + "; ".join(parts)


def majority(tally: Tally) -> str:
    """:data:`MAJORITY_RULE`."""
    if tally.n == 0:
        return NOT_RUN
    if len(tally.wins) > tally.n / 2:
        return AGREES
    if len(tally.losses) >= tally.n / 2:
        return DISAGREES
    return INCONCLUSIVE


def compatible(study: tuple[float, float, float], paper: tuple[float, float, float]) -> str:
    """:data:`COMPATIBLE_RULE` for ``(estimate, low, high)`` triples."""
    (r, low, high), (pr, plow, phigh) = study, paper
    overlap = low <= phigh and plow <= high
    same_sign = (r > 0) == (pr > 0)
    return AGREES if overlap and same_sign else DISAGREES


@dataclass(frozen=True)
class Comparer:
    """Paired comparisons of result rows, reading their outcomes next to ``results_path``."""

    results_path: str | Path | None
    n_boot: int = 1000
    seed: int = 0

    @property
    def rule(self) -> str:
        return PAIRED_RULE.format(n_boot=self.n_boot)

    def missing(self, rows: pd.DataFrame) -> list[str]:
        """Models among ``rows`` whose outcomes are not recorded (rows from before outcomes existed)."""
        if self.results_path is None:
            return sorted(set(rows.model))
        has = rows["outcomes"].fillna("").astype(str).str.len() > 0 if "outcomes" in rows else pd.Series(False, rows.index)
        return sorted(set(rows.model[~has]))

    def diff(self, row_a: pd.Series, row_b: pd.Series, metric: str | None = None) -> PairedDifference:
        """``row_a − row_b`` (use error metrics with the sign flipped by the caller)."""
        return paired_difference(self.results_path, row_a.outcomes, row_b.outcomes, metric or row_a.metric,
                                 n_boot=self.n_boot, seed=self.seed)

    def tally(self, pairs: Sequence[tuple[str, pd.Series, pd.Series]], metric: str | None = None,
              lower_is_better: bool = False) -> Tally:
        """One paired comparison per ``(label, row of the claimed winner, row of the other)``."""
        out = Tally()
        for label, a, b in pairs:
            d = self.diff(a, b, metric)
            if lower_is_better:
                d = PairedDifference(-d.difference, -d.ci_high, -d.ci_low, d.n_examples, d.n_boot)
            out.add(label, d)
        return out
