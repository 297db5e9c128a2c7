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
dataset = "all"
images_per_dataset = 1
steps = 3000
generator = ""
perceptual_net = "random-vgg"
probe_dataset = "mini-source"
probe_split = "test"
n_probe = 1000
seed = 0
results_path = ""
device = ""
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "retention")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.retention import PROTOCOL, run_retention

# %% [markdown]
# # What features retain
#
# The paper's §4.9 asks what information survives in frozen features by inverting them: a Deep
# Image Prior generator is trained from fixed noise until the backbone's last feature map before
# pooling (a ResNet's layer4, a ConvNeXt's last stage, a ViT's last-block tokens laid out as a grid,
# its class token dropped) of its output matches that of a real image. Whatever the reconstruction gets right, the
# features kept. The paper reports per-channel colour error and LPIPS (its Table 9) and finds that
# supervised features keep colour better. Linear probes ask the same question another way: how
# well can a ridge regression read an image's colour and its object's position from the pooled
# features?

# %% tags=["remove-input"]
run = run_retention(params)
display(Markdown(
    f"**{run.table.model.nunique()} models** · **{len(run.images)} images** "
    f"({', '.join(dict.fromkeys(run.table.dataset))}) · **{params.steps} inversion steps** with the "
    f"`{run.generator}` generator on {run.device} · perceptual "
    f"distance `{params.perceptual_net}` · probes on `{params.probe_dataset}/{params.probe_split}`."
))
display(pd.DataFrame([{"model": m, "inverted": f"{t['kind']} of `{t['layer']}`",
                       "target shape": " x ".join(map(str, t["shape"])), "image size": " x ".join(map(str, t["image_size"]))}
                      for m, t in run.targets.items()]).style.hide(axis="index"))

# %% [markdown]
# ## Reconstructions
#
# Top row: the images. Below: each model's reconstruction from its own features.

# %% tags=["remove-input"]
names = list(run.reconstructions)
n = len(run.images)
fig, axes = plt.subplots(len(names) + 1, n, figsize=(1.2 * n + 1.6, 1.2 * (len(names) + 1)), squeeze=False)
for j in range(n):
    axes[0, j].imshow(run.images[j].permute(1, 2, 0).numpy())
    for i, name in enumerate(names, 1):
        axes[i, j].imshow(run.reconstructions[name][j].permute(1, 2, 0).clamp(0, 1).numpy())
for i, label in enumerate(["image", *names]):
    axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Colour error and perceptual distance
#
# Mean over the images (lower is better). `feature fit` is the feature-matching loss left at the
# end as a fraction of its start, so a model whose inversion did not converge shows up.

# %% tags=["remove-input"]
t = run.table
summary = t.groupby("model", sort=False).agg(
    red=("mse_red", "mean"), green=("mse_green", "mean"), blue=("mse_blue", "mean"),
    perceptual=("perceptual", "mean"),
    feature_fit=("feature_mse", "sum"),
).assign(feature_fit=lambda d: d.feature_fit / t.groupby("model", sort=False).feature_mse_start.sum())
summary.insert(3, "colour mean", summary[["red", "green", "blue"]].mean(axis=1))
display(summary.style.format({"red": "{:.0f}", "green": "{:.0f}", "blue": "{:.0f}", "colour mean": "{:.0f}",
                              "perceptual": "{:.3f}", "feature_fit": "{:.3f}"}))
if "supervised" in summary.index:
    ssl = summary.drop(index=[m for m in ("supervised", "random") if m in summary.index])
    below = int((ssl["colour mean"] > summary.loc["supervised", "colour mean"]).sum())
    glue("retention_headline", f"supervised features reconstruct colour better than {below} of {len(ssl)} "
         f"self-supervised models", display=False)
else:
    glue("retention_headline", "no supervised model in this run", display=False)
display(Markdown(
    "With a handful of images, these means are noisy: the inversion depends on the generator's "
    "random start, and one image can dominate a channel. Compare the probes below before reading much "
    "into small differences."
))

# %% [markdown]
# ## Linear probes: colour versus position
#
# Cross-validated R² of a ridge regression from pooled features to each attribute of the
# source-domain images (1 = read out perfectly; 0 = no better than the mean).

# %% tags=["remove-input"]
wide = run.probes.pivot(index="model", columns="attribute", values="r2").loc[names]
fig, ax = plt.subplots(figsize=(1.5 + 0.9 * wide.shape[1], 0.8 + 0.42 * wide.shape[0]))
sns.heatmap(wide, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, cbar=False, ax=ax)
ax.set(xlabel="", ylabel="")
plt.xticks(rotation=30, ha="right")
plt.show()

# %% [markdown]
# ## The paper's Table 9 (reconstruction columns)
#
# LPIPS with three networks and per-channel colour MSE for the 14 ResNet-50 models, 3000
# inversion steps at 224 px. With `perceptual_net=random-vgg` (the mini study's offline default) our
# perceptual distance is not LPIPS, so only orderings compare; `lpips-alex`, `lpips-vgg` and
# `lpips-squeeze` are the paper's three networks (the optional `lpips` extra, online on first use).

# %% tags=["remove-input"]

from ssl_lib.paper_tables import printed_table

t9 = printed_table("table9_calibration_reconstruction_attention")  # as printed, the correlation row included
t9[["lpips_alexnet", "lpips_vgg", "lpips_squeezenet", "colour_mse_red", "colour_mse_green", "colour_mse_blue"]]

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
pd.DataFrame([{"parameter": k, "value": v} for k, v in vars(params).items()]).style.hide(axis="index")
