"""One module per book section: its notebook parameters and the run for one model."""

from .._registry import Registry
from .fewshot import FewShotParams
from .finetune import FinetuneParams
from .linear import LinearParams
from .summary import SummaryParams

__all__ = ["SECTION_PARAMS", "FewShotParams", "FinetuneParams", "LinearParams", "SummaryParams"]

SECTION_PARAMS: Registry[type] = Registry("section")
SECTION_PARAMS.add("linear", LinearParams)
SECTION_PARAMS.add("finetune", FinetuneParams)
SECTION_PARAMS.add("fewshot", FewShotParams)
SECTION_PARAMS.add("summary", SummaryParams)
