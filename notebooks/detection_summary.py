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

params = setup(globals(), "detection_summary")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.paper_tables import paper_table, printed_table
from ssl_lib.sections.summary import format_ci, section_table
from ssl_lib.study import load_study

study_cfg = load_study(params.study)
rows = section_table(params, "detection") if "detection" in study_cfg.sections else pd.DataFrame()
COLUMNS = ["frozen_AP", "frozen_AP50", "frozen_AP75", "finetune_AP", "finetune_AP50", "finetune_AP75"]

# %% [markdown]
# # Detection
#
# Every model of the study as the backbone of a Faster R-CNN with a feature pyramid, trained with
# the backbone **frozen** (all but the last stage, detectron2's `FREEZE_AT: 4`) and **fine-tuned**
# (`FREEZE_AT: 0`), batch-norm frozen in both; scored with detectron2's Pascal VOC metric (VOC07
# 11-point AP; AP averages IoU 0.50-0.95). One page per model follows, with example predictions
# and training curves.
#
# **What the paper found** (§4.3, Table 4): with a frozen backbone SimCLR-v2 is best (AP 54.95) and
# with a fine-tuned one BYOL (54.91); the supervised baseline (51.99 / 53.26) is beaten by the best
# self-supervised models in both settings, and several models (MoCo-v2, InfoMin, PIRL) do clearly
# worse fine-tuned than frozen under the shared schedule.

# %% tags=["remove-input"]
if rows.empty:
    display(Markdown("**No detection results yet.** Run `make book` (or `make models` first if the mini zoo is missing)."))
else:
    protocols = [json.loads(p) for p in dict.fromkeys(rows.protocol_params)]
    schedules = sorted({(p["preset"], p["iterations"], p["batch_size"], p["lr"], p["min_size_test"], p["fpn_channels"])
                        for p in protocols})
    text = "; ".join(f"preset `{pre}`: {it} iterations at batch {bs} per setting, lr {lr:g}, test size {size} px, "
                     f"FPN {ch} channels" for pre, it, bs, lr, size, ch in schedules)
    presets = {s[0] for s in schedules}
    sizes = ", ".join(f"`{d}` {int(n_tr)} train / {int(n_te)} test images"
                      for d, n_tr, n_te in rows.groupby("dataset", observed=True)[["n_train", "n_eval"]].first().itertuples())
    differs = ("The paper trains detectron2's Base-RCNN-FPN for 144k iterations at batch 2 on VOC07+12 (480-800 px "
               "images) and tests on VOC07. The mini preset keeps the detector's structure, the two freezing "
               "settings, FrozenBN and the metric, but shrinks images (64 px), the pyramid, the heads and the "
               "schedule so that it runs on a CPU; its numbers are **not comparable in absolute value** with "
               "Table 4, only the comparison between models and settings is."
               if "mini" in presets else
               "This is the paper's schedule (detectron2 Base-RCNN-FPN defaults) on torchvision's Faster R-CNN; "
               "remaining differences: ROIAlign without detectron2's half-pixel alignment, smooth-L1 box losses.")
    display(Markdown(f"Study **{study_cfg.name}**: {rows.model.nunique()} models; {sizes}. Protocol: {text}. {differs}"))

# %% [markdown]
# ## This study
#
# The six columns of the paper's Table 4 per model (%), with 95% bootstrap intervals over test
# images.

# %% tags=["remove-input"]
if not rows.empty:
    for name in rows.dataset.cat.remove_unused_categories().cat.categories:
        sub = rows[rows.dataset == name]
        cells = sub.assign(cell=[format_ci(v, lo, hi) for v, lo, hi in zip(sub.value, sub.ci_low, sub.ci_high)])
        wide = cells.pivot(index="model", columns="metric", values="cell")
        display(Markdown(f"**{name}**"))
        display(wide[[c for c in COLUMNS if c in wide.columns]].dropna(how="all"))

# %% [markdown]
# Frozen against fine-tuned AP50 per model (bars: 95% intervals):

# %% tags=["remove-input"]
if not rows.empty:
    ap50 = rows[rows.metric.isin(["frozen_AP50", "finetune_AP50"])].copy()
    ap50["setting"] = ap50.protocol
    datasets_present = list(ap50.dataset.cat.remove_unused_categories().cat.categories)
    fig, axes = plt.subplots(1, len(datasets_present), figsize=(max(6, 0.7 * ap50.model.nunique() + 2) * len(datasets_present), 3.4),
                             squeeze=False)
    for ax, name in zip(axes[0], datasets_present):
        sub = ap50[ap50.dataset == name]
        models = [m for m in sub.model.cat.categories if m in set(sub.model)]
        x = np.arange(len(models))
        for j, setting in enumerate(["frozen", "finetune"]):
            s = sub[sub.setting == setting].set_index("model", drop=False).reindex(models)
            err = np.vstack([s.value - s.ci_low, s.ci_high - s.value])
            ax.bar(x + (j - 0.5) * 0.4, s.value, 0.4, yerr=np.where(np.isfinite(err), err, 0), capsize=2, label=setting)
        ax.set_xticks(x, models, rotation=35, ha="right")
        ax.set(ylabel="AP50 (%)", title=name)
        ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()

# %% tags=["remove-cell"]
if rows.empty:
    headline = "no detection results yet"
else:
    best = {}
    for setting in ("frozen", "finetune"):
        sub = rows[rows.metric == f"{setting}_AP"]
        if not sub.empty:
            top = sub.loc[sub.value.idxmax()]
            best[setting] = f"{top.model} is best {setting} (AP {top.value:.1f})"
    headline = "; ".join(best.values()) or "no AP rows"
glue("detection_headline", headline, display=False)

# %% tags=["remove-input"]
if not rows.empty:
    display(Markdown(f"In this study: {headline}."))

# %% [markdown]
# ## The paper's Table 4
#
# Faster R-CNN + FPN (detectron2) on VOC07+12 trainval, tested on VOC07 test, for the 14 ResNet-50
# models (arXiv v2 / CVPR), for comparison.

# %% tags=["remove-input"]
paper = paper_table("table4_detection_voc").set_index("model")
fig, ax = plt.subplots(figsize=(8, 6))
sns.heatmap(paper[COLUMNS], annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
ax.set(xlabel="", ylabel="")
plt.xticks(rotation=35, ha="right")
plt.show()
display(printed_table("table4_detection_voc"))  # every number as printed (the heatmap rounds)
