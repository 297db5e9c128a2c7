"""The dataset registry: one card (:class:`DatasetSpec`) per dataset of every zoo and task.

The generated mini suite, the paper's recognition and few-shot datasets, its detection (VOC07+12)
and dense-prediction (ADE20K, NYUv2) datasets, and ``folder:<path>`` trees. A card's ``tasks`` say
what it serves; a section's record says which tasks it takes. Detection and dense datasets open
through :mod:`.detection` and :mod:`.dense` (boxes and per-pixel targets); the rest through
:func:`open_split` as ``(image, label)``.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from pathlib import Path

from .._registry import unknown_name_message
from ..exceptions import UnknownNameError
from ._spec import TASKS, VAL_FRACTION, ArrayDataset, DatasetSpec, carve_validation, split_roles
from ._sizes import check_split_size, parse_accepted, size_note
from .transforms import eval_transform, transform_cfg

__all__ = [
    "TASKS", "ArrayDataset", "DatasetSpec", "VAL_FRACTION", "carve_validation", "check_split_size", "eval_transform",
    "get_dataset_spec", "list_datasets", "open_split", "parse_accepted", "size_note", "split_roles", "transform_cfg",
]


@cache
def _recognition_specs() -> dict[str, DatasetSpec]:
    from ._mini import mini_specs
    from ._paper import paper_specs

    return {**mini_specs(), **paper_specs()}


def _specs() -> dict[str, DatasetSpec]:
    """Every card; the detection and dense registries are read afresh (tests add entries to them)."""
    from .dense import DENSE_TASKS
    from .detection import DETECTION_DATASETS

    specs = dict(_recognition_specs())
    for name, entry in DETECTION_DATASETS.items():
        if name not in specs:  # mini-scenes has its card already
            specs[name] = DatasetSpec(
                name=name, zoo=entry.zoo, kind="detection", num_classes=entry.num_classes, metric="detection",
                splits=entry.splits, open=entry.open, description=entry.description, fingerprint=entry.fingerprint,
                paper_analog=name,
            )
    for name, task in DENSE_TASKS.items():
        if name not in specs:
            specs[name] = DatasetSpec(
                name=name, zoo="paper", kind=task.kind, num_classes=task.num_classes, metric=task.kind,
                splits=task.splits, open=task.open, description=task.description, paper_analog=task.paper_analog,
                fingerprint=task.fingerprint,
            )
    return specs


def list_datasets(zoo: str | None = None, pattern: str = "*", task: str | None = None) -> list[str]:
    """Names of every dataset card, optionally of one zoo, matching ``pattern``, serving ``task``."""
    if task is not None and task not in TASKS:
        raise UnknownNameError(unknown_name_message("task", task, list(TASKS)))
    return [
        name for name, spec in _specs().items()
        if (zoo is None or spec.zoo == zoo) and (task is None or task in spec.tasks) and fnmatch.fnmatchcase(name, pattern)
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
    if not {"classification", "multilabel", "few-shot-only"} & set(spec.tasks):
        from ..exceptions import ConfigError

        raise ConfigError(f"Dataset {name!r} serves {'/'.join(spec.tasks)}, not (image, label) recognition; "
                          "open it with ssl_lib.data.detection.open_detection or ssl_lib.data.dense.open_dense.")
    data = spec.open(split, transform=transform, root=root, download=download)
    if spec.split_sizes:
        from ..paths import data_dir

        check_split_size(spec, split, len(data), accept=accept_sizes, where=str(Path(root).expanduser() if root else data_dir()))
    return data
