"""Dataset registry: the generated mini suite, the paper's datasets and ``folder:<path>``."""

from __future__ import annotations

import fnmatch
from functools import cache
from pathlib import Path

from .._registry import unknown_name_message
from ..exceptions import UnknownNameError
from ._spec import VAL_FRACTION, ArrayDataset, DatasetSpec, carve_validation, split_roles
from ._sizes import check_split_size, parse_accepted, size_note
from .transforms import eval_transform, transform_cfg

__all__ = [
    "ArrayDataset", "DatasetSpec", "VAL_FRACTION", "carve_validation", "check_split_size", "eval_transform",
    "get_dataset_spec", "list_datasets", "open_split", "parse_accepted", "size_note", "split_roles", "transform_cfg",
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


def open_split(name: str, split: str, *, transform=None, root=None, download: bool = False,
               accept_sizes: bool = False):
    """A torch Dataset of ``(image, label)`` for one on-disk split of ``name``.

    A paper dataset whose split has another image count than the canonical one raises
    :class:`~ssl_lib.exceptions.SplitSizeError` unless ``accept_sizes`` (see :mod:`._sizes`).
    """
    spec = get_dataset_spec(name)
    if split not in spec.splits:
        raise UnknownNameError(unknown_name_message(f"split of {name}", split, list(spec.splits)))
    data = spec.open(split, transform=transform, root=root, download=download)
    if spec.split_sizes:
        from ..paths import data_dir

        check_split_size(spec, split, len(data), accept=accept_sizes, where=str(Path(root).expanduser() if root else data_dir()))
    return data
