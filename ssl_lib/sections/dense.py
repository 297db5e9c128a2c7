"""The dense prediction section: segmentation and surface normals on one model's backbone → rows."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DenseParams"]


@dataclass(frozen=True)
class DenseParams:
    """Parameters of ``notebooks/dense.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name> or file:<path>
    dataset: str = "all"  # "all" (the study's dense datasets) or one dataset name
    seed: int = 0
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""
    download: bool = False
    device: str = ""
    num_workers: int = 0
