"""The report's sections: one module each (its notebook parameters and its run), registered once in
:data:`SECTIONS` (``ssl_lib.sections._record``). The import order below is the report's order."""

from . import linear, finetune, fewshot, detection, dense  # noqa: F401  (per-model sections)
from . import calibration, invariances, retention, attention, correlation, sensitivity, scorecard  # noqa: F401  (study-level)
from ._common import adapter_markdown, data_table, pyramid_markdown
from ._record import SECTIONS, Section, in_report_order
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
from .sensitivity import SensitivityParams
from .summary import SummaryParams

__all__ = [
    "SECTIONS", "Section", "in_report_order", "notebook_schema", "notebook_schemas", "adapter_markdown", "data_table",
    "pyramid_markdown",
    "AttentionParams", "CalibrationParams", "DenseParams", "DetectionParams", "CorrelationParams", "FewShotParams",
    "FinetuneParams", "InvariancesParams", "LinearParams", "RetentionParams", "ScorecardParams", "SensitivityParams",
    "SummaryParams",
]


def notebook_schemas() -> dict[str, type]:
    """Every notebook of every section (file stem → parameters dataclass), from the records."""
    return {stem: schema for name in in_report_order() for stem, schema in SECTIONS.get(name).notebook_params().items()}


def notebook_schema(notebook: str) -> type:
    """The parameters dataclass of ``notebooks/<notebook>.ipynb`` (a section name or ``<name>_summary``)."""
    from .._registry import unknown_name_message
    from ..exceptions import UnknownNameError

    schemas = notebook_schemas()
    if notebook not in schemas:
        raise UnknownNameError(unknown_name_message("notebook", notebook, list(schemas)))
    return schemas[notebook]
