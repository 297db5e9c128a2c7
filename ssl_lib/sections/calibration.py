"""The calibration page: ECE before and after temperature scaling, from the linear and fine-tune runs.

The rows are written by the linear and fine-tune runs themselves (:func:`calibration_rows`, same
run id as their other rows, ``section="calibration"`` so they stay out of those tables); this
study-level page only reads them. Metric names are Table 9's columns, plus ``*_scaled_val``:

- ``ece_<protocol>_unscaled``: the test predictions as they are;
- ``ece_<protocol>_scaled``: the paper's 5-fold cross-validated temperature scaling *on the test
  logits* (T is fitted on test data; :func:`ssl_lib.evaluate.calibration.cv_scaled_ece`);
- ``ece_<protocol>_scaled_val``: T fitted on validation logits, applied to the test logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..evaluate.calibration import CV_FOLDS, Calibration, Reliability
from ..paper_tables import paper_table
from ..results import COLUMNS, ResultRow, latest_rows, params_hash, parsed, read_results
from ..stats import correlation, correlation_ci, logit
from ..study import load_study
from ._common import RowStamp, split_names
from ._record import SECTIONS, Section

__all__ = [
    "CalibrationParams",
    "CalibrationPage",
    "PROTOCOLS",
    "VARIANTS",
    "ECE_METRICS",
    "PAPER_ECE_METRICS",
    "calibration_rows",
    "load_calibration",
    "model_table",
    "dataset_table",
    "reliability_frame",
    "reliability_plot",
    "paper_ece",
    "ece_vs_source",
]

PROTOCOLS = ("linear", "finetune")
# variant -> where its temperature came from (the rows' ``selected_on``)
VARIANTS = {
    "unscaled": "(no temperature scaling)",
    "scaled": f"test ({CV_FOLDS}-fold CV, as the paper)",
    "scaled_val": "val",
}
ECE_METRICS = [f"ece_{p}_{v}" for p in PROTOCOLS for v in VARIANTS]
PAPER_ECE_METRICS = [m for m in ECE_METRICS if not m.endswith("_val")]  # Table 9's four columns


@dataclass(frozen=True)
class CalibrationParams:
    """Parameters of ``notebooks/calibration.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "all"  # "all" (the study's models), one model or a comma-separated list
    seed: int = 0
    results_path: str = ""  # the study's results CSV


def calibration_rows(stamp: RowStamp, cal: Calibration, *, protocol: str, dataset: str, protocol_params: dict,
                     n_train: int, n_val: int, val_source: str, extra: dict, seconds: float) -> list[ResultRow]:
    """The three ECE rows of one (model, dataset) for the linear or fine-tune run that made ``cal``.

    They share the run's stamp (run id, weights, environment) but are filed under the
    ``calibration`` section; ``extra`` carries each variant's temperature(s) and reliability bins.
    ``seconds`` (the calibration's time) is split evenly over the three rows.
    """
    protocol_params = {**protocol_params, "protocol": protocol, "n_bins": cal.n_bins, "cv_folds": CV_FOLDS}
    values = {"unscaled": ({}, cal.unscaled), "scaled": ({"T_folds": cal.temperatures_cv}, cal.scaled),
              "scaled_val": ({"T": cal.temperature_val}, cal.scaled_val)}
    rows = []
    for variant, (temperature, value) in values.items():
        selected_on = f"val ({val_source})" if variant == "scaled_val" else VARIANTS[variant]
        bins = cal.bins.get(variant)
        row = stamp.row(
            dataset=dataset, metric=f"ece_{protocol}_{variant}", value=value, protocol=protocol, train_split="train+val",
            eval_split="test", n_train=n_train, n_val=n_val, n_eval=cal.n_test,
            protocol_params=json.dumps(protocol_params, sort_keys=True), hyperparams=json.dumps(temperature),
            selected_on=selected_on, params_hash=params_hash(protocol_params), wall_seconds=seconds / len(values),
            extra=json.dumps({**extra, "protocol": protocol, "variant": variant, **temperature,
                              "bins": bins.to_dict() if bins is not None else None}),
        )
        rows.append(replace(row, section="calibration"))
    return rows


@dataclass
class CalibrationPage:
    """The latest calibration rows of the requested models, and the models that have none."""

    rows: pd.DataFrame
    models: list[str]  # requested, in the study's order
    missing: list[str]
    results_path: str

    def missing_message(self) -> str:
        """One line per model without rows, saying how to get them."""
        where = self.results_path or "(no results_path given)"
        return "\n".join(
            f"- No calibration rows for `{m}` in `{where}`: run `notebooks/linear.ipynb` and "
            f"`notebooks/finetune.ipynb` with `-p model {m} -p results_path <results CSV>`, or `make book`."
            for m in self.missing
        )


def load_calibration(params: CalibrationParams) -> CalibrationPage:
    """Read the ``calibration`` rows of the requested models from ``params.results_path``."""
    study = load_study(params.study)
    models = list(study.models) if params.model == "all" else split_names(params.model)
    rows = read_results(params.results_path) if params.results_path else pd.DataFrame(columns=COLUMNS)
    rows = latest_rows(rows[rows.model.isin(models)], "calibration")
    rows = rows[rows.metric.isin(ECE_METRICS)].copy()
    rows["value"] = rows["value"].astype(float)
    present = set(rows.model)
    return CalibrationPage(rows, models, [m for m in models if m not in present], params.results_path)


def model_table(rows: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Model x the six ECE columns, each the plain mean over the datasets it was measured on.

    Table 9 prints one number per model and column; we read it as the mean over the paper's
    many-shot datasets (VOC excluded, it is multi-label) and aggregate the same way.
    """
    table = rows.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    table = table.reindex(columns=[m for m in ECE_METRICS if m in table.columns])
    return table.reindex([m for m in (models or table.index) if m in table.index])


def dataset_table(rows: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """(model, protocol, dataset) x (unscaled, scaled, scaled_val) ECE, with the temperatures; models
    in the order of ``models``, linear before fine-tune."""
    extra = parsed(rows, "extra")
    parts = rows.assign(variant=extra["variant"], t_val=extra.get("T"), t_folds=extra.get("T_folds"))
    wide = parts.pivot_table(index=["model", "protocol", "dataset"], columns="variant", values="value")
    wide = wide.reindex(columns=[v for v in VARIANTS if v in wide.columns])
    wide.columns.name = None
    t_val = parts[parts.variant == "scaled_val"].set_index(["model", "protocol", "dataset"]).t_val
    t_cv = parts[parts.variant == "scaled"].set_index(["model", "protocol", "dataset"]).t_folds.map(
        lambda folds: float(np.median(folds)) if isinstance(folds, list) and folds else np.nan)
    rank = {"model": {m: i for i, m in enumerate(models or [])}, "protocol": {p: i for i, p in enumerate(PROTOCOLS)}}

    def order(level: pd.Index) -> pd.Index:
        if level.name not in rank:
            return level
        return level.map(lambda v: rank[level.name].get(v, len(rank[level.name])))

    return wide.assign(T_val=t_val, T_cv_median=t_cv).sort_index(key=order)


def _bins(extra: str) -> Reliability | None:
    d = json.loads(extra).get("bins") if isinstance(extra, str) else None
    return Reliability.from_dict(d) if d else None


def reliability_frame(rows: pd.DataFrame, *, pool_datasets: bool = False) -> pd.DataFrame:
    """Long table of the filled reliability bins: model, protocol, dataset, variant, confidence,
    accuracy, count. ``pool_datasets`` merges each model's datasets (count-weighted) into ``"all"``."""
    items = []
    for r in rows.itertuples():
        bins = _bins(r.extra)
        if bins is not None:
            _, protocol, variant = r.metric.split("_", 2)
            items.append((r.model, protocol, r.dataset, variant, bins))
    if pool_datasets:
        groups: dict[tuple, list[Reliability]] = {}
        for model, protocol, _, variant, bins in items:
            groups.setdefault((model, protocol, variant), []).append(bins)
        items = [(m, p, "all", v, Reliability.pool(b)) for (m, p, v), b in groups.items()]
    out = [{"model": m, "protocol": p, "dataset": d, "variant": v, "confidence": c, "accuracy": a, "count": int(n)}
           for m, p, d, v, b in items for c, a, n in zip(b.confidence, b.accuracy, b.count) if n > 0]
    return pd.DataFrame(out, columns=["model", "protocol", "dataset", "variant", "confidence", "accuracy", "count"])


def reliability_plot(frame: pd.DataFrame, *, titles: str = "{col_name}", **facets):
    """Reliability diagrams of a :func:`reliability_frame`, one panel per facet (seaborn ``relplot``
    keywords, e.g. ``col="dataset", col_wrap=4``), with the diagonal of perfect calibration."""
    import seaborn as sns

    grid = sns.relplot(data=frame, x="confidence", y="accuracy", hue="variant", kind="line", marker="o",
                       **{"height": 2.2, "aspect": 1.1, **facets}, facet_kws={"xlim": (0, 1), "ylim": (0, 1)})
    for ax in grid.axes.flat:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    grid.set_titles(titles)
    return grid


def paper_ece() -> pd.DataFrame:
    """Table 9's four ECE columns (%), one row per paper model (the correlation row dropped)."""
    table = paper_table("table9_calibration_reconstruction_attention").set_index("model")
    return table.loc[table.index != "Correlation to ImageNet", PAPER_ECE_METRICS]


def show_run_calibration(rows: pd.DataFrame) -> None:
    """A linear or fine-tune page's calibration: the ECE table and reliability diagrams of its rows."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    if rows.empty:
        display(Markdown("No calibration for these datasets (multi-label only)."))
        return
    display(dataset_table(rows).droplevel(["model", "protocol"]).style.format("{:.2f}", na_rep="–"))
    reliability_plot(reliability_frame(rows), col="dataset", col_wrap=4)
    plt.show()


def source_top1(rows: pd.DataFrame) -> pd.Series:
    """Each model's source (ImageNet / mini-source) top-1 %, as recorded in the rows' ``extra``."""
    values = rows.groupby("model").source_top1.last()
    return values.dropna().astype(float)


def ece_vs_source(table: pd.DataFrame, source: pd.Series, *, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Pearson r across models of logit(source top-1) with logit(mean ECE) per column, with a
    bootstrap CI over models: Table 9's correlation row, on this study's models."""
    out = []
    for column in table.columns:
        pair = pd.concat([source, table[column]], axis=1, join="inner").dropna()
        row = {"metric": column, "n_models": len(pair), "r": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        if len(pair) >= 3 and pair.iloc[:, 0].nunique() > 1 and pair.iloc[:, 1].nunique() > 1:
            x, y = logit(pair.iloc[:, 0].to_numpy()), logit(pair.iloc[:, 1].to_numpy())
            low, high = correlation_ci(x, y, "pearson", n_boot=n_boot, seed=seed)
            row.update(r=correlation(x, y, "pearson"), ci_low=low, ci_high=high)
        out.append(row)
    return pd.DataFrame(out, columns=["metric", "n_models", "r", "ci_low", "ci_high"])


# Table 9's ECE columns (%), logit-transformed as in its correlation row
_TABLE9 = ("ece_linear_unscaled", "ece_linear_scaled", "ece_finetune_unscaled", "ece_finetune_scaled")
SECTIONS.add("calibration", Section(
    "calibration", "Calibration", 60, CalibrationParams, load_calibration, per_model=False,
    reads=("calibration", "linear", "finetune"), compute=False,
    setting=lambda dataset, metric: metric if metric in _TABLE9 else None,
))
