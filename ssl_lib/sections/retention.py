"""The retention section: what frozen features keep about the image. Study-level.

Two readouts: feature inversion (reconstruct an image from its last feature map with a
Deep Image Prior: a ResNet's layer4, a ConvNeXt's last stage, a ViT's last-block token grid; then measure per-channel colour error and a perceptual distance, as the
paper's §4.9 and Table 9) and linear probes (cross-validated R² of a ridge regression from
pooled features to colour and position attributes of source-domain images).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import get_dataset_spec, open_split, parse_accepted
from ..evaluate.invariance import image_features
from ..evaluate.retention import (
    GENERATORS,
    PERCEPTUAL_NETS,
    attribute_probe,
    feature_map,
    feature_map_kind,
    image_attributes,
    perceptual_net,
    retention_table,
)
from ..exceptions import ConfigError
from ..features import get_features
from ..models import FeatureModel, create_model, get_model_cfg, require_multiscale
from ..results import append_rows, params_hash
from ..study import load_study
from ._common import RowStamp, check_data, section_datasets, split_names, study_images
from ._record import SECTIONS, Section

__all__ = ["RetentionParams", "RetentionRun", "PROTOCOL", "generator_name", "run_device", "model_images", "run_retention"]

PROTOCOL = {
    "inversion": "Deep Image Prior: a skip generator from fixed seeded noise (the paper study: the paper's six-scale "
                 "net, 16-128 channels, kernels 7-3; the mini study: three scales for 32 px), Adam lr 1e-3, "
                 "matching the frozen last feature map before pooling (MSE: ResNets layer4, hierarchical models their "
                 "last stage, ViTs the last block's tokens after the final norm as a grid, cls token dropped), on the "
                 "run's device; a ViT, whose position embedding fixes its grid, inverts the images resized to its "
                 "input size",
    "colour error": "per-channel MSE between image and reconstruction, 0-255 units (Table 9's)",
    "perceptual": "LPIPS (lpips-alex, lpips-vgg, lpips-squeeze: the optional lpips extra, online on first use) "
                  "in the paper study; offline, an LPIPS-style distance through a fixed random-init network "
                  "(random-vgg), which is not LPIPS",
    "probes": "ridge regression from pooled features, 5-fold cross-validated R² (seeded folds)",
}


@dataclass(frozen=True)
class RetentionParams:
    """Parameters of ``notebooks/retention.ipynb``."""

    study: str = "mini"
    model: str = "all"  # "all" (the study's models), one model spec or a comma-separated list
    dataset: str = "all"  # images to invert: one per dataset of the section ("all") or one dataset
    images_per_dataset: int = 1  # the paper: one image from each of its 15 datasets
    steps: int = 3000  # inversion steps (the paper: 3000)
    generator: str = ""  # "paper" (six scales, the paper's DIP net) or "mini" (three, 32 px); "" = by zoo
    perceptual_net: str = "random-vgg"  # random-vgg | lpips-alex | lpips-vgg | lpips-squeeze (the lpips extra)
    probe_dataset: str = "mini-source"  # images whose attributes the probes read out
    probe_split: str = "test"
    n_probe: int = 1000  # probe images sampled from a dataset on disk (in-memory ones are used whole)
    seed: int = 0
    results_path: str = ""
    device: str = ""  # "" = CUDA when present, else CPU
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to use even if their split sizes differ from the canonical ones


@dataclass
class RetentionRun:
    table: pd.DataFrame  # one row per model and image
    probes: pd.DataFrame  # one row per model and attribute
    images: torch.Tensor  # the originals
    reconstructions: dict[str, torch.Tensor] = field(default_factory=dict)
    generator: str = ""  # the inversion generator that ran ("mini" | "paper")
    device: str = ""  # where it ran
    targets: dict[str, dict] = field(default_factory=dict)  # model → what was inverted (layer, kind, shape)


def generator_name(params: RetentionParams, zoo: str) -> str:
    """The inversion generator: the parameter, else "mini" for the mini zoo and "paper" otherwise."""
    name = params.generator or ("mini" if zoo == "mini" else "paper")
    GENERATORS.get(name)
    return name


def run_device(params: RetentionParams) -> str:
    """The run's device: the parameter, else CUDA when present, else CPU."""
    if params.device:
        return params.device
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _threads(n: int):
    """The mini generator runs thousands of tiny steps: on CPU one thread beats two (2.9 s vs 4.3 s
    for 4 mini images x 50 steps), as thread hand-offs cost more than the small convolutions. The
    paper's net at 224 px is no tiny problem and keeps every thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_images(model: FeatureModel, images: torch.Tensor) -> torch.Tensor:
    """The images at a size ``model`` takes: a ViT's position embedding fixes its grid, so it gets them
    resized (bilinear, antialiased) to its input size; any other backbone takes them as they are."""
    embed = getattr(model.backbone, "patch_embed", None)
    size = tuple(getattr(embed, "img_size", None) or ())
    if not getattr(embed, "strict_img_size", False) or not size or tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _inversion_images(params: RetentionParams, study) -> tuple[torch.Tensor, list[str]]:
    names = section_datasets(study, "retention", params.dataset)
    accepted = parse_accepted(params.accept_split_sizes)
    images = [study_images(study, name, "test", params.images_per_dataset, params.seed, accept_sizes=name in accepted)
              for name in names]
    labels = [name for name in names for _ in range(params.images_per_dataset)]
    return torch.cat(images), labels


def _probe_images(params: RetentionParams, study) -> torch.Tensor | None:
    """The probe's images when they are not held in memory (the paper study): ``n_probe`` sampled
    once, shared by every model. None for in-memory data, whose cached features are used whole."""
    if get_dataset_spec(params.probe_dataset).zoo == "mini":
        return None
    return study_images(study, params.probe_dataset, params.probe_split, params.n_probe, params.seed,
                        accept_sizes=params.probe_dataset in parse_accepted(params.accept_split_sizes))


def run_retention(params: RetentionParams) -> RetentionRun:
    perceptual_net(params.perceptual_net)  # unknown, not installed or not downloadable: fail before inverting
    study = load_study(params.study)
    generator, device = generator_name(params, study.zoo), run_device(params)
    try:
        device_type = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"device {params.device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'.") from None
    models = list(study.models) if params.model == "all" else split_names(params.model)
    for spec in models:  # before any inversion starts
        require_multiscale(get_model_cfg(spec, zoo=study.zoo), "retention")
    checks = check_data(section_datasets(study, "retention", params.dataset), params.accept_split_sizes, splits=("test",))
    checks.update(check_data([params.probe_dataset], params.accept_split_sizes, splits=(params.probe_split,)))
    images, sources = _inversion_images(params, study)
    probe_images = _probe_images(params, study)
    if probe_images is None:
        probe_images = open_split(params.probe_dataset, params.probe_split).images
    attributes = image_attributes(probe_images)
    protocol = {"steps": params.steps, "generator": generator, "perceptual_net": params.perceptual_net,
                "images": sources, "probe": f"{params.probe_dataset}/{params.probe_split}", "seed": params.seed}
    tables, probes, recons, rows, targets = [], [], {}, [], {}
    for spec in tqdm(models, desc="retention", file=sys.stderr, mininterval=10):
        model = create_model(spec, zoo=study.zoo, device=device)
        start = time.perf_counter()
        inputs = model_images(model, images)
        with torch.no_grad():
            target = {"layer": model.cfg.feature_layer, "kind": feature_map_kind(model.backbone),
                      "shape": list(feature_map(model, inputs[:1].to(device)).shape[1:]),
                      "image_size": list(inputs.shape[-2:])}
        with _threads(1) if device_type == "cpu" and generator == "mini" else nullcontext():
            result = retention_table(model, inputs, steps=params.steps, seed=params.seed, net=params.perceptual_net,
                                     generator=GENERATORS.get(generator))
        name = model.cfg.name
        targets[name] = target
        tables.append(result.table.assign(model=name, dataset=sources))
        recons[name] = result.reconstructions
        if get_dataset_spec(params.probe_dataset).zoo == "mini":
            feats = get_features(model, params.probe_dataset, params.probe_split, device=device, progress=False)
            probe_features, cache_key = feats.features, feats.key
        else:
            probe_features, cache_key = image_features(model, probe_images, device=device).numpy(), ""
        r2 = {attr: attribute_probe(probe_features, attributes[attr].to_numpy(), seed=params.seed)
              for attr in attributes.columns}
        probes.append(pd.DataFrame({"model": name, "attribute": list(r2), "r2": list(r2.values())}))
        seconds = time.perf_counter() - start
        stamp = RowStamp("retention", model, params.seed, device, data_checks=checks)
        t = result.table
        values = {"colour_mse_red": t.mse_red.mean(), "colour_mse_green": t.mse_green.mean(),
                  "colour_mse_blue": t.mse_blue.mean(),
                  "colour_mse_mean": float(np.mean([t.mse_red.mean(), t.mse_green.mean(), t.mse_blue.mean()])),
                  f"perceptual_{params.perceptual_net}": t.perceptual.mean(),
                  **{f"probe_r2:{a}": v for a, v in r2.items()}}
        colour_error = np.mean([t.mse_red, t.mse_green, t.mse_blue], axis=0)  # per inverted image
        outcomes = stamp.save_outcomes(params.results_path, ",".join(sources), "colour_mse_mean",
                                       params_hash(protocol), "values", values=colour_error)
        for metric, value in values.items():
            probe = metric.startswith("probe_r2")
            rows.append(stamp.row(
                dataset=params.probe_dataset if probe else ",".join(dict.fromkeys(sources)), metric=metric,
                value=float(value), protocol="ridge probe" if probe else "inversion",
                eval_split=params.probe_split if probe else "test",
                n_eval=len(attributes) if probe else len(images),
                protocol_params=json.dumps(protocol, sort_keys=True), params_hash=params_hash(protocol),
                selected_on="(ridge alpha by inner CV)" if probe else "(no hyperparameters)",
                feature_cache_key=cache_key if probe else "", wall_seconds=seconds / len(values),
                data_check=checks[params.probe_dataset] if probe else "; ".join(
                    f"{d}: {checks[d]}" for d in dict.fromkeys(sources) if checks.get(d)),
                extra=json.dumps({"study": study.name, **({} if probe else {"inversion_target": target})}),
                outcomes=outcomes if metric == "colour_mse_mean" else "",
            ))
    if params.results_path:
        append_rows(params.results_path, rows)
    return RetentionRun(pd.concat(tables, ignore_index=True), pd.concat(probes, ignore_index=True), images, recons,
                        generator, device, targets)


SECTIONS.add("retention", Section(
    "retention", "Retention", 80, RetentionParams, run_retention, per_model=False,
    tasks=("classification", "multilabel", "few-shot-only"),
    choices={"generator": GENERATORS, "perceptual_net": PERCEPTUAL_NETS},
))
