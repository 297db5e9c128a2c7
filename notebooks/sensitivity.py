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
variants = "all"
retrain_models = ""
linear_datasets = ""
fewshot_datasets = ""
finetune_datasets = ""
shots = ""
carve_seeds = "1,2,3,4"
episode_seeds = "1,2,3,4"
train_seeds = "1,2"
n_boot = 1000
seed = 0
results_path = "book/results/results.csv"
blas_threads = None
device = ""

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "sensitivity")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.sensitivity import run_sensitivity
from ssl_lib.sensitivity import CHANGE_RULE, FLIP_RULE, RANK_RULE, VARIANTS, variant_table
from ssl_lib.sensitivity.compare import BOOT_CAP, unit

# %% [markdown]
# # Protocol sensitivity
#
# Transfer numbers move with choices that papers rarely report: the solver's stopping rule, whether
# features are standardised, how coarse the regularisation grid is, which images the validation
# carve draws, how few-shot images are resized, which training seed a detector gets. Each *variant*
# below changes one such choice and re-scores this study's models with everything else held at the
# study's protocol, from inputs the sections already have (cached features, fine-tune grid states,
# trained detectors). For each variant the page reports:
#
# - the **change** in each model's score, variant − default, with a 95% interval over the same test
#   images or episodes (paired; independent where the variant draws other episodes);
# - the **rank correlation** (Spearman's ρ) of the models under the variant with their order under
#   the default, per task; the table gives the lowest;
# - the **verdicts**: whether any finding of the [scorecard](../scorecard/summary.ipynb) flips when
#   the variant's scores stand in for the default ones, each finding decided by its own rule.

# %% tags=["remove-input"]
page = run_sensitivity(params)
display(Markdown(
    f"**{len(page.variants)} variants** · **{len(page.models)} models** "
    f"({len(page.retrain_models)} for the variants that train: {', '.join(page.retrain_models) or 'none'}) · "
    f"{len(page.changes)} re-scored numbers · {page.total_seconds:.0f} s on this machine "
    f"({sum(page.cached.get(v, 0) == 1 for v in page.variants)} variants entirely read from the sensitivity cache)."
))

# %% [markdown]
# ## The verdict table
#
# One line per variant: its largest change (model, task and setting, with the interval), how many of
# its changes have an interval that excludes zero, its lowest rank correlation, and the scorecard
# verdicts that flip under it.

# %% tags=["remove-input"]
lead = page.summary[["variant", "alternative", "largest change", "intervals excluding 0", "lowest ρ", "verdicts"]]
glue("sensitivity_table", lead.style.hide(axis="index"), display=False)
flipping = page.summary[page.summary.verdicts != "verdicts unchanged"]
largest = page.changes.dropna(subset=["change"])
top = largest.loc[largest.change.abs().idxmax()] if len(largest) else None
glue("sensitivity_headline",
     (f"{len(flipping)} of {len(page.summary)} protocol variants flip at least one scorecard verdict"
      + (f" ({', '.join(flipping.variant)})" if len(flipping) else "")
      + (f"; the largest change is {top.change:+.1f} ({top.variant}, {top.model} on {top.dataset})"
         if top is not None else "")), display=False)
lead.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})

# %% [markdown]
# ## Score under each variant against the default
#
# One panel per variant (and unit, where a variant's tasks mix them), one point per model, task and
# setting; the diagonal is "no change". Points off the diagonal but in the same order keep the
# ranking; crossings change it.

# %% tags=["remove-input"]
shown = page.changes.dropna(subset=["default", "value"]).assign(
    task=lambda t: t.dataset.astype(str) + " " + t.metric.astype(str), unit=lambda t: t.metric.map(unit))
mixed = shown.groupby("variant").unit.nunique()
shown["panel"] = [v if mixed[v] == 1 else f"{v} ({u})" for v, u in zip(shown.variant, shown.unit)]
if len(shown):
    grid = sns.relplot(data=shown, x="default", y="value", hue="task", style="setting", col="panel", col_wrap=4,
                       height=2.6, aspect=1.05, facet_kws={"sharex": False, "sharey": False}, s=28)
    for ax, name in zip(grid.axes.flat, grid.col_names):
        part = shown[shown.panel == name]
        low, high = min(part["default"].min(), part["value"].min()), max(part["default"].max(), part["value"].max())
        pad = 0.05 * (high - low or 1)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", lw=0.8, ls="--")
        ax.set(xlabel="default", ylabel="variant")
    grid.set_titles("{col_name}", size=8)
    plt.show()
else:
    display(Markdown("No variant produced a score with a default to compare with."))

# %% [markdown]
# ## Changes per model
#
# Variant − default with the 95% interval; for error metrics (angular error, ECE) lower is better.

# %% tags=["remove-input"]
for name in page.variants:
    part = page.changes[page.changes.variant == name]
    if part.empty:
        continue
    cell = part.assign(
        cell=[f"{c:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo == lo else (f"{c:+.2f}" if c == c else r)
              for c, lo, hi, r in zip(part.change, part.ci_low, part.ci_high, part.interval)],
        column=part.dataset.astype(str) + " · " + part.metric.astype(str) + " · " + part.setting.astype(str))
    wide = cell.pivot(index="model", columns="column", values="cell").reindex(
        [m for m in page.models if m in set(cell.model)])
    display(Markdown(f"**{name}** — {VARIANTS.get(name).alternative} (default: {VARIANTS.get(name).default}); "
                     f"interval: {part.interval.iloc[0]}"))
    display(wide.style.set_properties(**{"font-size": "85%"}))

# %% [markdown]
# ## Rank correlation per task

# %% tags=["remove-input"]
ranks = page.ranks.assign(task=page.ranks.dataset + " · " + page.ranks.metric)
wide = ranks.pivot_table(index=["variant", "setting"], columns="task", values="spearman", sort=False)
display(wide.style.format("{:.2f}", na_rep="n/a").background_gradient(cmap="RdYlGn", vmin=-1, vmax=1))

# %% [markdown]
# ## Verdicts that flip

# %% tags=["remove-input"]
flips = page.flips[page.flips.flipped]
if flips.empty:
    display(Markdown("No scorecard verdict changes under any variant."))
else:
    display(flips[["variant", "setting", "finding", "default", "variant_status"]].style.hide(axis="index"))

# %% [markdown]
# ## The variants and where they come from

# %% tags=["remove-input"]
table = variant_table()
table["note"] = [VARIANTS.get(n).note for n in table.variant]
table["seconds"] = [round(page.seconds.get(n, float("nan")), 1) for n in table.variant]
table["from cache"] = [f"{page.cached[n]:.0%}" if n in page.cached else "not run" for n in table.variant]
table.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})

# %% [markdown]
# ## Rules and provenance

# %% tags=["remove-input"]
ece_boot = f"{BOOT_CAP['ece']} resamples"
display(Markdown("\n".join([
    f"- **Change**: {CHANGE_RULE.format(n_boot=params.n_boot, ece=ece_boot)}.",
    f"- **Rank correlation**: {RANK_RULE}.",
    f"- **Verdicts**: {FLIP_RULE}.",
    "- **Cache**: every score is kept with its outcomes in the sensitivity cache, keyed by the weights, the "
    "dataset, the variant and setting, and the section's resolved settings; a rerun recomputes nothing.",
])))
pd.DataFrame([{"parameter": k, "value": v} for k, v in vars(params).items()]).style.hide(axis="index")
