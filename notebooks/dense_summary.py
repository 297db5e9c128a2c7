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

params = setup(globals(), "summary")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.evaluate.dense import NORMALS_METRICS, SEG_METRICS
from ssl_lib.paper_tables import paper_table, printed_table
from ssl_lib.sections.summary import section_table
from ssl_lib.study import load_study

study_cfg = load_study(params.study)
rows = section_table(params, "dense") if "dense" in study_cfg.sections else pd.DataFrame()
COLUMNS = list(NORMALS_METRICS) + list(SEG_METRICS)  # the order of the paper's Table 5
DIGITS = {"seg_mean_iou": 3}

# %% [markdown]
# # Dense prediction
#
# Every model of the study on the two dense tasks of the paper's §4.4: surface-normal estimation
# (errors in degrees, lower is better; % of pixels within a threshold, higher is better) and semantic
# segmentation (mean IoU as a fraction and pixel accuracy in %, higher is better). One page per model
# follows, with test examples and training curves.

# %% tags=["remove-input"]
if rows.empty:
    display(Markdown("**No dense results yet.** Add a `dense` section to the study and run `make book` "
                     "(or `make models` first if the mini zoo is missing)."))
else:
    lines = [f"Study **{study_cfg.name}**: {rows.model.nunique()} models. Protocol that ran:"]
    for dataset, sub in rows.groupby("dataset", observed=True):
        for proto in sub.protocol_params.unique():
            p, extra = json.loads(proto), json.loads(sub.extra.iloc[0])
            head = p["head"] + (f", {p['n_clusters']} clusters, {p['normals_pred']} centre" if p["head"] == "classification" else "")
            lines.append(
                f"- `{dataset}`: {p['decoder']} decoder (width {p['width']}), head {head}, {p['iterations']} iterations "
                f"at batch {p['batch_size']}, SGD lr {p['lr']:g} with poly decay; backbone "
                f"**{'frozen' if p['freeze'] else 'trained end to end'}**; {int(sub.n_train.iloc[0])} training / "
                f"{int(sub.n_eval.iloc[0])} test images; selection: {', '.join(sub.selected_on.unique())}."
            )
    lines.append(
        "\nThe paper's protocol: NYUv2 normals with a PPM decoder on a dilated ResNet-50 frozen up to layer4 "
        "(13,500 iterations at batch 2) and ADE20K segmentation with UPerNet, everything trained (150,000 "
        "iterations at batch 4), both at full resolution. The paper preset does the same per task and scores test "
        "images uncropped at the labels' native size. The mini study freezes the backbone for both tasks and "
        "trains small decoders for a few hundred iterations on 64 px generated images, so its numbers rank models "
        "against each other and are **not comparable in absolute value** with Table 5."
    )
    display(Markdown("\n".join(lines)))

# %% [markdown]
# ## This study
#
# The seven columns of the paper's Table 5 per model, with 95% bootstrap intervals over test images
# where they exist (not for the median error). The last row is a constant prediction (the most
# frequent training class, or the mean training normal, everywhere): the floor a decoder must beat.

# %% tags=["remove-input"]
if not rows.empty:
    cells = rows.assign(cell=[
        f"{v:.{DIGITS.get(m, 2)}f}" + (f" [{lo:.{DIGITS.get(m, 2)}f}, {hi:.{DIGITS.get(m, 2)}f}]" if np.isfinite(lo) else "")
        for v, lo, hi, m in zip(rows.value, rows.ci_low, rows.ci_high, rows.metric)])
    wide = cells.pivot_table(index="model", columns="metric", values="cell", aggfunc="first", observed=True)
    baseline = {}
    for dataset, sub in rows.groupby("dataset", observed=True):
        base = json.loads(sub.extra.iloc[0]).get("trivial_baseline", {})
        baseline.update({m: f"{base[m]:.{DIGITS.get(m, 2)}f}" for m in sub.metric.unique() if m in base})
    wide = pd.concat([wide.astype(object), pd.DataFrame([baseline], index=["constant prediction"])])
    display(wide[[c for c in COLUMNS if c in wide.columns]])

# %% tags=["remove-input"]
if not rows.empty:
    shown = [m for m in ("seg_mean_iou", "sn_mean_err") if m in set(rows.metric)]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 0.9 + 0.35 * rows.model.nunique()), squeeze=False)
    verdicts = []
    for ax, metric in zip(axes[0], shown):
        sub = rows[rows.metric == metric].sort_values("model")
        base = json.loads(sub.extra.iloc[0])["trivial_baseline"][metric]
        err = np.vstack([sub.value - sub.ci_low, sub.ci_high - sub.value])
        ax.barh(sub.model.astype(str), sub.value, xerr=np.where(np.isfinite(err), err, 0), color="C0", alpha=0.8)
        ax.axvline(base, color="C3", ls="--", lw=1, label="constant prediction")
        ax.invert_yaxis()
        ax.set(xlabel={"seg_mean_iou": "segmentation mIoU (higher is better)",
                       "sn_mean_err": "normals mean angular error, degrees (lower is better)"}[metric])
        lo = np.nanmin([sub.ci_low.min(), sub.value.min(), base])
        hi = np.nanmax([sub.ci_high.max(), sub.value.max(), base])
        pad = 0.15 * (hi - lo) + 1e-6
        ax.set_xlim(max(lo - pad, 0), hi + pad)
        ax.legend(fontsize=8, loc="best")
        better = (sub.ci_low > base) if metric == "seg_mean_iou" else (sub.ci_high < base)
        verdicts.append(f"`{sub.dataset.iloc[0]}`: {int(better.sum())} of {len(sub)} models beat the constant "
                        f"prediction ({base:.{DIGITS.get(metric, 2)}f}) beyond their 95% interval")
    plt.tight_layout()
    plt.show()
    display(Markdown("; ".join(verdicts) + "."))

# %% tags=["remove-cell"]
if rows.empty:
    headline = "no dense results yet"
else:
    values = rows.pivot_table(index="model", columns="metric", values="value", observed=True)
    parts = []
    if "seg_mean_iou" in values:
        parts.append(f"{values.seg_mean_iou.idxmax()} segments best (mIoU {values.seg_mean_iou.max():.3f})")
    if "sn_mean_err" in values:
        parts.append(f"{values.sn_mean_err.idxmin()} estimates normals best (mean error {values.sn_mean_err.min():.2f}°)")
    headline = "; ".join(parts)
glue("dense_headline", headline, display=False)

# %% [markdown]
# ## The paper's Table 5
#
# The published results of the 14 ResNet-50 models (arXiv v2 / CVPR): NYUv2 surface normals and ADE20K
# segmentation.

# %% tags=["remove-input"]
paper = paper_table("table5_dense").set_index("model")
display(printed_table("table5_dense"))  # every number as printed
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
for ax, metric, label in [(axes[0], "seg_mean_iou", "ADE20K mIoU"), (axes[1], "sn_mean_err", "NYUv2 mean error (°)")]:
    ordered = paper[metric].sort_values(ascending=metric == "sn_mean_err")
    ax.barh(ordered.index, ordered.values, color=["C3" if m == "Supervised" else "C0" for m in ordered.index])
    ax.invert_yaxis()
    ax.set(xlabel=label, xlim=(ordered.min() * 0.9, ordered.max() * 1.02))
plt.tight_layout()
plt.show()

# %% [markdown]
# What the paper found (§4.7): on surface normals SimCLR-v2 is best (28.77° mean error), then BYOL (by
# median error and % within each threshold; by mean error DeepCluster-v2 is second), and 9 of the 13
# self-supervised models have a lower mean error than supervised pre-training; on segmentation PCL-v1
# is best (0.2983 mIoU) and supervised is among the worst (only MoCo-v1 is lower). A caveat on the segmentation column (§3.6 of the fact sheet): the
# paper's segmentation code builds the CSAIL deep-stem ResNet and loads weights with `strict=False`, so
# checkpoints with other key names would be silently ignored; the reported mIoUs (0.25–0.30) are far
# below an ImageNet-pretrained UPerNet-R50 (0.40), so those numbers may come from **randomly
# initialised encoders**. This study checks, before training, that every encoder tensor equals the
# evaluated model's (recorded in each row's `extra.weights_check`).
