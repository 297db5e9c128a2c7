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
from IPython.display import Markdown, display
from myst_nb import glue

from ssl_lib.sections.scorecard import study_scorecard

# %% [markdown]
# # Reproduction scorecard
#
# The paper's headline findings (and two of its invariance follow-up's), each tested on this
# study's results. The *paper* column is computed from the paper's published tables, the
# *evidence* column from this study's `results.csv`; nothing is typed in. A finding whose section
# has not run in this study says so. In the mini study the models are small and briefly trained
# and the tasks are generated, so agreement is evidence that the suite can ask the paper's
# questions, not a replication of its numbers.

# %% tags=["remove-input"]
card = study_scorecard(params)
table = card[["claim", "paper", "status", "evidence"]]
glue("scorecard_table", table.style.hide(axis="index"), display=False)
table.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})

# %% tags=["remove-cell"]
counts = card.status.value_counts()
tested = int(counts.get("agrees", 0) + counts.get("disagrees", 0))
glue("scorecard_headline", f"{int(counts.get('agrees', 0))} of the {tested} findings tested so far agree with "
     f"the paper ({int(counts.get('not run', 0))} not run)", display=False)
