"""Run the golden study and compare its result values with an earlier run: a refactor's check.

    python tests/golden/compare.py OUT_DIR               # run the study into OUT_DIR
    python tests/golden/compare.py OUT_DIR --against REF  # ... and compare with REF/results.csv

Compared: every row's identity (section, model, dataset, metric) and its value columns (value,
ci_low, ci_high, n_train, n_val, n_eval); provenance (times, run ids, hashes) may differ.
Exit status 0 when identical, 1 otherwise (the differing rows are printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["section", "model", "dataset", "metric"]
VALUES = ["value", "ci_low", "ci_high", "n_train", "n_val", "n_eval"]
STUDY = Path(__file__).with_name("study.yaml")


def values(results: Path) -> pd.DataFrame:
    rows = pd.read_csv(results)
    return rows[KEY + VALUES].sort_values(KEY).reset_index(drop=True)


COUNTS = ("n_train", "n_val", "n_eval")


def compare(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Rows whose values differ (NaN equals NaN), or that only one side has. A count that an older
    table wrote as 0 for "not applicable" equals NaN, which tables write since (missing is NaN)."""
    both = new.merge(old, on=KEY, how="outer", suffixes=("", "_before"), indicator=True)
    differ = both["_merge"] != "both"
    for column in VALUES:
        a, b = both[column].astype(float), both[f"{column}_before"].astype(float)
        same = (a == b) | (a.isna() & b.isna())
        if column in COUNTS:
            same |= a.isna() & (b == 0)
        differ |= ~same
    return both[differ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--against", type=Path)
    args = parser.parse_args(argv)
    from ssl_lib.runner import run_study

    code = run_study(STUDY, out_dir=args.out, force=True, jobs=1)
    if code != 0:
        return code
    new = values(args.out / "results.csv")
    print(f"{len(new)} rows in {args.out / 'results.csv'}")
    if args.against is None:
        return 0
    differing = compare(new, values(args.against / "results.csv"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(differing if len(differing) else "identical: every row and value matches")
    return 1 if len(differing) else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
