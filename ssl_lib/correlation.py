"""Does source accuracy predict transfer? Per-setting scores correlated with ImageNet top-1.

The paper's method (§4.6, A.7): Pearson r and Spearman rho across models between
logit(ImageNet top-1) and a downstream score. Bounded metrics (accuracy, AP, mIoU, fraction of
normals within a threshold) are logit-transformed; surface-normal errors are negated instead. A
setting's score averages the logit accuracies over its datasets (Fig 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .exceptions import ConfigError
from .paper_tables import paper_table
from .results import latest_rows
from .stats import correlation, correlation_ci, logit

__all__ = [
    "LOWER_IS_BETTER",
    "result_setting",
    "to_score",
    "paper_settings",
    "paper_source_accuracy",
    "results_settings",
    "correlate",
    "table9_correlations",
    "table9_printed_row",
]

LOWER_IS_BETTER = frozenset({"sn_mean_err", "sn_median_err"})  # negated, not logit-transformed
FRACTIONS = frozenset({"seg_mean_iou"})  # in [0, 1] as the paper prints it, not in %
_TABLE9_CORRELATION_ROW = "Correlation to ImageNet"
_TABLE9_PERCENT = ("ece_linear_unscaled", "ece_linear_scaled", "ece_finetune_unscaled", "ece_finetune_scaled",
                   "attentive_diffusion")  # proportions in %, logit-transformed like accuracies

_PAPER_SETTING_ORDER = (
    "linear", "finetune", "fewshot_kornblith_5shot", "fewshot_kornblith_20shot", "fewshot_kornblith_50shot",
    "fewshot_cdfsl_5shot", "fewshot_cdfsl_20shot", "fewshot_cdfsl_50shot", "detection_frozen",
    "detection_finetune", "surface_normals", "segmentation",
)  # the columns of paper_settings(), in its order


def result_setting(section: str, dataset: str, metric: str) -> str | None:
    """The correlation setting of one result row, as its section's record maps it (None: none).

    Settings with a counterpart in :func:`paper_settings` or Table 9 carry the same name.
    """
    from .sections import SECTIONS

    if section not in SECTIONS or SECTIONS.get(section).setting is None:
        return None
    return SECTIONS.get(section).setting(dataset, metric)


def to_score(values, metric: str, *, percent: bool | None = None):
    """``values`` of ``metric`` on the correlation scale: negated if an error, else logit (of a %
    unless the metric is a fraction, or ``percent`` says otherwise)."""
    if metric in LOWER_IS_BETTER:
        return -values
    return logit(values, percent=metric not in FRACTIONS if percent is None else percent)


def _table(name: str) -> pd.DataFrame:
    return paper_table(name).set_index("model")


def _mean_logit(table: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """Average of the logit accuracies over datasets, skipping ``_ci`` columns."""
    columns = columns if columns is not None else [c for c in table.columns if not c.endswith("_ci")]
    return logit(table[list(columns)]).mean(axis=1)


def paper_settings() -> pd.DataFrame:
    """The paper's Fig 1 scores: one row per model, one column per setting, from the shipped tables.

    Recognition settings average logit accuracies over datasets (50-shot Kornblith has 7 of the
    10); detection is logit AP50, surface normals logit % within 11.25°, segmentation logit mIoU.
    """
    linear, cdfsl = _table("table1_linear"), _table("table8_fewshot_cdfsl_5s_50s")
    dense, detection = _table("table5_dense"), _table("table4_detection_voc")
    settings = {
        "linear": _mean_logit(linear.drop(columns=["imagenet_top1", "avg"])),
        "finetune": _mean_logit(_table("table1_finetune").drop(columns=["avg"])),
        "fewshot_kornblith_5shot": _mean_logit(_table("table6_fewshot_kornblith_5w5s")),
        "fewshot_kornblith_20shot": _mean_logit(_table("table2_fewshot_kornblith_5w20s")),
        "fewshot_kornblith_50shot": _mean_logit(_table("table7_fewshot_kornblith_5w50s")),
        "fewshot_cdfsl_5shot": _mean_logit(cdfsl, [c for c in cdfsl.columns if c.endswith("_5shot")]),
        "fewshot_cdfsl_20shot": _mean_logit(_table("table3_fewshot_cdfsl_5w20s")),
        "fewshot_cdfsl_50shot": _mean_logit(cdfsl, [c for c in cdfsl.columns if c.endswith("_50shot")]),
        "detection_frozen": to_score(detection["frozen_AP50"], "AP50"),
        "detection_finetune": to_score(detection["finetune_AP50"], "AP50"),
        "surface_normals": to_score(dense["sn_within_11.25"], "sn_within_11.25"),
        "segmentation": to_score(dense["seg_mean_iou"], "seg_mean_iou"),  # a fraction
    }
    return pd.DataFrame(settings).reindex(linear.index)


def paper_source_accuracy() -> pd.Series:
    """ImageNet linear top-1 (%) as reported by each model's authors (Table 1)."""
    return _table("table1_linear")["imagenet_top1"]


def results_settings(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """This project's results as ``(settings, source top-1 %)``, shaped like :func:`paper_settings`.

    Each row's setting comes from its section's record (:func:`result_setting`); the latest
    row per (section, model, dataset, metric) wins, and NaN values (skipped settings) are left out
    of the averages. The source accuracy is each row's ``source_top1`` column.
    """
    key = ["section", "model", "dataset", "metric"]
    absent = sorted({*key, "value", "created_utc", "source_top1"} - set(results.columns))
    if absent:
        raise ConfigError(f"The results table lacks columns {absent}; pass ssl_lib.results.read_results(path).")
    rows = latest_rows(results)
    rows = rows.assign(setting=[result_setting(s, d, m)
                                for s, d, m in zip(rows["section"], rows["dataset"], rows["metric"])])
    rows = rows.dropna(subset=["setting"])
    if rows.empty:
        from .sections import SECTIONS

        known = [n for n, record in SECTIONS.items() if record.setting is not None]
        raise ConfigError(f"The results table has no rows of a section with correlation settings ({', '.join(known)}).")
    source = rows.assign(source=pd.to_numeric(rows["source_top1"], errors="coerce")).dropna(subset=["source"])
    source = source.groupby("model")["source"].last().astype(float)  # rows are sorted: the latest
    missing = sorted(set(rows["model"]) - set(source.index))
    if missing:
        raise ConfigError(f"No source_top1 in the rows of models {missing}; "
                          "drop their rows or re-run them with a zoo that records source_top1.")
    value = rows["value"].astype(float)
    score = (-value).where(rows["metric"].isin(LOWER_IS_BETTER), logit(value))  # as to_score, row by row
    score = score.where(~rows["metric"].isin(FRACTIONS), logit(value, percent=False))
    scored = rows.assign(score=score)
    settings = scored.pivot_table(index="model", columns="setting", values="score", aggfunc="mean")
    # the report's order: sections in report order, then the paper's order (Kornblith before
    # CD-FSL, 5 before 20 shots), then numbers for settings the paper lacks
    from .sections import in_report_order

    order = {section: i for i, section in enumerate(in_report_order())}
    paper_order = {name: i for i, name in enumerate(_PAPER_SETTING_ORDER)}
    first = scored.drop_duplicates("setting").set_index("setting")["section"]
    number = settings.columns.str.extract(r"(\d+)", expand=False).astype(float).fillna(0)
    ranked = sorted(zip(settings.columns, number),
                    key=lambda c: (order[first[c[0]]], paper_order.get(c[0], len(paper_order)), c[1], c[0]))
    settings = settings[[c for c, _ in ranked]]
    return settings, source.reindex(settings.index)


def correlate(
    settings: pd.DataFrame,
    source: pd.Series,
    *,
    methods: Sequence[str] = ("pearson", "spearman"),
    n_boot: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Correlation of logit(``source`` %) with each setting, with a bootstrap CI over models.

    Returns one row per (setting, method): ``setting, method, r, ci_low, ci_high, n_models``.
    Models missing from a setting (NaN) are left out of that setting only.
    """
    x_all = logit(source.astype(float))
    out = []
    for setting in settings.columns:
        pair = pd.concat([x_all, settings[setting]], axis=1, join="inner").dropna()
        if len(pair) < 3:
            raise ConfigError(f"Setting {setting!r} has {len(pair)} models with a score and a source accuracy; "
                              "a correlation needs at least 3. Drop that column first.")
        x, y = pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()
        for method in methods:
            low, high = correlation_ci(x, y, method, n_boot=n_boot, seed=seed)
            out.append({"setting": setting, "method": method, "r": correlation(x, y, method),
                        "ci_low": low, "ci_high": high, "n_models": len(pair)})
    return pd.DataFrame(out, columns=["setting", "method", "r", "ci_low", "ci_high", "n_models"])


def _table9() -> pd.DataFrame:
    return _table("table9_calibration_reconstruction_attention")


def table9_printed_row() -> pd.Series:
    """Table 9's last row as printed: Pearson r of each column with ImageNet accuracy."""
    return _table9().loc[_TABLE9_CORRELATION_ROW]


def table9_correlations(*, logit_percent: bool = True) -> pd.Series:
    """Table 9's correlation row recomputed: Pearson r of logit(ImageNet top-1) with each column.

    The percentage columns (ECE, attentive diffusion) are proportions and, like every bounded metric
    in A.7, are logit-transformed; LPIPS and colour MSE are distances and stay raw. Only this reading
    reproduces the printed row: raw ECE gives -0.79 and -0.58 where the paper prints -0.77 and
    -0.59. ``logit_percent=False`` correlates the raw columns.
    """
    table = _table9().drop(index=_TABLE9_CORRELATION_ROW)
    x = logit(paper_source_accuracy().reindex(table.index))
    if logit_percent:
        table = table.assign(**{c: logit(table[c]) for c in _TABLE9_PERCENT})
    return table.apply(lambda column: correlation(x, column))
