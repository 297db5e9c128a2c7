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
model = "byol"
dataset = "all"
preset = ""
decoder = ""
normals_head = "classification"
freeze = None
iterations = None
batch_size = None
n_boot = 200
seed = 0
results_path = ""
data_root = ""
download = False
device = ""
num_workers = 0

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "dense")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.data.dense import get_dense_task
from ssl_lib.sections import adapter_markdown, pyramid_markdown
from ssl_lib.sections.dense import PROTOCOL, loss_table, run_dense_section

# %% [markdown]
# # Dense prediction
#
# Semantic segmentation and surface-normal estimation on the model's backbone (the paper's §4.4 and
# Table 5). A light decoder reads four levels of the backbone (a ResNet's layer1–layer4, a hierarchical
# model's last four stages, or for a plain ViT a simple feature pyramid built from its last block and
# trained with the decoder): UPerNet (pyramid pooling, FPN fusion) for segmentation and PPM on the last
# level for normals, as in the paper's two codebases. Normals are
# predicted as in the paper's code: 40-way classification over k-means clusters of the training
# normals, turned back into a vector as the probability-weighted mean of the cluster centres. Before
# training, the decoder's encoder is checked to hold exactly the evaluated weights (the paper's
# segmentation code may have run on randomly initialised encoders, §3.6).

# %% tags=["remove-input"]
run = run_dense_section(params)
rows = run.rows
extras = {name: json.loads(rows[rows.dataset == name].extra.iloc[0]) for name in run.results}
lines = [f"**Model** `{params.model}` · **study** `{params.study}` · **weights sha256** "
         f"`{rows.weights_sha256.iloc[0][:16]}…` · **device** {rows.device.iloc[0]}", "", adapter_markdown(rows.iloc[0]), ""]
chosen = {"preset": "the preset's choice for this task",
          "parameter": f"set by freeze={params.freeze} (a notebook parameter or the study file's setting)"}


def backbone(frozen: bool, extra: dict) -> str:
    if not frozen:
        return "trained end to end (batch-norm in train mode)"
    return "frozen (eval mode" + (", maps computed once and cached)" if extra["cached_features"] else ")")


for name, result in run.results.items():
    cfg, extra = result.cfg, extras[name]
    head = extra["head"] + (f" ({extra['n_clusters']} clusters, {extra['prediction']} centre)" if extra["head"] == "classification" else "")
    lines.append(
        f"- `{name}` ({result.kind}): {cfg.decoder} decoder, width {cfg.width}, head {head}; "
        f"{cfg.iterations} iterations at batch {cfg.batch_size}, lr {cfg.lr:g} (poly); "
        f"**backbone {backbone(cfg.freeze, extra)}** ({chosen[extra['freeze_set_by']]}); "
        f"{result.n_train} training / {result.n_test} test images, {extra['scored_pixels']:,} test pixels scored "
        f"at the labels' native size; weight check "
        f"{'passed' if extra['weights_check']['passed'] else 'FAILED'} ({extra['weights_check']['tensors']} tensors); "
        f"{result.seconds['total']:.1f} s.\n  {pyramid_markdown(extra['pyramid'])}."
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Results
#
# Segmentation: mean IoU (a fraction, like the paper) and pixel accuracy (%), both accumulated over
# the whole test set. Normals: mean and median angular error (degrees, lower is better) over every
# valid test pixel, and the % of pixels within 11.25°, 22.5° and 30°. Intervals are 95% bootstrap
# intervals over test images (none for the median). *baseline* is what a constant prediction scores:
# the most frequent training class everywhere, or the mean training normal everywhere; a decoder that
# does not beat it has learned nothing from the features. No hyperparameter is selected: one fixed
# schedule per task, scored once on test.

# %% tags=["remove-input"]
def results_table(kind: str) -> pd.DataFrame | None:
    sub = rows[[get_dense_task(d).kind == kind for d in rows.dataset]]
    if sub.empty:
        return None
    digits = {"seg_mean_iou": 3}
    fmt = lambda v, m: f"{v:.{digits.get(m, 2)}f}"  # noqa: E731
    return sub.assign(
        value=[fmt(v, m) for v, m in zip(sub.value, sub.metric)],
        CI=[f"[{fmt(lo, m)}, {fmt(hi, m)}]" if np.isfinite(lo) else "—" for lo, hi, m in zip(sub.ci_low, sub.ci_high, sub.metric)],
        baseline=[fmt(extras[d]["trivial_baseline"][m], m) for d, m in zip(sub.dataset, sub.metric)],
    )[["dataset", "metric", "value", "CI", "baseline", "n_train", "n_eval", "wall_seconds"]]


for kind in ("segmentation", "normals"):
    table = results_table(kind)
    if table is not None:
        display(Markdown(f"**{kind.capitalize()}**"))
        display(table.style.format({"wall_seconds": "{:.1f}"}).hide(axis="index"))

# %% tags=["remove-cell"]
for r in rows.itertuples():
    glue(f"dense_{r.dataset}_{r.metric}", float(r.value), display=False)

# %% [markdown]
# ## Test examples
#
# The first test images of each task. Segmentation: the classes drawn over the image (background left
# clear). Normals: the vector as a colour, RGB = (n + 1) / 2 (x right, y up, z towards the camera), and
# the angular error of the prediction per pixel.

# %% tags=["remove-input"]
def overlay(image: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    colours = plt.get_cmap("tab10")(np.arange(max(num_classes, 1)) % 10)[:, :3]
    out = image.astype(float) / 255
    mask = labels > 0
    out[mask] = 0.35 * out[mask] + 0.65 * colours[labels[mask]]
    return out


for name, result in run.results.items():
    ex, task = result.examples, get_dense_task(name)
    n = len(ex["images"])
    panels = ["image", "truth", "prediction"] + (["angular error"] if result.kind == "normals" else [])
    fig, axes = plt.subplots(n, len(panels), figsize=(2.1 * len(panels), 2.1 * n), squeeze=False)
    for i in range(n):
        if result.kind == "segmentation":
            shown = [ex["images"][i] / 255, overlay(ex["images"][i], np.clip(ex["targets"][i], 0, None), task.num_classes),
                     overlay(ex["images"][i], ex["predictions"][i], task.num_classes)]
        else:
            shown = [ex["images"][i] / 255, np.clip((ex["targets"][i] + 1) / 2, 0, 1),
                     np.clip((ex["predictions"][i] + 1) / 2, 0, 1)]
        for j, picture in enumerate(shown):
            axes[i, j].imshow(picture)
        if result.kind == "normals":
            im = axes[i, 3].imshow(ex["errors"][i], cmap="magma", vmin=0, vmax=60)
    for j, title in enumerate(panels):
        axes[0, j].set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    if result.kind == "normals":
        fig.colorbar(im, ax=axes[:, 3].tolist(), shrink=0.6, label="degrees")
    fig.suptitle(name, fontsize=10)
    plt.show()

# %% [markdown]
# ## Training
#
# The decoder's training loss per iteration (cross-entropy over classes or normal clusters; 1 − cosine
# for the regression head), with a moving average. It is measured at the decoder's own resolution, as
# in the paper's code.

# %% tags=["remove-input"]
losses = loss_table(run)
names = list(losses.dataset.unique())
fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 2.8), squeeze=False)
for ax, name in zip(axes[0], names):
    sub = losses[losses.dataset == name]
    ax.plot(sub.iteration, sub.loss, lw=0.6, alpha=0.4, color="C0")
    ax.plot(sub.iteration, sub.loss.rolling(20, min_periods=1).mean(), color="C0")
    ax.set(title=name, xlabel="iteration", ylabel="loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Protocol and provenance
#
# How this differs from the paper: the paper trains on NYUv2 (795 images, 13,500 iterations at batch 2,
# a dilated ResNet-50 frozen up to layer4) and ADE20K (20k images, 150,000 iterations at batch 4, the
# whole network trained) at full resolution. The paper preset does the same (segmentation end to end,
# normals frozen) on 480 px training crops and scores test images uncropped at the labels' native
# size; the mini study trains small decoders for a few hundred iterations on 64 px generated images
# with the backbone frozen for both tasks. Its numbers compare models with each other, not with
# Table 5 in absolute value.

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
rows.drop_duplicates("dataset")[["dataset", "run_id", "created_utc", "git_sha", "git_dirty", "ssl_lib_version",
                                 "torch_version", "protocol_params"]].style.hide(axis="index")
