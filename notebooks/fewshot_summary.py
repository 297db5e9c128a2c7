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

params = setup(globals(), "fewshot_summary")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.summary import paper_with_ci, section_table, with_average
from ssl_lib.study import load_study
from ssl_lib.results import parsed

study_cfg = load_study(params.study)
rows = section_table(params, "fewshot")
if not rows.empty:
    rows = rows.assign(shots=parsed(rows, "protocol_params").n_shot.astype(int))
    protocols = {json.dumps({k: v for k, v in json.loads(p).items() if k != "n_shot"}, sort_keys=True)
                 for p in rows.protocol_params}

# %% [markdown]
# # Few-shot
#
# Every model of the study under the paper's few-shot protocol (§3.3): 5-way prototypical
# episodes on frozen features, drawn from each dataset's pooled images, 95% intervals over
# episodes. One page per model follows, with accuracy against shots and provenance.

# %% tags=["remove-input"]
if rows.empty:
    display(Markdown("**No few-shot results yet.** Run `make book` (or `make models` first if the mini zoo is missing)."))
else:
    settings = [json.loads(p) for p in protocols]
    display(Markdown(
        f"Study **{study_cfg.name}**: {rows.model.nunique()} models × {rows.dataset.nunique()} datasets × "
        f"shots {', '.join(str(int(k)) for k in sorted(rows.shots.unique()))}; "
        + "; ".join(f"{s['n_way']}-way, {s['n_query']} queries, {s['n_episodes']} episodes, resize `{s['resize']}`"
                    for s in settings)
        + ". The same episodes are used for every model (they depend only on the labels and the seed)."
    ))

# %% [markdown]
# ## This study
#
# Mean accuracy (%) per model and dataset for each shot count, with the mean over datasets as an
# *avg* column. A blank cell is a setting the dataset cannot supply (too few images per class).

# %% tags=["remove-input"]
if not rows.empty:
    shot_values = sorted(rows.shots.unique())
    fig, axes = plt.subplots(1, len(shot_values), figsize=(6 * len(shot_values), 0.9 + 0.45 * rows.model.nunique()),
                             squeeze=False)
    for ax, k in zip(axes[0], shot_values):
        wide = rows[rows.shots == k].pivot_table(index="model", columns="dataset", values="value", observed=True)
        sns.heatmap(with_average(wide.dropna(axis=1, how="all")), annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
        ax.set(title=f"5-way {k}-shot", xlabel="", ylabel="")
        ax.tick_params(axis="x", rotation=35)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Accuracy against shots, averaged over the datasets that supply every shot count:

# %% tags=["remove-input"]
if not rows.empty:
    complete = rows.groupby("dataset", observed=True).value.apply(lambda v: v.notna().all())
    kept = rows[rows.dataset.isin(complete[complete].index)]
    curve = kept.groupby(["model", "shots"], observed=True).value.mean().reset_index()
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=curve, x="shots", y="value", hue="model", marker="o", ax=ax)
    ax.set(xscale="log", xticks=shot_values, ylabel="mean accuracy (%)",
           title=f"over {kept.dataset.nunique()} datasets")
    ax.xaxis.set_major_formatter(plt.ScalarFormatter())
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    plt.show()

# %% tags=["remove-cell"]
if rows.empty:
    headline = "no few-shot results yet"
else:
    k = 20 if 20 in shot_values else shot_values[len(shot_values) // 2]
    means = rows[rows.shots == k].groupby("model", observed=True).value.mean()
    headline = f"at {k} shots, {means.idxmax()} leads with a mean accuracy of {means.max():.1f}"
glue("fewshot_headline", headline, display=False)

# %% [markdown]
# With the 95% intervals (1.96·std/√episodes):

# %% tags=["remove-input"]
if not rows.empty:
    cells = rows.assign(cell=[f"{v:.1f} ± {v - lo:.1f}" if pd.notna(v) else "–" for v, lo in zip(rows.value, rows.ci_low)])
    display(cells.pivot(index="model", columns=["shots", "dataset"], values="cell").sort_index(axis=1))

# %% [markdown]
# ## The paper's few-shot tables
#
# The published 5-way results of the 14 ResNet-50 models (mean accuracy ± 95% interval, 600
# episodes). Tables 2 and 3 are the main text's 20-shot results on the Kornblith datasets and on
# CD-FSL; Tables 6–8 the appendix's 5- and 50-shot results (50-shot leaves out Caltech101, Cars
# and Flowers, which have too few images per class).

# %% tags=["remove-input"]
for name, title in [("table2_fewshot_kornblith_5w20s", "Table 2: Kornblith datasets, 20-shot"),
                    ("table3_fewshot_cdfsl_5w20s", "Table 3: CD-FSL, 20-shot"),
                    ("table6_fewshot_kornblith_5w5s", "Table 6: Kornblith datasets, 5-shot"),
                    ("table7_fewshot_kornblith_5w50s", "Table 7: Kornblith datasets, 50-shot"),
                    ("table8_fewshot_cdfsl_5s_50s", "Table 8: CD-FSL, 5- and 50-shot")]:
    display(Markdown(f"**{title}**"))
    display(paper_with_ci(name))
