"""The invariances section (the follow-up paper): how much each model's features change under
synthetic transformations, and whether that predicts transfer. Study-level: all models at once."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from ..data import parse_accepted
from ..evaluate.invariance import APPEARANCE, SPATIAL, TRANSFORMS, invariance_profile
from ..models import create_model
from ..results import append_rows, latest_rows, params_hash, read_results
from ..study import load_study
from ._common import RowStamp, check_data, split_names, study_images
from ._record import SECTIONS, Section

__all__ = ["InvariancesParams", "PROTOCOL", "run_invariances", "at_size", "transfer_table"]

PROTOCOL = {
    "measure": "mean cosine similarity of whitened features, clean vs transformed (1 = invariant)",
    "whitening": "mean and inverse-covariance Cholesky factor of distinct reference images' features (ridge 1e-4 "
                 "of the mean eigenvalue); more references than feature dimensions, or the run stops",
    "distance": "Mahalanobis distance between clean and transformed features (0 = invariant)",
    "images": "drawn with replacement with a seeded generator, as the follow-up's code; resized (bilinear, "
              "antialiased) to a model's input size when it differs (e.g. a ViT built for another size)",
}


@dataclass(frozen=True)
class InvariancesParams:
    """Parameters of ``notebooks/invariances.ipynb``."""

    study: str = "mini"
    model: str = "all"  # "all" (the study's models), one model spec or a comma-separated list
    dataset: str = "mini-source"  # where the probe images come from (the source domain)
    split: str = "test"
    n_images: int = 1000  # the follow-up's code: 1000 images
    reference_split: str = "val"  # whitening statistics come from this split's images
    n_reference: int = 1000  # distinct images; must exceed the feature dimension (the paper study: 10,000)
    k: int = 8  # magnitudes per transform (2 for binary ones); the code used 256
    transforms: str = "all"  # "all" or a comma-separated list of names
    seed: int = 0
    results_path: str = ""  # rows are appended here; linear rows are read from it for the transfer plot
    device: str = ""
    batch_size: int = 256
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to use even if their split sizes differ from the canonical ones


def run_invariances(params: InvariancesParams) -> pd.DataFrame:
    """The profile (model, transform, magnitude, cosine, mahalanobis) of every model; rows recorded."""
    study = load_study(params.study)
    models = list(study.models) if params.model == "all" else split_names(params.model)
    names = list(TRANSFORMS) if params.transforms == "all" else split_names(params.transforms)
    for name in names:
        TRANSFORMS.get(name)
    checks = check_data([params.dataset], params.accept_split_sizes, splits=(params.split, params.reference_split))
    accept = params.dataset in parse_accepted(params.accept_split_sizes)
    images = study_images(study, params.dataset, params.split, params.n_images, params.seed, accept_sizes=accept)
    reference = study_images(study, params.dataset, params.reference_split, params.n_reference, params.seed + 1,
                             replace=False, accept_sizes=accept)
    device = params.device or None
    protocol = {"dataset": params.dataset, "split": params.split, "n_images": params.n_images, "k": params.k,
                "reference": f"{params.reference_split}:{params.n_reference}", "image_seed": params.seed}
    profiles, rows = [], []
    for spec in tqdm(models, desc="invariances", file=sys.stderr, mininterval=10):
        model = create_model(spec, zoo=study.zoo, device=device)
        start = time.perf_counter()
        size = model.cfg.input_size
        profile = invariance_profile(model, at_size(images, size), names, reference_images=at_size(reference, size),
                                     k=params.k, batch_size=params.batch_size, device=device)
        seconds = time.perf_counter() - start
        profiles.append(profile.assign(model=model.cfg.name))
        stamp = RowStamp("invariances", model, params.seed, device, data_checks=checks)
        means = profile.groupby("transform", sort=False)[["cosine", "mahalanobis"]].mean()
        for transform, m in means.iterrows():
            for measure in ("cosine", "mahalanobis"):
                rows.append(stamp.row(
                    dataset=params.dataset, metric=f"{measure}:{transform}", value=float(m[measure]),
                    eval_split=params.split, n_eval=params.n_images,
                    protocol_params=json.dumps(protocol, sort_keys=True),
                    params_hash=params_hash(protocol), selected_on="(no hyperparameters)",
                    wall_seconds=seconds / len(means),
                    extra=json.dumps({"study": study.name,
                                      "group": TRANSFORMS.get(transform).group}),
                ))
    if params.results_path:
        append_rows(params.results_path, rows)
    out = pd.concat(profiles, ignore_index=True)
    out["group"] = out["transform"].map(lambda n: TRANSFORMS.get(n).group)
    return out


def at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` (N, 3, H, W) at ``size`` px square: the same images for every model, each at its input size."""
    if images.shape[-2:] == (size, size):
        return images
    return TF.resize(images, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def transfer_table(params: InvariancesParams) -> pd.DataFrame:
    """The study's linear results (model, dataset, value) for the invariance-vs-transfer analysis."""
    if not params.results_path:
        return pd.DataFrame(columns=["model", "dataset", "value"])
    rows = read_results(params.results_path)
    rows = latest_rows(rows[rows.model.isin(load_study(params.study).models)], "linear")
    return rows[["model", "dataset", "value"]]


GROUPS = {"spatial": SPATIAL, "appearance": APPEARANCE}


SECTIONS.add("invariances", Section(
    "invariances", "Invariances", 70, InvariancesParams, run_invariances, per_model=False, reads=("linear",),
    tasks=("classification",),
))
