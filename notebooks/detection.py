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
settings = "frozen,finetune"
iterations = None
batch_size = None
seed = 0
n_boot = 200
results_path = ""
data_root = ""
download = False
device = ""
num_workers = 0

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "detection")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.patches import Rectangle
from myst_nb import glue

from ssl_lib.data.detection import get_detection_spec, open_detection
from ssl_lib.sections import adapter_markdown, pyramid_markdown
from ssl_lib.sections.detection import PROTOCOL, run_detection_section

# %% [markdown]
# # Detection
#
# A Faster R-CNN with a feature pyramid (torchvision) is built on the model's own backbone and
# trained on the detection data, as the paper does with detectron2 on Pascal VOC (§3.4). The pyramid
# reads four levels of the backbone: a ResNet's stages, a hierarchical model's last four stages (a
# ConvNeXt's), or for a plain ViT a ViTDet simple feature pyramid built from its last block. Two
# settings, the paper's two detectron2 configs: **frozen** (`FREEZE_AT: 4`: the stem and the first
# three of the four stages stay fixed, for a ViT the first three quarters of its blocks; the last
# stage, the pyramid, the proposal network and the box head train) and **finetune** (`FREEZE_AT: 0`:
# everything trains). In both, batch-norm is frozen with
# the checkpoint's statistics (detectron2's default). Scores are detectron2's Pascal VOC metric:
# VOC07 11-point AP, averaged over classes; AP is the mean over IoU thresholds 0.50 to 0.95.

# %% tags=["remove-input"]
run = run_detection_section(params)
rows, cfg = run.rows, run.cfg
names = list(dict.fromkeys(rows.dataset))
setting_names = list(dict.fromkeys(r.setting for r in run.results.values()))
first = next(iter(run.results.values()))
check = first.weights_check
display(Markdown(
    f"**Model** `{params.model}` · **study** `{params.study}` · **settings** {', '.join(setting_names)} · "
    f"**preset** `{run.preset}`: {cfg.iterations} iterations at batch {cfg.batch_size} per setting, lr {cfg.lr:g} "
    f"(warmup {cfg.warmup_iters}, ×{cfg.gamma:g} at {list(cfg.steps)}), training size "
    f"{'/'.join(map(str, cfg.min_size_train)) if len(cfg.min_size_train) < 4 else f'{min(cfg.min_size_train)}-{max(cfg.min_size_train)}'} "
    f"px, test size {cfg.min_size_test} px, FPN {cfg.fpn_channels} channels · **train / test images** "
    + ", ".join(f"{d} {r.n_train} / {r.n_test}" for (d, s), r in run.results.items() if s == setting_names[0])
    + f" · **weights sha256** `{rows.weights_sha256.iloc[0][:16]}…` "
    f"({check['tensors_compared']} backbone tensors checked identical in the detector) · **device** {rows.device.iloc[0]}"
))
display(Markdown(adapter_markdown(rows.iloc[0]) + "  \n" + pyramid_markdown(first.pyramid, pooled_level=True)))
if run.preset == "mini":
    display(Markdown(
        "The mini preset is a scaled-down detector for 64 px scenes on a CPU (the paper: 144k iterations at "
        "batch 2 on 480-800 px images). Its numbers measure the same thing on a far smaller problem and are "
        "**not comparable in absolute value** with the paper's Table 4."
    ))

# %% [markdown]
# ## Results
#
# AP, AP50 and AP75 (%) per setting, with 95% BCa bootstrap intervals over test images (each
# resample re-scores AP from its images' detections and boxes). `final loss` is the mean total training loss
# of the last 10 iterations; `resumed` means the trained detector was read back from the cache.

# %% tags=["remove-input"]
extra = rows.extra.map(json.loads)
table = rows.assign(
    setting=rows.protocol, metric=[m.removeprefix(f"{p}_") for m, p in zip(rows.metric, rows.protocol)],
    CI=[f"[{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else "" for lo, hi in zip(rows.ci_low, rows.ci_high)],
    final_loss=[e["final_loss"] for e in extra], resumed=[e["resumed"] for e in extra],
)[["dataset", "setting", "metric", "value", "CI", "n_train", "n_eval", "final_loss", "resumed", "wall_seconds"]]
table.style.format({"value": "{:.1f}", "final_loss": "{:.3f}", "wall_seconds": "{:.1f}"}).hide(axis="index")

# %% [markdown]
# AP50 per class:

# %% tags=["remove-input"]
per_class = pd.DataFrame({f"{d} · {s}": {c: v for c, v in zip(get_detection_spec(d).classes, r.metrics["AP50_per_class"])}
                          for (d, s), r in run.results.items()}).T
per_class.style.format("{:.1f}")

# %% [markdown]
# ## Example test predictions
#
# The first six test images of each dataset. Each image shows as many detections as it has objects
# (the highest-scoring ones, solid, with class and score), whatever their score; ground truth is
# dashed white. After a short schedule (the mini preset) class scores stay low, near chance.

# %% tags=["remove-input"]
def draw(ax, image, prediction, target, classes):
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    for x1, y1, x2, y2 in target["boxes"].tolist():
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1))
    k = len(target["boxes"])
    for (x1, y1, x2, y2), label, score in list(zip(prediction["boxes"], prediction["labels"], prediction["scores"]))[:k]:
        color = plt.cm.tab10(int(label) % 10)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=1.5))
        ax.text(x1, y1, f"{classes[int(label) - 1]} {score:.2f}", color="black", fontsize=6, va="bottom",
                bbox=dict(facecolor=color, alpha=0.8, pad=0.5, lw=0))
    ax.set_axis_off()


for name in names:
    spec = get_detection_spec(name)
    test = open_detection(name, spec.test_split, root=params.data_root or None)
    n = min(6, len(test))
    fig, axes = plt.subplots(len(setting_names), n, figsize=(2.1 * n, 2.3 * len(setting_names)), squeeze=False)
    for row, setting in zip(axes, setting_names):
        predictions = run.results[(name, setting)].predictions
        for i, ax in enumerate(row):
            image, target = test[i]
            draw(ax, image, predictions[i], target, spec.classes)
        row[0].text(-0.06, 0.5, setting, rotation=90, ha="right", va="center", transform=row[0].transAxes, fontsize=9)
    fig.suptitle(name, fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Training loss
#
# Total loss (RPN objectness and box regression, box-head classification and regression) per
# iteration, with a moving average; dotted lines mark the lr steps. The total can rise early on:
# as the proposals improve, more of the sampled regions are objects, whose classification and box
# losses are larger than the background's.

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6, 3))
for (name, setting), result in run.results.items():
    losses = pd.Series(result.losses)
    line, = ax.plot(losses.index, losses, alpha=0.25, lw=0.8)
    ax.plot(losses.index, losses.rolling(max(1, len(losses) // 20), min_periods=1).mean(), color=line.get_color(),
            label=f"{name} · {setting}")
for step in cfg.steps:
    ax.axvline(step, color="grey", lw=0.6, ls=":")
ax.set(xlabel="iteration", ylabel="loss")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"]
for r in rows.itertuples():
    glue(f"detection_{r.dataset}_{r.metric}", float(r.value), display=False)

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
rows[["dataset", "metric", "run_id", "created_utc", "git_sha", "git_dirty", "ssl_lib_version", "torch_version",
      "protocol_params"]].style.hide(axis="index")
