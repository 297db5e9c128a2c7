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
n_images = 8
mask = 4
stride = 2
border = "pad"
seed = 0
n_boot = 1000
results_path = ""
device = ""
batch_size = 256
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "attention")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.attention import (
    PAPER_PRESET, PROTOCOL, diffusion_correlations, paper_correlations, paper_diffusion, run_attention,
)

# %% [markdown]
# # Attention: where do the features look?
#
# The paper's task-agnostic saliency (A.9): a small square of each image is blanked (set to the
# normalised mean colour), and the pixel's saliency is how much that moves the pooled features,
# ‖f(x) − f(x_occ)‖ / ‖f(x)‖, averaged over every window position that covers it. *Attentive
# diffusion* is the share of a map's pixels above the map's mean: a model whose features depend on
# a few small regions scores low, one that spreads its attention over the image scores high.

# %% tags=["remove-input"]
run = run_attention(params)
occ = run.occlusion
size = next(iter(run.maps.values())).shape[-1]
display(Markdown(
    f"**{len(run.maps)} models** · **{params.n_images} images** from `{params.dataset}/{params.split}` "
    f"({size} px) · **{occ.mask} px mask, stride {occ.stride}** (every pixel covered by "
    f"{(occ.mask // occ.stride) ** 2} windows), border `{occ.border}` · the paper: "
    f"{PAPER_PRESET['mask']} px mask, stride {PAPER_PRESET['stride']} on 224 px maps from 242 px images."
))

# %% [markdown]
# ## Saliency maps
#
# The first four images, each model's map drawn over them (red = features move most when that
# region is hidden). Each map is scaled to its own range.

# %% tags=["remove-input"]
shown = min(4, params.n_images)
names = list(run.maps)
fig, axes = plt.subplots(len(names), shown + 1, figsize=(1.5 * (shown + 1), 1.5 * len(names)), squeeze=False)
for row, name in zip(axes, names):
    row[0].text(0.95, 0.5, name, ha="right", va="center", fontsize=8, transform=row[0].transAxes)
    row[0].axis("off")
    for ax, image, sal in zip(row[1:], run.images[name][:shown], run.maps[name][:shown]):
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.imshow(sal.numpy(), cmap="jet", alpha=0.55, interpolation="bilinear")
        ax.axis("off")
plt.tight_layout(pad=0.2)
plt.show()

# %% [markdown]
# ## Attentive diffusion
#
# Mean over the images with a 95% bootstrap interval over images, beside the paper's Table 9
# column where the model has a namesake there (same method; the paper's models are ResNet-50s).
# *Fixed pattern* is the share of the maps' variance explained by one image-independent map (each
# map scaled to mean 1; with N images it is at least about 1/N): a strided backbone can weigh
# the pixels on a lattice of its total stride more than the others whatever the image, because its
# strided 1×1 shortcut convolutions sample the input there. A high share means the map shows the
# architecture's lattice more than the image's content.

# %% tags=["remove-input"]
paper = paper_diffusion()
paper.index = paper.index.str.lower()
rows = run.rows.set_index("model")
table = pd.DataFrame({
    "attentive diffusion (%)": rows.value,
    "95% CI": [f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(rows.ci_low, rows.ci_high)],
    "fixed pattern": rows.extra.map(lambda e: json.loads(e)["fixed_pattern_share"]),
    "paper (Table 9)": paper.reindex(rows.index),
})
formats = {"attentive diffusion (%)": "{:.1f}", "fixed pattern": "{:.2f}", "paper (Table 9)": "{:.2f}"}
display(table.style.format(formats, na_rep="–"))
fig, ax = plt.subplots(figsize=(7, 0.3 + 0.32 * len(rows)))
per_image = run.diffusion
ax.scatter(per_image.diffusion, per_image.model.map({m: i for i, m in enumerate(rows.index)}), s=10, alpha=0.4,
           color="grey", label="one image")
ax.errorbar(rows.value, range(len(rows)), xerr=[rows.value - rows.ci_low, rows.ci_high - rows.value], fmt="o",
            color="crimson", label="mean, 95% CI")
ax.set(yticks=range(len(rows)), yticklabels=rows.index, xlabel="attentive diffusion (%)")
ax.invert_yaxis()
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# ## The paper's finding
#
# The paper (§4.9): supervised models have a smaller attentive focus. Supervised ResNet-50 has
# 43.88% diffusion, lower than 11 of its 13 self-supervised models (the exceptions: PCL-v1 41.43,
# InfoMin 43.73), and diffusion hardly tracks ImageNet accuracy (Pearson r = 0.09 in Table 9).

# %% tags=["remove-input"]
values = rows.value
if "supervised" in values.index and len(values) > 1:
    others = values.drop(index=[m for m in ("supervised", "random") if m in values.index])
    above = int((others > values["supervised"]).sum())
    verdict = (f"supervised has {values['supervised']:.1f}% diffusion; {above} of the {len(others)} other "
               f"pretrained models (random init left out) have a higher one (the paper: 11 of 13)")
else:
    verdict = "the study has no supervised model to compare with"
glue("attention_headline", verdict, display=False)
display(Markdown(f"**In this study:** {verdict}."))

# %% [markdown]
# Correlation across models of logit(attentive diffusion) with logit(source top-1), and with the
# linear setting of the correlation section (mean logit accuracy over the linear datasets) when
# this study's linear rows are in `results_path`. The paper's own values, recomputed from its
# tables by the same method: r = 0.09 with ImageNet, 0.38 with the linear average.

# %% tags=["remove-input"]
corr = diffusion_correlations(run.rows, params.results_path, seed=params.seed)
display(corr.style.format({"r": "{:.2f}", "ci_low": "{:.2f}", "ci_high": "{:.2f}"}, na_rep="–").hide(axis="index"))
if not corr.against.str.startswith("linear").any():
    display(Markdown("No linear rows for these models in `results_path`: run the linear section first "
                     "(or `make book`) to correlate diffusion with linear transfer."))
paper_r = paper_correlations()
display(Markdown("The paper's tables, same method (14 models): " + ", ".join(f"r = {r:.2f} with {k}"
                                                                            for k, r in paper_r.items()) + "."))
for r in corr.itertuples():
    if r.method == "pearson" and pd.notna(r.r):
        glue(f"attention_r_{'source' if r.against.startswith('source') else 'linear'}", float(r.r), display=False)

# %% tags=["remove-cell"]
for name, value in values.items():
    glue(f"attention_{name}", float(value), display=False)

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
run.rows[["model", "run_id", "created_utc", "git_sha", "git_dirty", "weights_sha256", "wall_seconds",
          "protocol_params"]].style.hide(axis="index")
