"""One module per book section: its notebook parameters and the run for one model."""

from .._registry import Registry
from .linear import LinearParams
from .summary import SummaryParams

__all__ = ["SECTION_PARAMS", "LinearParams", "SummaryParams"]

SECTION_PARAMS: Registry[type] = Registry("section")
SECTION_PARAMS.add("linear", LinearParams)
SECTION_PARAMS.add("summary", SummaryParams)
