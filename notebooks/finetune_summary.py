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

params = setup(globals(), "finetune_summary")  # one-line errors for unknown parameters

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

study_cfg = load_study(params.study)
rows = section_table(params, "finetune")

# %% [markdown]
# # Fine-tuning
#
# Every model of the study under the paper's fine-tuning recipe (§3.2): all weights trained with
# SGD/Nesterov and a cosine schedule, (lr, wd) chosen on validation, the chosen point retrained on
# train+val and scored on test. One page per model follows, with its validation grids.

# %% tags=["remove-input"]
if rows.empty:
    display(Markdown("**No fine-tune results yet.** Run `make book` (or `make models` first if the mini zoo is missing)."))
else:
    cfgs = {p for p in rows.protocol_params}
    settings = [json.loads(p) for p in cfgs]
    display(Markdown(
        f"Study **{study_cfg.name}**: {rows.model.nunique()} models × {rows.dataset.nunique()} datasets; "
        + "; ".join(f"{s['steps']} steps at batch {s['batch_size']}, lr ∈ {s['lrs']}, wd ∈ {s['wds']}, "
                    f"augmentation {'on' if s['augment'] else 'off'}" for s in settings)
        + f". Selection: {', '.join(sorted(rows.selected_on.unique()))}. The paper's grid is 4 lr × 5 wd at "
        "5000 steps; the mini study scales it down so that it runs on two CPU cores."
    ))

# %% [markdown]
# ## This study
#
# Test metric per model and dataset (%), with the mean over datasets as the *avg* column.

# %% tags=["remove-input"]
if not rows.empty:
    wide = with_average(rows.pivot_table(index="model", columns="dataset", values="value", observed=True))
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * wide.shape[1], 0.8 + 0.45 * wide.shape[0]))
    sns.heatmap(wide, annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
    ax.set(xlabel="", ylabel="")
    plt.xticks(rotation=35, ha="right")
    plt.show()

# %% tags=["remove-cell"]
if rows.empty:
    headline = "no fine-tune results yet"
else:
    headline = f"{wide['avg'].idxmax()} leads with a mean of {wide['avg'].max():.1f} over {wide.shape[1] - 1} datasets"
glue("finetune_headline", headline, display=False)

# %% [markdown]
# With 95% bootstrap intervals over test images, and the chosen (lr, wd):

# %% tags=["remove-input"]
if not rows.empty:
    hp = rows.hyperparams.map(json.loads)
    cells = rows.assign(cell=[f"{format_ci(v, lo, hi)} · lr {h['lr']:g}, wd {h['wd']:g}"
                              for v, lo, hi, h in zip(rows.value, rows.ci_low, rows.ci_high, hp)])
    display(cells.pivot(index="model", columns="dataset", values="cell"))

# %% [markdown]
# ## Fine-tuning against linear evaluation
#
# The paper finds the two highly correlated across models. Each point is one model and dataset of
# this study (the linear section's result beside the fine-tuned one).

# %% tags=["remove-input"]
linear = section_table(params, "linear") if "linear" in study_cfg.sections else rows.iloc[:0]
if not rows.empty and not linear.empty:
    both = rows.merge(linear[["model", "dataset", "value"]], on=["model", "dataset"], suffixes=("_ft", "_lin"))
    if both.empty:
        display(Markdown("No dataset is in both sections."))
    else:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        sns.scatterplot(data=both, x="value_lin", y="value_ft", hue="dataset", style="dataset", ax=ax)
        lim = [min(both.value_lin.min(), both.value_ft.min()) - 2, max(both.value_lin.max(), both.value_ft.max()) + 2]
        ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="linear (%)", ylabel="fine-tune (%)")
        ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
        plt.show()
        r = both.groupby("dataset", observed=True)[["value_lin", "value_ft"]].corr(method="spearman").xs("value_lin", level=1)
        display(Markdown("Spearman rank correlation across models, per dataset: " + ", ".join(
            f"`{d}` {v:.2f}" for d, v in r.value_ft.items())))

# %% [markdown]
# ## The paper's Table 1 (fine-tune)
#
# The published fine-tuning results of the 14 ResNet-50 models (arXiv v2 / CVPR), for comparison.

# %% tags=["remove-input"]
paper = paper_table("table1_finetune").set_index("model")
fig, ax = plt.subplots(figsize=(12, 6))
sns.heatmap(paper, annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
ax.set(xlabel="", ylabel="")
plt.xticks(rotation=35, ha="right")
plt.show()
display(printed_table("table1_finetune"))  # every number as printed (the heatmap rounds)
