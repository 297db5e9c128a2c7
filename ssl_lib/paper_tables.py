"""The paper's published tables (v2 / CVPR), shipped as CSV in ``ssl_lib/data/paper_tables``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._registry import unknown_name_message
from .exceptions import UnknownNameError

__all__ = ["TABLES_DIR", "list_paper_tables", "paper_table", "printed_table"]

TABLES_DIR = Path(__file__).resolve().parent / "data" / "paper_tables"


def list_paper_tables() -> list[str]:
    return sorted(p.stem for p in TABLES_DIR.glob("*.csv"))


def paper_table(name: str) -> pd.DataFrame:
    """E.g. ``paper_table("table1_linear")``: one row per model, as printed in the paper."""
    path = TABLES_DIR / f"{name}.csv"
    if not path.exists():
        raise UnknownNameError(unknown_name_message("paper table", name, list_paper_tables()))
    return pd.read_csv(path)


def printed_table(name: str) -> pd.DataFrame:
    """The table as printed, every cell a string with the paper's own digits, indexed by model.

    Heatmaps round; this is the version to show beside them, so that every published number
    (82.01, 0.2940) appears in the report exactly.
    """
    paper_table(name)  # the one-line error for an unknown name
    return pd.read_csv(TABLES_DIR / f"{name}.csv", dtype=str, keep_default_na=False).set_index("model")
