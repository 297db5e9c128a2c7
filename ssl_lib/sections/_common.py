"""What every per-model section shares: resolving its datasets and stamping rows with provenance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pandas as pd

from ..data import get_dataset_spec, open_split, parse_accepted, size_note, split_roles
from ..exceptions import ConfigError
from ..models import FeatureModel
from ..provenance import environment, utc_now
from ..results import ResultRow
from ..study import Study

__all__ = ["section_datasets", "RowStamp", "check_data", "data_table", "parse_numbers", "split_names", "study_images",
           "adapter_markdown", "pyramid_markdown"]


def section_datasets(study: Study, section: str, dataset: str, *, splits: tuple[str, ...] = ()) -> list[str]:
    """``"all"`` (the study's datasets for ``section``) or one name; every name checked up front:
    that it has the ``splits`` the protocol needs (few-shot-only sets have just ``all``) and that it
    serves one of the section's tasks (its record)."""
    from ._record import SECTIONS

    names = list(study.section(section).datasets) if dataset == "all" else [dataset]
    for name in names:
        spec = get_dataset_spec(name)
        missing = [s for s in splits if s not in spec.splits]
        if missing:
            layout = f" Its layout: {spec.layout}." if spec.layout else ""
            raise ConfigError(f"Dataset {name!r} has no {'/'.join(missing)} split, which the {section} protocol "
                              f"needs (it has {'/'.join(spec.splits)}); use it in few-shot only.{layout}")
        SECTIONS.get(section).check_dataset(name)
    return names


def check_data(names: list[str], accept: str = "", *, splits: tuple[str, ...] = (), root=None,
               download: bool = False) -> dict[str, str]:
    """Before any work: open each paper dataset's splits (``splits``, else all; a split it lacks means
    its last, as in :func:`study_images`) and compare their sizes with the canonical ones. A
    difference stops the run with one line unless the dataset is named in ``accept`` (the
    ``accept_split_sizes`` parameter). Returns name → the rows' ``data_check``."""
    accepted = parse_accepted(accept)
    out = {}
    for name in names:
        spec = get_dataset_spec(name)
        if not spec.split_sizes:
            out[name] = ""
            continue
        wanted = dict.fromkeys(s if s in spec.splits else spec.splits[-1] for s in splits) if splits else spec.splits
        counts = {s: len(open_split(name, s, root=root, download=download, accept_sizes=name in accepted))
                  for s in wanted}
        out[name] = size_note(spec, counts)
    return out


def data_table(rows: pd.DataFrame) -> pd.DataFrame:
    """For a page: each dataset of ``rows``, which split played which role, and its size check."""
    first = rows.drop_duplicates("dataset")
    return pd.DataFrame({
        "dataset": first.dataset,
        "splits": [split_roles(get_dataset_spec(d)) for d in first.dataset],
        "data check": first.data_check.fillna("").replace("", "(no canonical sizes)"),
    })


def study_images(study: Study, dataset: str, split: str, n: int, seed: int, *, replace: bool = True,
                 accept_sizes: bool = False):
    """``n`` images of ``dataset`` drawn with replacement (``replace=False``: distinct images), float
    (n, 3, H, W) in [0, 1], shared by every model of a study-level page. The mini suite is used at
    its own size; datasets on disk are brought to the zoo's evaluation size (224 px for the paper). A split the dataset lacks
    falls back to its last (the CD-FSL sets have one, ``all``)."""
    from ..data import eval_transform
    from ..evaluate.invariance import sample_images
    from ..models import get_model_cfg

    spec = get_dataset_spec(dataset)
    split = split if split in spec.splits else spec.splits[-1]
    transform = None if spec.zoo == "mini" else eval_transform(get_model_cfg(study.models[0], zoo=study.zoo))
    return sample_images(dataset, split, n, seed=seed, transform=transform, replace=replace,
                         accept_sizes=accept_sizes)


def split_names(value: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]`` (model specs contain no commas)."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


def parse_numbers(value, name: str, cast: type = float) -> list:
    """``"5,20,50"``, ``20`` or ``[5, 20]`` → ``[5, 20, 50]`` as ``cast`` (papermill passes a
    single ``-p`` number as a number, a list as a string)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    kind = "integers" if cast is int else "numbers"
    try:
        out = [cast(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"Parameter {name!r} must be {kind} separated by commas, got {value!r}.") from None
    if not out:
        raise ConfigError(f"Parameter {name!r} needs at least one value, got {value!r}.")
    return out


@dataclass
class RowStamp:
    """The fields every row of one run shares: model identity and adapter contract, environment, run id,
    and each dataset's ``data_check`` (from :func:`check_data`)."""

    section: str
    model: FeatureModel
    seed: int
    device: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    data_checks: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = environment(self.device)

    def save_outcomes(self, results_path: str, dataset: str, setting: str, protocol_hash: str, kind: str,
                      **arrays) -> str:
        """Per-example evidence for paired comparisons (:mod:`ssl_lib.outcomes`); ``""`` (nothing
        written) when the run records no results. The name ties the file to the rows it backs."""
        if not results_path:
            return ""
        from ..outcomes import outcome_name, save_outcomes

        name = outcome_name(section=self.section, model=self.model.cfg.name, weights=self.model.weights_hash,
                            dataset=dataset, setting=setting, params=protocol_hash, seed=self.seed)
        return save_outcomes(results_path, name, kind, **arrays)

    def row(self, **fields) -> ResultRow:
        """A row with the run's identity and the model's adapter contract (pooling, layer, input)."""
        fields.setdefault("data_check", self.data_checks.get(fields.get("dataset", ""), ""))
        fields.setdefault("protocol", self.section)
        source = self.model.cfg.source_top1
        fields.setdefault("source_top1", float(source) if source is not None else float("nan"))
        return ResultRow(
            section=self.section, model=self.model.cfg.name, zoo=self.model.cfg.zoo,
            weights_sha256=self.model.weights_hash, seed=self.seed, run_id=self.run_id,
            created_utc=utc_now(), **self.model.cfg.adapter(), **self.env, **fields,
        )


def adapter_markdown(row) -> str:
    """One Markdown line saying how a row's model read its features (the adapter columns)."""
    patch = f" · **patch** {int(row.patch_size)} px" if row.patch_size == row.patch_size and row.patch_size else ""
    return (f"**Features**: {row.pooling} over `{row.feature_layer}` of `{row.arch}` · **input** "
            f"{int(row.input_size)} px crop of a {int(row.resize_size)} px resize{patch} · "
            f"**normalisation** {row.normalization}")


_PYRAMIDS = {"resnet": "ResNet stages", "hierarchical": "the last four stages (timm forward_intermediates)",
             "plain": "a ViTDet simple feature pyramid (deconvolutions x4 and x2, identity, max-pool), trained with "
                      "the head, from the last block's token grid"}


def pyramid_markdown(info: dict, *, pooled_level: bool = False) -> str:
    """One Markdown line saying which backbone levels fed a dense or detection head (the rows'
    ``extra["pyramid"]``, from :meth:`ssl_lib.models.MultiScale.info`); ``pooled_level`` mentions
    the FPN's extra max-pooled level (detection)."""
    levels = ", ".join(f"`{m}`" for m in info["levels"])
    line = (f"**Pyramid**: {_PYRAMIDS.get(info['kind'], info['kind'])}: {levels} → levels at strides "
            f"{'/'.join(map(str, info['strides']))} px with {'/'.join(map(str, info['channels']))} channels"
            + (" (+ a max-pooled level)" if pooled_level else "") + ", at the images' own size")
    if info["kind"] == "plain":
        line += (" (the position embedding resampled to each image's grid); a plain ViT does not dilate: a dilated "
                 "level is a pyramid level built at the finer stride")
    return line
