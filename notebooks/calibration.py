# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters", "remove-cell"]
study = "mini"
model = "all"
seed = 0
results_path = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "calibration")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.correlation import table9_printed_row
from ssl_lib.paper_tables import printed_table
from ssl_lib.sections.calibration import (
    PAPER_ECE_METRICS, VARIANTS, dataset_table, ece_vs_source, load_calibration, model_table, paper_ece,
    reliability_frame, reliability_plot, source_top1,
)

# %% [markdown]
# # Calibration
#
# How far a classifier's confidence is from its accuracy: the expected calibration error (ECE,
# 15 equal-width bins of the top-1 confidence, in %, as netcal's which the paper used) of the
# many-shot linear and fine-tuned classifiers' test predictions (§4.7, Table 9), before and after
# temperature scaling (the logits divided by one fitted T). Multi-label tasks have no ECE here,
# as in the paper (it skipped VOC2007). The rows come from the linear and fine-tune runs.
#
# Two scaled variants are recorded, and the tables say which is which:
#
# - **`scaled` = the paper's**: 5-fold cross-validated temperature scaling *on the test logits*
#   (the official `cross_validate_temp_scaling`: T is fitted on one fold of the test set and the
#   ECE measured on the other four, averaged over the five folds). T is fitted on **test data**.
# - **`scaled_val`**: T fitted on validation logits (linear: the selection fit at the chosen C,
#   trained on train only; fine-tune: the chosen grid point's model) and applied to the test
#   logits, which then take no part in any fit.

# %% tags=["remove-input"]
page = load_calibration(params)
rows = page.rows
if page.missing:
    display(Markdown(page.missing_message()))
if not rows.empty:
    display(Markdown(f"Study **{params.study}**: {rows.model.nunique()} models, "
                     f"{rows.dataset.nunique()} datasets, from `{params.results_path}`."))

# %% [markdown]
# ## ECE per model
#
# Each column is the plain mean over the datasets its protocol ran on (the study's linear datasets
# without the multi-label one; the fine-tune datasets). We read Table 9 the same way: one number per
# model and column, the mean over the paper's ten many-shot datasets (VOC2007 excluded); the paper
# does not spell the aggregation out. Lower is better calibrated. The `*_scaled` columns are the
# paper's test-cv variant (T fitted on folds of the test set), `*_scaled_val` fit T on validation.

# %% tags=["remove-input"]
table = model_table(rows, page.models) if not rows.empty else pd.DataFrame()
if not table.empty:
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * table.shape[1], 0.8 + 0.42 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=".1f", cmap="rocket_r", cbar=False, ax=ax)
    ax.set(xlabel="", ylabel="")
    plt.xticks(rotation=30, ha="right")
    plt.show()
    for name, r in table.iterrows():
        for metric, value in r.items():
            glue(f"calibration_{name}_{metric}", float(value), display=False)

# %% [markdown]
# Per dataset, with the temperatures: `T_val` is the validation-fitted T, `T_cv_median` the median
# of the five test-fold temperatures. T > 1 means the classifier was over-confident.

# %% tags=["remove-input"]
if not rows.empty:
    detail = dataset_table(rows, page.models)
    display(detail.style.format("{:.2f}", na_rep="–"))

# %% [markdown]
# ## Reliability diagrams
#
# Accuracy against mean confidence per bin, pooled over each model's datasets, for a few models;
# the diagonal is perfect calibration. The `scaled` curve pools the five test folds' evaluations.

# %% tags=["remove-input"]
if not rows.empty:
    preferred = [m for m in ("supervised", "byol", "random") if m in set(rows.model)]
    chosen = (preferred + [m for m in table.index if m not in preferred])[:3]
    frame = reliability_frame(rows[rows.model.isin(chosen)], pool_datasets=True)
    reliability_plot(frame, titles="{row_name} · {col_name}", hue_order=list(VARIANTS), row="model",
                     row_order=chosen, col="protocol", height=2.4)
    plt.show()

# %% [markdown]
# ## The paper's Table 9 (ECE columns)
#
# The 14 ResNet-50 models on the paper's datasets; `scaled` is the test-cv variant. Models with a
# namesake in this study are set side by side below it.

# %% tags=["remove-input"]
paper = paper_ece()
display(printed_table("table9_calibration_reconstruction_attention")[PAPER_ECE_METRICS])  # as printed
if not table.empty:
    lower = paper.copy()
    lower.index = lower.index.str.lower()
    common = [m for m in table.index if m in lower.index]
    if common:
        both = pd.concat({"this study": table.loc[common, PAPER_ECE_METRICS],
                          "paper": lower.loc[common, PAPER_ECE_METRICS]}, axis=1)
        display(both.style.format("{:.2f}", na_rep="–"))

# %% [markdown]
# ## Are models with better source accuracy better calibrated?
#
# The paper (§4.7): newer self-supervised models are better calibrated; Table 9's last row gives the
# Pearson r of each ECE column with logit ImageNet accuracy (−0.77, −0.59, −0.90, −0.59). The same on
# this study's models: logit(mean ECE) against logit(source top-1), with 95% bootstrap intervals over
# models.

# %% tags=["remove-input"]
source = source_top1(rows) if not rows.empty else pd.Series(dtype=float)
if len(table) >= 3 and len(source) >= 3:
    corr = ece_vs_source(table, source, seed=params.seed).set_index("metric")
    corr["paper (Table 9)"] = table9_printed_row().reindex(corr.index)
    display(corr.style.format({"r": "{:.2f}", "ci_low": "{:.2f}", "ci_high": "{:.2f}", "paper (Table 9)": "{:.2f}"},
                              na_rep="–"))
    shown = [m for m in ("ece_linear_unscaled", "ece_linear_scaled", "ece_finetune_unscaled", "ece_finetune_scaled")
             if m in table.columns]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        pair = pd.concat([source, table[metric]], axis=1, join="inner").dropna()
        ax.scatter(pair.iloc[:, 0], pair.iloc[:, 1])
        for name, (x, y) in pair.iterrows():
            ax.annotate(name, (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
        r = corr.loc[metric, "r"]
        ax.set(xlabel="source top-1 (%)", ylabel="ECE (%)", title=f"{metric}\nr = {r:.2f}" if pd.notna(r) else metric)
        if pd.notna(r):
            glue(f"calibration_r_{metric}", float(r), display=False)
    plt.tight_layout()
    plt.show()
else:
    display(Markdown("Needs calibration rows and source accuracies of at least 3 models for a correlation."))

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
if not rows.empty:
    display(rows[["model", "dataset", "metric", "run_id", "created_utc", "git_sha", "selected_on", "hyperparams"]]
            .sort_values(["model", "dataset", "metric"]).style.hide(axis="index"))
