"""Dataset registry: the generated mini suite, the paper's datasets and ``folder:<path>``."""

from __future__ import annotations

import fnmatch
from functools import cache

from .._registry import unknown_name_message
from ..exceptions import UnknownNameError
from ._spec import VAL_FRACTION, ArrayDataset, DatasetSpec, carve_validation, split_roles
from .transforms import eval_transform, transform_cfg

__all__ = [
    "ArrayDataset", "DatasetSpec", "VAL_FRACTION", "carve_validation", "eval_transform",
    "get_dataset_spec", "list_datasets", "open_split", "split_roles", "transform_cfg",
]


@cache
def _specs() -> dict[str, DatasetSpec]:
    from ._mini import mini_specs
    from ._paper import paper_specs

    return {**mini_specs(), **paper_specs()}


def list_datasets(zoo: str | None = None, pattern: str = "*", kind: str | None = None) -> list[str]:
    return [
        name for name, spec in _specs().items()
        if (zoo is None or spec.zoo == zoo) and (kind is None or spec.kind == kind) and fnmatch.fnmatchcase(name, pattern)
    ]


def get_dataset_spec(name: str) -> DatasetSpec:
    if name.startswith("folder:"):
        from ._folder import folder_spec

        return folder_spec(name)
    specs = _specs()
    if name not in specs:
        raise UnknownNameError(
            unknown_name_message("dataset", name, list(specs), "Or pass folder:<path>; see `python -m ssl_lib datasets`.")
        )
    return specs[name]


def open_split(name: str, split: str, *, transform=None, root=None, download: bool = False):
    """A torch Dataset of ``(image, label)`` for one on-disk split of ``name``."""
    spec = get_dataset_spec(name)
    if split not in spec.splits:
        raise UnknownNameError(unknown_name_message(f"split of {name}", split, list(spec.splits)))
    return spec.open(split, transform=transform, root=root, download=download)
