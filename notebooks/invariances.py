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
dataset = "mini-source"
split = "test"
n_images = 1000
reference_split = "val"
n_reference = 1000
k = 8
transforms = "all"
seed = 0
results_path = ""
device = ""
batch_size = 256
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "invariances")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.evaluate.invariance import invariance_vs_transfer
from ssl_lib.sections.invariances import GROUPS, PROTOCOL, run_invariances, transfer_table

# %% [markdown]
# # Invariances
#
# The follow-up paper (*Why Do Self-Supervised Models Transfer?*) asks which invariances each
# pretraining objective learns, and whether they explain transfer. Its measure: the cosine
# similarity between an image's features and the features of a transformed copy, after whitening
# with the feature statistics of reference images. 1 means the features ignore the change. Each
# transformation is applied at several magnitudes; the tables average over them. The images come
# from the source domain the models were pretrained on.

# %% tags=["remove-input"]
profile = run_invariances(params)
display(Markdown(
    f"**{profile.model.nunique()} models** · **{params.n_images} images** from `{params.dataset}/{params.split}` "
    f"(whitening: {params.n_reference} from `{params.reference_split}`) · **{profile['transform'].nunique()} "
    f"transformations** × up to {params.k} magnitudes."
))

# %% [markdown]
# ## Invariance per model and transformation
#
# Mean whitened cosine similarity; spatial transformations (the follow-up's "ventral" group) on
# the left, appearance ones ("dorsal") on the right.

# %% tags=["remove-input"]
mean = profile.groupby(["model", "transform"], sort=False).cosine.mean().unstack()
order = [t for group in GROUPS.values() for t in group if t in mean.columns]
mean = mean[order]
fig, ax = plt.subplots(figsize=(1.2 + 0.55 * mean.shape[1], 0.8 + 0.42 * mean.shape[0]))
sns.heatmap(mean, annot=True, fmt=".2f", cmap="magma", vmin=0, vmax=1, cbar=False, ax=ax, annot_kws={"size": 7})
n_spatial = sum(t in GROUPS["spatial"] for t in order)
ax.axvline(n_spatial, color="white", lw=2)
ax.set(xlabel="", ylabel="")
plt.xticks(rotation=45, ha="right")
plt.show()

# %% [markdown]
# ## What the augmentations teach
#
# The mini zoo's MoCo-v2 ablations differ only in their augmentations: `moco-v2` uses crops, flips
# and colour jitter; `moco-v2-crop-only` crops and flips only; `moco-v2-colour-only` colour jitter
# and greyscale only. If contrastive learning learns the invariances it is trained with, crop-only
# should lead on the spatial group and colour-only on the appearance group.

# %% tags=["remove-input"]
ablations = [m for m in ("moco-v2", "moco-v2-crop-only", "moco-v2-colour-only", "random") if m in mean.index]
if len(ablations) >= 2:
    groups = pd.DataFrame({g: mean.loc[ablations, [t for t in ts if t in mean.columns]].mean(axis=1)
                           for g, ts in GROUPS.items()})
    display(groups.style.format("{:.3f}").set_caption("mean invariance per group"))
    long = mean.loc[ablations].reset_index().melt(id_vars="model", var_name="transform", value_name="cosine")
    fig, ax = plt.subplots(figsize=(12, 3.4))
    sns.barplot(data=long, x="transform", y="cosine", hue="model", ax=ax)
    ax.set(xlabel="", ylabel="invariance")
    plt.xticks(rotation=45, ha="right")
    ax.legend(fontsize=8)
    plt.show()
    lead = {g: groups[g].idxmax() for g in groups}
    glue("invariances_headline",
         f"the most spatially invariant ablation is {lead['spatial']} and the most appearance-invariant "
         f"is {lead['appearance']}", display=False)
else:
    display(Markdown("The ablation models are not in this run."))
    glue("invariances_headline", "the augmentation ablations were not run", display=False)

# %% [markdown]
# Invariance against magnitude for a few transformations:

# %% tags=["remove-input"]
shown = [t for t in ("rotation", "resized_crop", "hue", "saturation", "grayscale", "blur") if t in mean.columns]
if shown:
    grid = sns.relplot(data=profile[profile["transform"].isin(shown)], x="magnitude", y="cosine", hue="model",
                       col="transform", col_wrap=3, kind="line", height=2.4, aspect=1.3,
                       facet_kws={"sharex": False})
    grid.set_titles("{col_name}")
    plt.show()

# %% [markdown]
# ## Does invariance predict transfer?
#
# Spearman correlation across models between a model's invariance to each transformation and its
# linear-evaluation score on each downstream task (from this study's linear section). With ten
# models only large magnitudes mean much; the follow-up's claim is that tasks differ in the sign.

# %% tags=["remove-input"]
transfer = transfer_table(params)
if transfer.model.nunique() >= 3:
    corr = invariance_vs_transfer(profile, transfer, method="spearman")
    wide = corr.pivot(index="transform", columns="dataset", values="correlation").loc[order]
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * wide.shape[1], 0.6 + 0.32 * wide.shape[0]))
    sns.heatmap(wide, annot=True, fmt=".2f", cmap="RdBu_r", vmin=-1, vmax=1, cbar=False, ax=ax,
                annot_kws={"size": 7})
    ax.set(xlabel="", ylabel="")
    plt.xticks(rotation=35, ha="right")
    plt.show()
else:
    display(Markdown("Needs linear results of at least 3 models (run the linear section first)."))

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
pd.DataFrame([{"parameter": k, "value": v} for k, v in vars(params).items()]).style.hide(axis="index")
