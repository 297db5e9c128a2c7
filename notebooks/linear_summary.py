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
results_path = "book/results/results.csv"

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "linear_summary")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.paper_tables import paper_table, printed_table
from ssl_lib.sections.summary import format_ci, section_table, with_average
from ssl_lib.study import load_study
from ssl_lib.models._mini import paper_ratios, zoo_table

study_cfg = load_study(params.study)
rows = section_table(params, "linear")

# %% [markdown]
# # Many-shot linear evaluation
#
# Every model of the study under the paper's linear protocol (§3.1): logistic regression on frozen
# features, C chosen on validation, refit on train+val, the dataset's metric on the test split.
# One page per model follows this one, with its validation curves and provenance.

# %% tags=["remove-input"]
if rows.empty:
    display(Markdown("**No linear results yet.** Run `make book` (or `make models` first if the mini zoo is missing)."))
else:
    solvers = sorted({json.loads(p)["solver"] for p in rows.protocol_params})
    display(Markdown(
        f"Study **{study_cfg.name}**: {rows.model.nunique()} models × {rows.dataset.nunique()} datasets; "
        f"solver `{', '.join(solvers)}`; validation: {', '.join(sorted(rows.selected_on.unique()))}."
    ))

# %% [markdown]
# ## The models: source accuracy relative to supervised
#
# The paper's self-supervised models reach 0.77–0.98 of supervised pretraining's ImageNet top-1
# (below, from its Table 1), after 1.7–8.3 times as many epochs. The mini zoo's models, their
# training (from `ssl_lib/zoo/mini/manifest.json`, written by `make models`) and their mini-source
# linear top-1 as a fraction of supervised's:

# %% tags=["remove-input"]
if study_cfg.zoo == "mini":
    zoo = zoo_table()
    display(zoo.style.format({"train min": "{:.1f}", "final loss": "{:.3f}", "source top-1": "{:.1f}",
                              "ratio to supervised": "{:.2f}"}, na_rep="–"))
paper_ratio = paper_ratios()
display(Markdown("The paper: " + ", ".join(f"{m} {r:.2f}" for m, r in paper_ratio.drop("Supervised").items()) + "."))

# %% [markdown]
# ## This study
#
# Test metric per model and dataset (top-1, mean per-class accuracy or 11-point mAP, in %), with
# the mean over datasets as the paper's *avg* column. The first column is each model's linear
# top-1 on its source domain, recorded with the model (ImageNet top-1 in the paper study), as the
# paper prints ImageNet accuracy beside its Table 1; it is not part of the average.

# %% tags=["remove-input"]
if not rows.empty:
    wide = with_average(rows.pivot_table(index="model", columns="dataset", values="value", observed=True))
    # the source accuracy recorded with each model (the paper's ImageNet column), not in the average
    source = rows.groupby("model", observed=True).source_top1.first()
    wide.insert(0, "source top-1", source.astype(float))
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * wide.shape[1], 0.8 + 0.45 * wide.shape[0]))
    sns.heatmap(wide, annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
    ax.set(xlabel="", ylabel="")
    plt.xticks(rotation=35, ha="right")
    plt.show()

# %% tags=["remove-cell"]
if rows.empty:
    headline = "no linear results yet"
else:
    headline = f"{wide['avg'].idxmax()} leads with a mean of {wide['avg'].max():.1f} over {rows.dataset.nunique()} datasets"
glue("linear_headline", headline, display=False)

# %% [markdown]
# With 95% bootstrap intervals over test images:

# %% tags=["remove-input"]
if not rows.empty:
    cells = rows.assign(cell=[format_ci(v, lo, hi) for v, lo, hi in zip(rows.value, rows.ci_low, rows.ci_high)])
    display(cells.pivot(index="model", columns="dataset", values="cell"))

# %% [markdown]
# ## The paper's Table 1 (linear)
#
# The published many-shot linear results of the 14 ResNet-50 models (arXiv v2 / CVPR), for
# comparison. `imagenet_top1` is the ImageNet accuracy the paper used for its correlations.

# %% tags=["remove-input"]
paper = paper_table("table1_linear").set_index("model")
fig, ax = plt.subplots(figsize=(12, 6))
sns.heatmap(paper.drop(columns=["imagenet_top1"]), annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
ax.set(xlabel="", ylabel="")
plt.xticks(rotation=35, ha="right")
plt.show()
display(printed_table("table1_linear"))  # every number as printed (the heatmap rounds)
