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
seed = 0
n_boot = 10000

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "correlation")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.correlation import table9_correlations, table9_printed_row
from ssl_lib.sections.correlation import paper_correlations, scatter_table, study_correlations


def bar_plot(corr: pd.DataFrame, title: str):
    """The paper's Figure 2: Pearson and Spearman per setting, with bootstrap intervals."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * corr.setting.nunique()), 3.6))
    settings = list(dict.fromkeys(corr.setting))
    for i, (method, sub) in enumerate(corr.groupby("method", sort=False)):
        sub = sub.set_index("setting").reindex(settings)
        x = [j + (i - 0.5) * 0.38 for j in range(len(settings))]
        ax.bar(x, sub.r, width=0.38, label=method)
        # the percentile interval as drawn from its ends: with few models it need not contain r
        ax.vlines(x, sub.ci_low, sub.ci_high, color="black", lw=0.8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(settings)), settings, rotation=35, ha="right")
    ax.set(ylim=(-1, 1), ylabel="correlation with logit source accuracy", title=title)
    ax.legend(fontsize=8)
    plt.show()


def scatter_grid(settings: pd.DataFrame, source: pd.Series, xlabel: str):
    """The paper's Figure 1: one panel per setting, a point per model."""
    long = scatter_table(settings, source)
    grid = sns.relplot(data=long, x="logit_source", y="score", col="setting", col_wrap=4, height=2.3,
                       aspect=1.15, facet_kws={"sharey": False})
    for ax, (name, sub) in zip(grid.axes.flat, long.groupby("setting", sort=False)):
        for r in sub.itertuples():
            ax.annotate(r.model, (r.logit_source, r.score), fontsize=5, alpha=0.7)
    grid.set_titles("{col_name}")
    grid.set_axis_labels(xlabel, "score")
    plt.show()


# %% [markdown]
# # Correlation with source accuracy
#
# Does a model's accuracy on the source task predict how well it transfers? The paper's method
# (its §4.6 and appendix A.7): across models, Pearson's *r* and Spearman's *ρ* between
# logit(ImageNet top-1) and a score per setting. The score of a recognition setting averages the
# logit accuracies over its datasets; detection uses logit AP50, surface normals logit of the
# fraction within 11.25°, segmentation logit mIoU; errors are negated rather than transformed.
# Intervals are 95% percentile-bootstrap intervals over models. With 10 to 14 models they are
# wide, and they should be read before the point values.

# %% [markdown]
# ## This study
#
# The source task is the mini suite's `mini-source` (the ImageNet analog); each model's source
# accuracy is its linear top-1 there, recorded with the mini zoo.

# %% tags=["remove-input"]
ours, our_settings, our_source = study_correlations(params)
if ours.empty:
    display(Markdown("**Not enough results yet**: a correlation needs result rows of at least 3 models. "
                     "Run `make book` first: this page reads `results.csv`."))
else:
    display(Markdown(f"{our_settings.shape[0]} models; source accuracy "
                     f"{our_source.min():.1f}–{our_source.max():.1f}%."))
    bar_plot(ours, f"study {params.study}")
    scatter_grid(our_settings, our_source, "logit source top-1")

# %% tags=["remove-input"]
def corr_table(corr):
    cells = corr.assign(cell=[f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]" for r, lo, hi in zip(corr.r, corr.ci_low, corr.ci_high)])
    table = cells.pivot(index="setting", columns="method", values="cell")
    table["models"] = corr.groupby("setting").n_models.first()
    return table.loc[list(dict.fromkeys(corr.setting))]


if not ours.empty:
    display(corr_table(ours))

# %% tags=["remove-cell"]
if ours.empty:
    headline = "no results to correlate yet"
else:
    lin = ours[(ours.setting == "linear") & (ours.method == "spearman")]
    headline = (f"Spearman ρ between source and linear transfer accuracy is {lin.r.iloc[0]:+.2f} "
                f"[{lin.ci_low.iloc[0]:+.2f}, {lin.ci_high.iloc[0]:+.2f}] over {lin.n_models.iloc[0]} models"
                if not lin.empty else "no linear results to correlate")
glue("correlation_headline", headline, display=False)

# %% [markdown]
# ## The paper's tables
#
# The same analysis recomputed from the paper's published tables (14 ResNet-50 models; ImageNet
# top-1 as the paper used it, 77.20 for supervised). The paper drew these as Figures 1 and 2
# without printing the values.

# %% tags=["remove-input"]
paper, paper_set, paper_src = paper_correlations(params)
bar_plot(paper, "paper (recomputed from Tables 1–5)")
scatter_grid(paper_set, paper_src, "logit ImageNet top-1")
display(corr_table(paper))

# %% [markdown]
# ### Table 9's correlation row
#
# Table 9 ends with the Pearson correlation of each column (calibration error, reconstruction
# distances, attentive diffusion) with ImageNet accuracy. Recomputed from the table's own values:
# it matches the printed row when ImageNet accuracy is logit-transformed and the columns in % (ECE,
# attentive diffusion) are too, as the paper's appendix says bounded metrics are. With raw ECE the
# first column misses by 0.025.

# %% tags=["remove-input"]
row = pd.DataFrame({"printed": table9_printed_row(), "recomputed": table9_correlations(),
                    "all columns raw": table9_correlations(logit_percent=False)})
row["difference"] = row.recomputed - row.printed
glue("table9_max_difference", float(row.difference.abs().max()), display=False)
row.style.format("{:+.3f}")
