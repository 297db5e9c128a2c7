"""The generated mini suite (``ssl_lib.data.mini``) as dataset cards."""

from __future__ import annotations

from functools import partial

from ._spec import ArrayDataset, DatasetSpec

__all__ = ["mini_specs", "MINI_SEED"]

MINI_SEED = 0
_TASKS = {"mini-scenes": ("detection", "segmentation")}  # boxes and masks of the same scenes


def _open(name: str, split: str, *, transform=None, root=None, download: bool = False, seed: int = MINI_SEED):
    from ..exceptions import SSLLibError
    from . import mini

    if mini.MINI_TASKS[name].kind not in ("classification", "multilabel"):
        raise SSLLibError(
            f"{name!r} is a {mini.MINI_TASKS[name].kind} task, not an (image, label) dataset; "
            "read its arrays with ssl_lib.data.mini.load()."
        )
    arrays = mini.load(name, split, seed=seed)
    return ArrayDataset(arrays["images"], arrays["labels"], transform)


def mini_specs() -> dict[str, DatasetSpec]:
    from . import mini

    return {
        name: DatasetSpec(
            name=name,
            zoo="mini",
            kind=task.kind,
            num_classes=task.num_classes,
            metric=task.metric,
            splits=("train", "val", "test"),
            open=partial(_open, name),
            description=task.description,
            paper_analog=task.paper_analog,
            fingerprint=f"mini-suite-v{mini.SUITE_VERSION}-seed{MINI_SEED}",
            tasks=_TASKS.get(name, ()),
        )
        for name, task in mini.MINI_TASKS.items()
    }
