"""One record per section of the report, registered once: what the runner, the notebooks' ``setup``,
the study validator, the correlation and the tests all read.

A section registers itself at the bottom of its module (``SECTIONS.add(Section(...))``), with its
place in the report (``order``). Adding a section is that registration plus its notebook(s) in
``notebooks/`` (and its module's import in ``ssl_lib.sections``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._registry import Registry
from ..paths import repo_root

__all__ = ["Section", "SECTIONS", "SUMMARY_NOTEBOOK", "in_report_order"]

SUMMARY_NOTEBOOK = "{name}_summary"


@dataclass(frozen=True)
class Section:
    """A section of the report.

    A *per-model* section runs ``notebooks/<name>.ipynb`` once per model (parameters ``params``),
    then ``<name>_summary.ipynb`` (parameters ``summary``) over its rows; a study-level one runs
    ``<name>.ipynb`` once for the whole study. ``reads`` lists the sections whose result rows its
    pages depend on (``"*"``: every section): those runs finish first, and a change in their rows
    re-runs the page. ``compute`` runs evaluate models (a GPU on a cluster). ``tasks`` are the
    dataset tasks it takes (see :data:`ssl_lib.data.TASKS`); ``setting(dataset, metric)`` maps
    one of its result rows to a correlation setting (None: not correlated). ``choices`` name the
    registry each string parameter must name (an unset ``""`` keeps the section's default).
    """

    name: str
    title: str
    order: int  # place in the report (per-model sections first, the front page's scorecard last)
    params: type
    run: Callable
    per_model: bool = True
    reads: tuple[str, ...] = ()
    compute: bool = True
    tasks: tuple[str, ...] = ()
    setting: Callable[[str, str], str | None] | None = None
    summary: type | None = None
    choices: dict[str, Registry] = field(default_factory=dict)  # parameter → the registry its value names
    notebooks_dir: Path | None = None  # None: the repository's notebooks/

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.params):
            raise TypeError(f"Section {self.name!r}: params must be a dataclass, got {self.params!r}.")
        if self.per_model and self.summary is None:
            raise TypeError(f"Section {self.name!r} is per-model and needs its summary page's parameters.")

    def notebook(self) -> Path:
        return (self.notebooks_dir or repo_root() / "notebooks") / f"{self.name}.ipynb"

    def summary_notebook(self) -> Path | None:
        if not self.per_model:
            return None
        return (self.notebooks_dir or repo_root() / "notebooks") / f"{SUMMARY_NOTEBOOK.format(name=self.name)}.ipynb"

    def check_dataset(self, name: str):
        """The dataset's card if this section can use it; else one line naming datasets it can use."""
        from ..data import get_dataset_spec, list_datasets
        from ..exceptions import ConfigError

        spec = get_dataset_spec(name)
        if self.tasks and not set(spec.tasks) & set(self.tasks):
            usable = [d for d in list_datasets() if set(get_dataset_spec(d).tasks) & set(self.tasks)]
            raise ConfigError(
                f"Dataset {name!r} serves {'/'.join(spec.tasks)}; the {self.name} section takes "
                f"{'/'.join(self.tasks)} datasets ({', '.join(usable[:10])}{', ...' if len(usable) > 10 else ''})."
                + (" A folder: tree serves them when laid out as train/<class>/* and test/<class>/* "
                   "(or val/<class>/*)." if name.startswith("folder:") else "")
            )
        return spec

    def notebook_params(self) -> dict[str, type]:
        """Notebook file stem → its parameters dataclass (the schema ``setup`` checks)."""
        out = {self.name: self.params}
        if self.per_model:
            out[SUMMARY_NOTEBOOK.format(name=self.name)] = self.summary
        return out


SECTIONS: Registry[Section] = Registry("section", hint="See ssl_lib.sections.SECTIONS.names().")


def in_report_order(names=None) -> list[str]:
    """Section names (all, or those in ``names``) in the report's order."""
    chosen = [n for n in SECTIONS if names is None or n in names]
    return sorted(chosen, key=lambda n: SECTIONS.get(n).order)
