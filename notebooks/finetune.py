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
steps = None
batch_size = 64
lrs = ""
wds = ""
augment = True
layer_decay = None
seed = 0
n_boot = 1000
results_path = ""
data_root = ""
download = False
device = ""
num_workers = 0
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "finetune")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.calibration import show_run_calibration
from ssl_lib.sections import adapter_markdown, data_table
from ssl_lib.sections.finetune import PROTOCOL, finetune_cfg, grid_table, run_finetune_section

# %% [markdown]
# # Fine-tuning
#
# The whole pretrained backbone and a new linear head are trained with the paper's recipe (§3.2
# and the official code): SGD with Nesterov momentum 0.9, a cosine schedule stepped every
# iteration, batch-norm in train mode, RandomResizedCrop and horizontal flips. Each (lr, wd) point
# of the grid starts from the pretrained weights; the optimiser's weight decay is wd / lr, as in
# the code. The best point on validation is retrained on train+val and scored once on test.

# %% tags=["remove-input"]
cfg = finetune_cfg(params)
run = run_finetune_section(params)
rows = run.rows
display(Markdown(
    f"**Model** `{params.model}` · **study** `{params.study}` · **{cfg.steps} steps** at batch "
    f"{cfg.batch_size} per point · **grid** lr ∈ {list(cfg.lrs)} × wd ∈ {list(cfg.wds)} "
    f"({len(cfg.grid)} points + the final fit) · augmentation {'on' if cfg.augment else 'off'} · "
    f"layer-wise lr decay {cfg.layer_decay if cfg.layer_decay is not None else 'off'} · "
    f"**weights sha256** `{rows.weights_sha256.iloc[0][:16]}…` · **device** {rows.device.iloc[0]}"
))
display(Markdown(adapter_markdown(rows.iloc[0])))

# %% tags=["remove-input"]
hp = rows.hyperparams.map(json.loads)
table = rows.assign(
    lr=[h["lr"] for h in hp], wd=[h["wd"] for h in hp],
    CI=rows.apply(lambda r: f"[{r.ci_low:.1f}, {r.ci_high:.1f}]", axis=1),
    resumed=[json.loads(e)["resumed_points"] for e in rows.extra],
)[["dataset", "metric", "value", "CI", "lr", "wd", "selected_on", "n_train", "n_val", "n_eval", "resumed",
   "wall_seconds"]]
table.style.format({"value": "{:.2f}", "lr": "{:g}", "wd": "{:g}", "wall_seconds": "{:.1f}"}).hide(axis="index")

# %% [markdown]
# Validation score over the grid (the selection; test takes no part). `resumed` counts grid points
# read back from an earlier, interrupted run.

# %% tags=["remove-input"]
grid = grid_table(run)
names = list(grid.dataset.unique())
fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
for ax, name in zip(axes[0], names):
    sub = grid[grid.dataset == name].pivot(index="lr", columns="wd", values="val_score").sort_index(ascending=False)
    sns.heatmap(sub, annot=True, fmt=".1f", cmap="viridis", cbar=False, ax=ax)
    ax.set_title(name)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Calibration
#
# ECE (%, 15 bins) of the final fine-tuned model's test predictions: unscaled; `scaled`, the paper's 5-fold
# cross-validated temperature scaling fitted on the test logits themselves; `scaled_val`, T fitted
# on the chosen grid point's validation logits. Multi-label datasets have none. The study's calibration page compares models.

# %% tags=["remove-input"]
show_run_calibration(run.calibration)

# %% tags=["remove-cell"]
for r in rows.itertuples():
    glue(f"finetune_{r.dataset}", float(r.value), display=False)

# %% [markdown]
# ## Data
#
# Which split of each dataset played train, validation and test, and whether its sizes are the
# canonical ones (a paper dataset whose sizes differ runs only when named in `accept_split_sizes`,
# and its rows say so).

# %% tags=["remove-input"]
data_table(rows).style.hide(axis="index")

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
rows[["dataset", "run_id", "created_utc", "git_sha", "git_dirty", "ssl_lib_version", "torch_version",
      "protocol_params"]].style.hide(axis="index")
