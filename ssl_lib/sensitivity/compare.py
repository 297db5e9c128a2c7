"""What the variants change: each score against its default, the model ranking, the verdicts.

Three measures, each with its rule:

- **Change**: ``score(variant) − score(default)`` per model and task (dataset × metric), with a 95%
  percentile bootstrap interval. *Paired* when both are scored on the same test images or
  episodes (one resample of the examples scores both; :func:`ssl_lib.outcomes.paired_difference`);
  *independent* when they are not (other episodes: each side resampled on its own,
  :func:`independent_difference`). Errors (angular error) keep their sign: lower is better there.
- **Rank correlation**: Spearman's ρ across models between the default and the variant's scores,
  per task; a variant's worst case is its lowest ρ over tasks and settings.
- **Verdicts**: the scorecard's findings (:mod:`ssl_lib.scorecard`, by their own stated rules) on
  the recorded rows, and on the same rows with the variant's scores put in place of the rows they
  re-score; a finding flips when its status differs. A variant with its own baseline (carve seed
  0) is compared with the scorecard on its baseline's scores, not the recorded rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..outcomes import PairedDifference, load_outcomes, metric_on, n_examples, paired_difference, resampled
from ..verdicts import Comparer
from .compute import ALTERNATIVE, BASELINE
from .variants import VARIANTS

__all__ = ["UNITS", "unit", "BOOT_CAP", "CHANGE_RULE", "RANK_RULE", "FLIP_RULE", "MemoComparer", "independent_difference", "changes",
           "rank_correlations", "substitute", "verdict_flips", "verdict_table"]

#: Outcome kinds whose statistic is costly per resample get fewer resamples: each ECE resample
#: refits five temperatures (the paper's cross-validated scaling).
BOOT_CAP = {"ece": 200}
CHANGE_RULE = ("variant − default per model and task, 95% percentile bootstrap interval: paired over the same test "
               "images or episodes ({n_boot} resamples; ECE {ece}), independent resamples where the variant draws "
               "other episodes")
RANK_RULE = "Spearman's ρ across models between default and variant scores, per task; the lowest over tasks and settings"
FLIP_RULE = ("each scorecard finding decided by its own rule on the recorded rows and on the rows with the variant's "
             "scores substituted; a flip is a changed status")


@dataclass(frozen=True)
class MemoComparer(Comparer):
    """A :class:`~ssl_lib.verdicts.Comparer` that remembers each paired comparison it made (the
    scorecard is re-decided once per variant setting, and most of its comparisons do not change)."""

    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def diff(self, row_a, row_b, metric=None) -> PairedDifference:
        key = (row_a.outcomes, row_b.outcomes, metric or row_a.metric)
        if key not in self.memo:
            self.memo[key] = super().diff(row_a, row_b, metric)
        return self.memo[key]


def independent_difference(results_path, outcomes_a: str, outcomes_b: str, metric: str, *, n_boot: int = 1000,
                           seed: int = 0, level: float = 0.95) -> PairedDifference:
    """``metric(a) − metric(b)`` with a percentile interval from independent resamples of each side's
    examples (for scores on different examples, e.g. episodes drawn with different seeds)."""
    kind_a, a = load_outcomes(results_path, outcomes_a)
    kind_b, b = load_outcomes(results_path, outcomes_b)
    n_a, n_b = n_examples(kind_a, a), n_examples(kind_b, b)
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, n_a, n_a), rng.integers(0, n_b, n_b)) for _ in range(n_boot)]  # a, b, a, b, ...
    diffs = (resampled(kind_a, a, metric, np.stack([d[0] for d in draws]))
             - resampled(kind_b, b, metric, np.stack([d[1] for d in draws])))
    low, high = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    point = metric_on(kind_a, a, metric) - metric_on(kind_b, b, metric)
    return PairedDifference(float(point), float(low), float(high), min(n_a, n_b), n_boot)


def _identical(results_path, outcomes_a: str, outcomes_b: str) -> bool:
    """Both sides hold the very same outcomes (e.g. episodes drawn with the default's own seed)."""
    kind_a, a = load_outcomes(results_path, outcomes_a)
    kind_b, b = load_outcomes(results_path, outcomes_b)
    return kind_a == kind_b and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def outcome_metric(section: str, metric: str) -> str:
    """The metric name the outcomes statistic takes: a detection row's ``frozen_AP50`` is ``AP50``
    of its setting's match table."""
    return metric.rsplit("_", 1)[-1] if section == "detection" else metric


def _baselines(scores: pd.DataFrame, defaults: pd.DataFrame) -> pd.DataFrame:
    """For each alternative score, the score it is compared with (value, outcomes, where from)."""
    alt = scores[scores.role == ALTERNATIVE]
    computed = scores[scores.role == BASELINE][["variant", "model", "dataset", "metric", "value", "outcomes", "setting"]]
    computed = computed.rename(columns={"value": "default", "outcomes": "default_outcomes", "setting": "default_setting"})
    recorded = defaults[["section", "model", "dataset", "metric", "value", "outcomes"]].rename(
        columns={"value": "default", "outcomes": "default_outcomes"}).assign(default_setting="recorded row")
    own = alt[alt.variant.map(lambda v: VARIANTS.get(v).baseline is not None)]
    rec = alt[alt.variant.map(lambda v: VARIANTS.get(v).baseline is None)]
    out = pd.concat([own.merge(computed, on=["variant", "model", "dataset", "metric"], how="left"),
                     rec.merge(recorded, on=["section", "model", "dataset", "metric"], how="left")], ignore_index=True)
    out["default"] = pd.to_numeric(out["default"], errors="coerce")
    return out


def changes(scores: pd.DataFrame, defaults: pd.DataFrame, results_path, *, n_boot: int = 1000,
            seed: int = 0) -> pd.DataFrame:
    """One line per alternative score: its default, the change and its interval (see the module docstring)."""
    out = []
    for r in _baselines(scores, defaults).itertuples(index=False):
        line = {"variant": r.variant, "setting": r.setting, "model": r.model, "section": r.section,
                "dataset": r.dataset, "metric": r.metric, "default_from": r.default_setting, "default": r.default,
                "value": r.value, "change": np.nan, "ci_low": np.nan, "ci_high": np.nan, "interval": "", "n": 0}
        has = isinstance(r.default_outcomes, str) and r.default_outcomes
        if r.default != r.default:  # no default to compare with
            line["interval"] = "no default row"
        elif not has:
            line.update(change=r.value - r.default, interval="none (the default row has no outcomes)")
        else:
            boots = min(n_boot, BOOT_CAP.get(load_outcomes(results_path, r.outcomes)[0], n_boot))
            # other episodes are resampled on their own; the very same outcomes (seed = the default's) pair
            paired = VARIANTS.get(r.variant).paired or _identical(results_path, r.outcomes, r.default_outcomes)
            fn = paired_difference if paired else independent_difference
            d = fn(results_path, r.outcomes, r.default_outcomes, outcome_metric(r.section, r.metric), n_boot=boots,
                   seed=seed)
            line.update(change=d.difference, ci_low=d.ci_low, ci_high=d.ci_high, n=d.n_examples,
                        interval=f"{'paired' if paired else 'independent'}, {boots} resamples")
        out.append(line)
    return pd.DataFrame(out, columns=["variant", "setting", "model", "section", "dataset", "metric", "default_from",
                                      "default", "value", "change", "ci_low", "ci_high", "interval", "n"])


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman's ρ of default vs variant across models, per (variant, setting, dataset, metric)."""
    out = []
    for (variant, setting, dataset, metric), g in table.groupby(["variant", "setting", "dataset", "metric"], sort=False):
        g = g.dropna(subset=["default", "value"])
        rho = np.nan
        if len(g) >= 3 and g["default"].nunique() > 1 and g["value"].nunique() > 1:
            rho = float(sps.spearmanr(g["default"], g["value"]).statistic)
        out.append({"variant": variant, "setting": setting, "dataset": dataset, "metric": metric,
                    "n_models": len(g), "spearman": rho})
    return pd.DataFrame(out, columns=["variant", "setting", "dataset", "metric", "n_models", "spearman"])


def substitute(rows: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the value and outcomes of each row that ``scores`` re-score replaced by the
    score's (matched on section, model, dataset, metric; scores without a recorded row are left out)."""
    keys = ["section", "model", "dataset", "metric"]
    new = scores.drop_duplicates(keys, keep="last").set_index(keys)[["value", "outcomes"]]
    out = rows.copy()
    index = pd.MultiIndex.from_frame(out[keys])
    hit = index.isin(new.index)
    out.loc[hit, "value"] = new.loc[index[hit], "value"].to_numpy()
    out.loc[hit, "outcomes"] = new.loc[index[hit], "outcomes"].to_numpy()
    return out


def verdict_flips(defaults: pd.DataFrame, scores: pd.DataFrame, zoo: str, compare: Comparer) -> pd.DataFrame:
    """Per (variant, setting, finding): the status on the reference rows and with the variant's scores."""
    from ..scorecard import study_verdicts

    recorded = {k: v.status for k, v in study_verdicts(defaults, zoo, compare).items()}
    out = []
    for variant, group in scores.groupby("variant", sort=False):
        base = group[group.role == BASELINE]
        ref_rows = substitute(defaults, base) if len(base) else defaults
        reference = {k: v.status for k, v in study_verdicts(ref_rows, zoo, compare).items()} if len(base) else recorded
        for setting, alt in group[group.role == ALTERNATIVE].groupby("setting", sort=False):
            status = {k: v.status for k, v in study_verdicts(substitute(ref_rows, alt), zoo, compare).items()}
            out += [{"variant": variant, "setting": setting, "finding": f, "default": reference[f],
                     "variant_status": status[f], "flipped": reference[f] != status[f]} for f in status]
    return pd.DataFrame(out, columns=["variant", "setting", "finding", "default", "variant_status", "flipped"])


#: Metrics not in percentage points (mIoU is a fraction, as the paper's Table 5; errors in degrees).
UNITS = {"seg_mean_iou": "mIoU", "sn_mean_err": "degrees", "sn_median_err": "degrees"}


def unit(metric: str) -> str:
    """What a metric's changes are measured in: ``points`` (%) unless :data:`UNITS` says otherwise."""
    return UNITS.get(metric, "points")


def _largest(table: pd.DataFrame) -> str:
    """The largest absolute change, one per unit when a variant's tasks mix units."""
    t = table.dropna(subset=["change"])
    if t.empty:
        return "(no comparable scores)"
    parts = []
    for name, g in t.groupby(t.metric.map(unit), sort=False):
        r = g.loc[g.change.abs().idxmax()]
        ci = f" [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if r.ci_low == r.ci_low else ""
        label = "" if name == "points" else f" {name}"
        parts.append(f"{r.change:+.2f}{label}{ci} ({r.model}, {r.dataset} {r.metric}, {r.setting})")
    return "; ".join(parts)


def verdict_table(table: pd.DataFrame, ranks: pd.DataFrame, flips: pd.DataFrame) -> pd.DataFrame:
    """The page's lead table: per variant, the largest change, the share of changes whose interval
    excludes zero, the lowest rank correlation, and the verdicts that flip (or "verdicts unchanged")."""
    out = []
    for name in dict.fromkeys(table.variant):
        v = VARIANTS.get(name)
        t, r, f = table[table.variant == name], ranks[ranks.variant == name], flips[flips.variant == name]
        t_ci = t.dropna(subset=["ci_low"])
        sig = int(((t_ci.ci_low > 0) | (t_ci.ci_high < 0)).sum())
        r = r.dropna(subset=["spearman"])
        worst = (f"{r.spearman.min():.2f} ({r.loc[r.spearman.idxmin(), 'dataset']} "
                 f"{r.loc[r.spearman.idxmin(), 'metric']}, {len(r)} tasks)" if len(r) else "n/a (< 3 models)")
        flipped = f[f.flipped]
        verdicts = ("verdicts unchanged" if flipped.empty else "; ".join(
            f"{x.finding}: {x.default} → {x.variant_status} ({x.setting})" for x in flipped.itertuples()))
        out.append({"variant": name, "section": v.section, "alternative": v.alternative,
                    "settings": ", ".join(dict.fromkeys(t.setting)), "models": t.model.nunique(),
                    "largest change": _largest(t), "intervals excluding 0": f"{sig} of {len(t_ci)}",
                    "lowest ρ": worst, "verdicts": verdicts, "source": v.source})
    return pd.DataFrame(out)
