"""A notebook's parameters, resolved and validated in one place.

papermill only *warns* about a parameter the notebook does not declare, so ``-p modle byol`` would
silently run the default model. :func:`setup` compares the notebook's variables with the schema its
section registered (:mod:`ssl_lib.sections`), fills parameters left unset (``None`` or ``""``) from
the study file's settings for that section, checks types and ranges (:data:`RANGES`), and returns
the parameters dataclass. Errors are :class:`ssl_lib.exceptions.SSLLibError`s, which Jupyter shows
as one line (``_render_traceback_``). The runner and the study validator use the same
:func:`resolve_params`, so a study that validates runs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from ._registry import unknown_name_message
from .exceptions import ConfigError, UnknownNameError

__all__ = ["setup", "resolve_params", "RANGES", "check_device", "check_results_path"]

# Names IPython puts in a kernel's namespace before any cell runs.
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}

#: Numeric parameters shared by the sections' notebooks: name → (lowest, highest) allowed (None: open).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, None), "n_boot": (0, None), "batch_size": (1, None), "num_workers": (0, None),
    "n_episodes": (1, None), "n_way": (2, None), "n_query": (1, None), "steps": (1, None), "iterations": (1, None),
    "n_images": (1, None), "n_reference": (2, None), "k": (1, None), "mask": (1, None), "stride": (1, None),
    "images_per_dataset": (1, None), "n_probe": (2, None), "blas_threads": (0, None),
}


def check_device(device: str) -> None:
    """``""`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` that this machine has."""
    if device in ("", "cpu"):
        return
    import torch

    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"Parameter 'device' must be '', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    if not torch.cuda.is_available():
        raise ConfigError(f"Parameter 'device' is {device!r} but this machine has no CUDA device "
                          "(torch.cuda.is_available() is False); pass -p device cpu or leave it empty.")
    if ":" in device and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"Parameter 'device' is {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist.")


def check_results_path(path: str) -> None:
    """A results table can be written there: its nearest existing folder is a writable folder."""
    if not path:
        return
    import os
    from pathlib import Path

    folder = Path(path).expanduser().resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"Parameter 'results_path' is {path!r}, but {folder} is not a writable folder; "
                          "pass a path in a folder you can write.")


def _check_value(name: str, annotation: str, value) -> None:
    base = annotation.removesuffix(" | None")
    if value is None:
        if base == annotation:
            raise ConfigError(f"Parameter {name!r} must be {annotation}, got None.")
        return
    none = " or None" if base != annotation else ""
    if base == "bool" and not isinstance(value, bool):
        raise ConfigError(f"Parameter {name!r} must be True or False{none}, got {value!r}.")
    if base == "int" and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ConfigError(f"Parameter {name!r} must be an integer{none}, got {value!r}.")
    if base == "float" and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise ConfigError(f"Parameter {name!r} must be a number{none}, got {value!r}.")
    if base == "str" and (isinstance(value, bool) or not isinstance(value, (str, numbers.Real))):
        # papermill passes "-p shots 20" as a number: lists of numbers are strings or single numbers
        raise ConfigError(f"Parameter {name!r} must be a string, got {value!r} ({type(value).__name__}).")
    if name in RANGES and isinstance(value, numbers.Real) and not isinstance(value, bool):
        low, high = RANGES[name]
        if (low is not None and value < low) or (high is not None and value > high) or math.isnan(value):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"Parameter {name!r} must be {bound}, got {value!r}.")


def resolve_params(notebook: str, values: dict, *, study=None):
    """The parameters dataclass of ``notebooks/<notebook>.ipynb`` from ``values``.

    Unknown names are an error (with the close matches); a field left unset (absent, ``None`` or
    ``""``) takes the study file's setting for the section when it has one; then every value is
    checked against its annotation and :data:`RANGES`, and ``device`` against the machine.
    """
    from .sections import notebook_schema

    schema = notebook_schema(notebook)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for name in values:
        if name not in fields:
            raise UnknownNameError(
                unknown_name_message(f"parameter of the {notebook} notebook", name, list(fields), "Check the -p names.")
            )
    merged = dict(values)
    if "study" in fields and notebook in _sections():
        from .study import load_study

        study = study or load_study(merged.get("study", fields["study"].default))
        settings = study.sections[notebook].params if notebook in study.sections else {}
        for name, value in settings.items():
            if name in fields and merged.get(name) in (None, ""):  # absent, None or ""
                merged[name] = value
    for name, value in merged.items():
        _check_value(name, str(fields[name].type), value)
    section = notebook.removesuffix("_summary")
    if section in _sections():
        from .sections import SECTIONS

        for name, registry in SECTIONS.get(section).choices.items():
            if merged.get(name) not in (None, ""):
                registry.get(merged[name])  # unknown → one line with the close matches
    if "device" in merged:
        check_device(merged["device"])
    check_results_path(merged.get("results_path", ""))
    return schema(**merged)


def _sections() -> set[str]:
    from .sections import SECTIONS

    return set(SECTIONS)


def setup(namespace: dict, notebook: str):
    """Check a notebook's parameters (its ``globals()``) and return them as its dataclass.

    ``notebook`` is the notebook's file stem: a section's name, or ``<section>_summary``.
    """
    user = {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _KERNEL_NAMES and not callable(v) and type(v).__name__ != "module"}
    return resolve_params(notebook, user)
