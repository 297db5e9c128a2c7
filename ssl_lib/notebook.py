"""Helpers for the section notebooks: parameter checking.

Errors raised here and in the library are :class:`ssl_lib.exceptions.SSLLibError`s, which
Jupyter shows as one line (``_render_traceback_``).

papermill only *warns* about a parameter the notebook does not declare, so ``-p modle byol``
would silently run the default model. :func:`setup` compares the notebook's variables with the
section's declared parameters and stops the run with one line naming the close matches.
"""

from __future__ import annotations

import dataclasses

from ._registry import unknown_name_message
from .exceptions import ConfigError, UnknownNameError

__all__ = ["setup"]

# Names IPython puts in a kernel's namespace before any cell runs.
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def setup(namespace: dict, section: str):
    """Check the notebook's parameters and return them as the section's dataclass.

    A variable the section does not declare (a misspelt ``-p`` name) or a value of the wrong type
    raises a one-line :class:`SSLLibError`; names of models and datasets are checked when used.
    """
    from .sections import SECTION_PARAMS

    schema = SECTION_PARAMS.get(section)
    declared = [f.name for f in dataclasses.fields(schema)]
    user = [k for k in namespace if not k.startswith("_") and k not in _KERNEL_NAMES and not callable(namespace[k])
            and type(namespace[k]).__name__ != "module"]
    for name in user:
        if name not in declared:
            raise UnknownNameError(
                unknown_name_message(f"parameter of the {section} notebook", name, declared, "Check the -p names.")
            )
    values = {k: namespace[k] for k in declared if k in namespace}
    for f in dataclasses.fields(schema):
        base = f.type.removesuffix(" | None")  # annotations are strings (from __future__ import annotations)
        if f.name not in values or base not in ("int", "bool") or (values[f.name] is None and base != f.type):
            continue
        if not isinstance(values[f.name], (int, bool)):
            raise ConfigError(f"Parameter {f.name!r} must be {f.type}, got {values[f.name]!r}.")
    return schema(**values)
