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
seed = 0

# %% tags=["remove-cell"]
from ssl_lib.notebook import setup

params = setup(globals(), "scorecard")  # one-line errors for unknown parameters

# %% tags=["remove-cell"]
from myst_nb import glue

from ssl_lib.sections.scorecard import study_scorecard
from ssl_lib.sections.sensitivity import robustness

# %% [markdown]
# # Reproduction scorecard
#
# The paper's headline findings (and two of its invariance follow-up's), each tested on this
# study's results. The *paper* column is computed from the paper's published tables, the
# *evidence* column from this study's `results.csv`; nothing is typed in. Each verdict is decided
# by the rule printed beside it:
#
# - **"A beats B"** claims compare the two models on the same test images (the same episodes for
#   few-shot) with a paired bootstrap: a comparison is a *win* only when the 95% interval of the
#   difference lies above zero, a *loss* when it lies below, and a *tie* otherwise. A claim about
#   most tasks (or most models) *agrees* when wins are more than half, *disagrees* when losses are
#   at least half, and is *inconclusive* otherwise. The paper's "best SSL model" is the best one per
#   task; the stricter *single-model* rows use the one SSL model that is best on average.
# - **Correlation** claims *agree* when the study's 95% interval (bootstrap over models) overlaps the
#   paper's and the estimates share a sign. They are decided without the `random` model, which the
#   paper did not have and which, far below every trained model, can make any correlation look
#   strong; the evidence gives both.
#
# A finding whose section has not run in this study says so. In the mini study the models are
# small and the tasks generated, so agreement is evidence that the suite asks the paper's
# questions, not a replication of its numbers.
#
# The *under protocol variants* column comes from the [sensitivity section](../sensitivity/summary.ipynb):
# whether the verdict holds when one protocol choice the paper leaves open is changed (a solver, a
# resize, a validation carve, a training seed). A verdict that flips with a seed is not a verdict.

# %% tags=["remove-input"]
card = study_scorecard(params)
stable = robustness(params.results_path)
card["under protocol variants"] = card.finding.map(stable).fillna("(sensitivity not run)") if stable else \
    "(sensitivity not run)"
table = card[["claim", "paper", "status", "evidence", "under protocol variants", "rule"]]
glue("scorecard_table", table[["claim", "paper", "status", "under protocol variants", "evidence"]].style.hide(axis="index"),
     display=False)
table.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})

# %% tags=["remove-cell"]
counts = card.status.value_counts()
tested = int(sum(counts.get(s, 0) for s in ("agrees", "disagrees", "inconclusive")))
glue("scorecard_headline", f"{int(counts.get('agrees', 0))} of the {tested} findings tested so far agree with "
     f"the paper, {int(counts.get('disagrees', 0))} disagree and {int(counts.get('inconclusive', 0))} are "
     f"inconclusive ({int(counts.get('not run', 0))} not run)"
     + (f"; {sum(v.startswith('flips with a seed') for v in stable.values())} verdicts flip with a seed "
        "(see the sensitivity section)" if stable else ""), display=False)
