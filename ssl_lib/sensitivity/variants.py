"""Protocol variants: named choices the paper leaves open, each a registry entry.

A :class:`Variant` re-scores one section's numbers for one model with one choice changed, from the
inputs the section already has (cached features, the fine-tune grid's state, the section's own
settings). It says where its alternative comes from (the paper's text, its code, or a peer's
practice) and what it is compared with: the section's recorded default rows (``baseline=None``),
or a setting it computes itself (e.g. "carve seed 0" for the carve seeds, where the mini suite's
default never carves). Each score carries its per-example outcomes (:mod:`ssl_lib.outcomes`), so
the change is measured on the same test images or episodes.

Variants register themselves in :data:`VARIANTS` (``_protocols`` for linear, few-shot and
calibration; ``_training`` for the ones that retrain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._registry import Registry
from ..exceptions import ConfigError

__all__ = ["Score", "Variant", "ModelContext", "VARIANTS", "ERROR_METRICS", "parse_seeds"]

#: Metrics where lower is better (the change is still reported as alternative − default).
ERROR_METRICS = ("sn_mean_err", "sn_median_err")


@dataclass
class Score:
    """One number under one setting, with the per-example evidence it is computed from."""

    dataset: str
    metric: str
    value: float
    kind: str  # an ssl_lib.outcomes kind
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    details: dict = field(default_factory=dict)  # what the setting chose (C, lr, wd, temperature, ...)


@dataclass
class ModelContext:
    """What a variant's compute function reads for one model: the study, the sensitivity
    parameters, the loaded model, the section settings as the study resolves them, and a memo
    for work several settings share (e.g. the default linear fit that both calibration settings
    score)."""

    study: object  # ssl_lib.study.Study
    params: object  # SensitivityParams
    model: object  # FeatureModel
    device: str | None = None
    memo: dict = field(default_factory=dict)

    def section_params(self, section: str):
        """The section's notebook parameters as a run of this study would get them."""
        key = ("params", section)
        if key not in self.memo:
            from ..notebook import resolve_params

            self.memo[key] = resolve_params(section, {"study": str(self.study.path), "seed": self.study.seed},
                                            study=self.study)
        return self.memo[key]


Compute = Callable[[ModelContext, str, object], list[Score]]  # (context, dataset, setting value) -> scores


@dataclass(frozen=True)
class Variant:
    """One protocol choice, changed.

    ``settings(params)`` maps each alternative's label to the value ``compute`` takes;
    ``baseline`` is ``None`` (compare with the section's recorded default rows) or a
    ``(label, value)`` that ``compute`` scores as the reference. ``paired`` says whether baseline
    and alternative are scored on the same examples (False for episode seeds: other episodes).
    ``retrains`` marks variants that train networks (run on ``params.retrain_models`` only).
    ``datasets(ctx)`` defaults to the study's datasets for ``section`` (``section_of_data``).
    """

    name: str
    section: str  # whose rows it re-scores (the rows it substitutes for the scorecard)
    default: str  # the default protocol's choice
    alternative: str  # this variant's choice
    source: str  # where the alternative comes from, one line
    compute: Compute
    settings: Callable[[object], dict[str, object]]
    baseline: tuple[str, object] | None = None
    paired: bool = True
    retrains: bool = False
    section_of_data: str = ""  # whose study datasets it runs on ("" = section)
    datasets: Callable[[ModelContext], list[str]] | None = None
    note: str = ""  # what the page should say about how it runs in the mini study

    def dataset_names(self, ctx: ModelContext) -> list[str]:
        """Its datasets in the study, narrowed by the ``<section>_datasets`` parameter where there is one."""
        from .._registry import unknown_name_message
        from ..exceptions import UnknownNameError
        from ..sections._common import split_names

        section = self.section_of_data or self.section
        names = (self.datasets(ctx) if self.datasets is not None else
                 list(ctx.study.section(section).datasets) if section in ctx.study.sections else [])
        chosen = getattr(ctx.params, f"{section}_datasets", "all")
        if chosen in ("", "all"):
            return names
        known = list(ctx.study.section(section).datasets) if section in ctx.study.sections else []
        for name in split_names(chosen):
            if name not in known:
                raise UnknownNameError(unknown_name_message(f"{section} dataset of the study", name, known,
                                                            f"(parameter {section}_datasets)"))
        return [d for d in split_names(chosen) if d in names]

    def describe(self) -> dict:
        return {"variant": self.name, "section": self.section, "default": self.default,
                "alternative": self.alternative, "source": self.source}


VARIANTS: Registry[Variant] = Registry("variant", hint="See ssl_lib.sensitivity.VARIANTS.names().")


def parse_seeds(value, name: str) -> list[int]:
    """``"1,2"`` (or ``3``) → ``[1, 2]``: non-negative integers."""
    from ..sections._common import parse_numbers

    seeds = parse_numbers(value, name, int)
    if min(seeds) < 0:
        raise ConfigError(f"Parameter {name!r} needs non-negative integers, got {value!r}.")
    return seeds


def variant_table() -> pd.DataFrame:
    """Every registered variant: section, default, alternative and where it comes from."""
    return pd.DataFrame([VARIANTS.get(n).describe() for n in VARIANTS])
