"""One module per book section: its notebook parameters and the run for one model."""

from .._registry import Registry
from ._common import adapter_markdown, data_table
from .attention import AttentionParams
from .calibration import CalibrationParams
from .correlation import CorrelationParams
from .dense import DenseParams
from .detection import DetectionParams
from .fewshot import FewShotParams
from .finetune import FinetuneParams
from .invariances import InvariancesParams
from .linear import LinearParams
from .retention import RetentionParams
from .scorecard import ScorecardParams
from .summary import SummaryParams

__all__ = [
    "SECTION_PARAMS", "adapter_markdown", "data_table", "AttentionParams", "CalibrationParams", "DenseParams", "DetectionParams", "CorrelationParams", "FewShotParams", "FinetuneParams", "InvariancesParams", "LinearParams", "RetentionParams", "ScorecardParams", "SummaryParams",
]

SECTION_PARAMS: Registry[type] = Registry("section")
SECTION_PARAMS.add("linear", LinearParams)
SECTION_PARAMS.add("finetune", FinetuneParams)
SECTION_PARAMS.add("fewshot", FewShotParams)
SECTION_PARAMS.add("detection", DetectionParams)
SECTION_PARAMS.add("dense", DenseParams)
SECTION_PARAMS.add("calibration", CalibrationParams)
SECTION_PARAMS.add("attention", AttentionParams)
SECTION_PARAMS.add("invariances", InvariancesParams)
SECTION_PARAMS.add("retention", RetentionParams)
SECTION_PARAMS.add("correlation", CorrelationParams)
SECTION_PARAMS.add("scorecard", ScorecardParams)
SECTION_PARAMS.add("summary", SummaryParams)
