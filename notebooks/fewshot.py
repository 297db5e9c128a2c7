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
shots = "5,20,50"
n_way = 5
n_query = 15
n_episodes = 600
resize = "square"
seed = 0
results_path = ""
data_root = ""
download = False
device = ""
batch_size = 256
num_workers = 0
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "fewshot")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections import adapter_markdown, data_table
from ssl_lib.sections.fewshot import PROTOCOL, run_fewshot_section
from ssl_lib.results import parsed

# %% [markdown]
# # Few-shot evaluation
#
# Prototypical-network episodes on the frozen backbone's pooled features, as in the paper's §3.3
# and its official code: each episode draws 5 classes and, per class, *k* support and 15 query
# images from the dataset's train+val+test images; a query goes to the nearest class mean
# (squared Euclidean distance, features unnormalised). Scores are mean accuracies over the
# episodes with the code's interval 1.96·std/√episodes. Nothing is selected, so no split is held
# out. The episodes depend only on the labels and the seed: every model sees the same ones.

# %% tags=["remove-input"]
run = run_fewshot_section(params)
rows = run.rows
resize_note = {"square": "the official code's square resize (×1.15, bilinear) then centre crop",
               "shorter": "the paper text's shorter-side resize then centre crop"}[params.resize]
display(Markdown(
    f"**Model** `{params.model}` · **study** `{params.study}` · **episodes** {params.n_episodes} × "
    f"{params.n_way}-way, {params.n_query} queries · **images**: {resize_note} · "
    f"**weights sha256** `{rows.weights_sha256.iloc[0][:16]}…` · **device** {rows.device.iloc[0]}"
))
display(Markdown(adapter_markdown(rows.iloc[0])))

# %% tags=["remove-input"]
table = rows.assign(
    shots=parsed(rows, "protocol_params").n_shot,
    accuracy=[f"{v:.2f} ± {v - lo:.2f}" if pd.notna(v) else "skipped" for v, lo in zip(rows.value, rows.ci_low)],
    note=parsed(rows, "extra").get("skipped", pd.Series("", index=rows.index)).fillna(""),
)
table.pivot(index="dataset", columns="shots", values="accuracy").rename(columns=lambda s: f"{s}-shot")

# %% tags=["remove-input"]
skipped = table[table.note != ""]
if not skipped.empty:
    display(Markdown("Left out, as the paper leaves out datasets with too few images per class:\n\n" + "\n".join(
        f"- `{r.dataset}`, {r.shots}-shot: {r.note}" for r in skipped.itertuples())))

# %% [markdown]
# Accuracy against the number of shots, with the 95% intervals (error bars) and the spread of
# per-episode accuracies (shaded: 10th to 90th percentile).

# %% tags=["remove-input"]
done = table[table.value.notna()]
if not done.empty:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, sub in done.groupby("dataset", sort=False):
        sub = sub.sort_values("shots")
        line = ax.errorbar(sub.shots, sub.value, yerr=sub.value - sub.ci_low, marker="o", capsize=3, label=name)
        spread = [run.results[(name, s)].episode_accuracies for s in sub.shots]
        ax.fill_between(sub.shots, [pd.Series(a).quantile(0.1) for a in spread],
                        [pd.Series(a).quantile(0.9) for a in spread], color=line[0].get_color(), alpha=0.1)
    ax.set(xscale="log", xticks=sorted(done.shots.unique()), xlabel="shots per class", ylabel="accuracy (%)")
    ax.xaxis.set_major_formatter(plt.ScalarFormatter())
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    plt.show()

# %% tags=["remove-cell"]
for r in done.itertuples():
    glue(f"fewshot_{r.dataset}_{r.shots}", float(r.value), display=False)

# %% [markdown]
# ## Data
#
# The splits of each dataset (the episodes pool all of them) and whether their sizes are the
# canonical ones (a paper dataset whose sizes differ runs only when named in `accept_split_sizes`,
# and its rows say so).

# %% tags=["remove-input"]
data_table(rows).style.hide(axis="index")

# %% [markdown]
# ## Protocol and provenance

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in PROTOCOL.items())))
rows[["dataset", "metric", "n_eval", "run_id", "created_utc", "git_sha", "git_dirty", "ssl_lib_version",
      "feature_cache_key", "protocol_params"]].style.hide(axis="index")
