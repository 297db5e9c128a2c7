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
solver = "torch"
seed = 0
n_boot = 1000
results_path = ""
data_root = ""
download = False
device = ""
batch_size = 256
num_workers = 0
accept_split_sizes = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "linear")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.calibration import show_run_calibration
from ssl_lib.sections import adapter_markdown, data_table
from ssl_lib.sections.linear import PROTOCOL, run_linear_section, val_curves
from ssl_lib.results import parsed


# %% [markdown]
# # Many-shot linear evaluation
#
# A multinomial logistic regression on the frozen backbone's pooled features, as in the paper's
# §3.1: no feature normalisation; C chosen on the validation split over 45 values from 10⁶ down
# to 10⁻⁵ (first best wins); refit on train+val at that C; the dataset's metric on test. The test
# split takes part in no choice. Intervals are 95% percentile-bootstrap intervals over test images.

# %% tags=["remove-input"]
run = run_linear_section(params)
rows = run.rows
display(Markdown(
    f"**Model** `{params.model}` · **study** `{params.study}` · **solver** `{params.solver}` · "
    f"**weights sha256** `{rows.weights_sha256.iloc[0][:16]}…` · **device** {rows.device.iloc[0]}"
))
display(Markdown(adapter_markdown(rows.iloc[0])))

# %% tags=["remove-input"]
table = rows.assign(
    C=parsed(rows, "hyperparams").C,
    CI=rows.apply(lambda r: f"[{r.ci_low:.1f}, {r.ci_high:.1f}]", axis=1),
)[["dataset", "metric", "value", "CI", "C", "selected_on", "n_train", "n_val", "n_eval", "wall_seconds"]]
table.style.format({"value": "{:.2f}", "C": "{:.3g}", "wall_seconds": "{:.1f}"}).hide(axis="index")

# %% [markdown]
# Validation score along the C grid; the dot marks the chosen C.

# %% tags=["remove-input"]
curves = val_curves(run)
grid = sns.relplot(data=curves, x="C", y="val_score", col="dataset", col_wrap=4, kind="line",
                   height=2.2, aspect=1.3, facet_kws={"sharey": False})
for ax, (name, sub) in zip(grid.axes.flat, curves.groupby("dataset", sort=False)):
    chosen = sub[sub.chosen]
    ax.scatter(chosen.C, chosen.val_score, color="crimson", zorder=3)
grid.set(xscale="log")
grid.set_titles("{col_name}")
plt.show()

# %% [markdown]
# ## Calibration
#
# ECE (%, 15 bins) of the refit classifier's test predictions: unscaled; `scaled`, the paper's 5-fold
# cross-validated temperature scaling fitted on the test logits themselves; `scaled_val`, T fitted
# on the validation logits of the selection fit at the chosen C (train only). Multi-label datasets have none. The study's calibration page compares models.

# %% tags=["remove-input"]
show_run_calibration(run.calibration)

# %% tags=["remove-cell"]
for r in rows.itertuples():
    glue(f"linear_{r.dataset}", float(r.value), display=False)
glue("linear_mean", float(rows.value.mean()), display=False)
glue("linear_model", params.model, display=False)

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
      "feature_cache_key", "protocol_params"]].style.hide(axis="index")
