"""The attention section: occlusion saliency and attentive diffusion for the study's models → rows.

Study-level: every model is scored on the same images. The defaults are the mini study's; the
paper's protocol is :data:`PAPER_PRESET` (a 10 px mask at stride 1 over 242 px images whose maps
are cropped to 224 px).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..correlation import paper_settings, paper_source_accuracy, results_settings
from ..data import parse_accepted
from ..evaluate.attention import (
    BORDERS,
    Occlusion,
    attention_images,
    attentive_diffusion,
    fixed_pattern_share,
    image_transform,
    occlusion_saliency,
)
from ..exceptions import ConfigError
from ..models import create_model
from ..paper_tables import paper_table
from ..results import COLUMNS, append_rows, latest_rows, params_hash, read_results
from ..stats import bootstrap_ci, correlation, correlation_ci, logit
from ..study import load_study
from ._common import RowStamp, check_data, split_names
from ._record import SECTIONS, Section

__all__ = ["AttentionParams", "AttentionRun", "PROTOCOL", "PAPER_PRESET", "run_attention", "paper_diffusion",
           "diffusion_correlations", "paper_correlations"]

PROTOCOL = {
    "saliency": "occlusion of a mask x mask window (value 0 after normalisation) sliding with the given stride; "
                "score = ||f(x) - f(x_occ)|| / ||f(x)|| on pooled features; a pixel's saliency = mean score of "
                "the windows covering it (every pixel is covered (mask / stride)^2 times)",
    "attentive diffusion": "% of a map's values above its mean, averaged over images (95% bootstrap CI over images)",
    "images": "a seeded draw without replacement from the source domain's test split, the same for every model",
}
#: The paper's A.9 (and the 3rd-party saliency.py): 10 px mask, stride 1, images loaded at 242 px,
#: maps cropped to the central 224 px.
PAPER_PRESET = {"mask": 10, "stride": 1, "border": "crop"}


@dataclass(frozen=True)
class AttentionParams:
    """Parameters of ``notebooks/attention.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "all"  # "all" (the study's models), one model or a comma-separated list
    dataset: str = "mini-source"  # where the images come from (the source domain, as the paper's ImageNet)
    split: str = "test"
    n_images: int = 8  # stride 2 scores 290 occluded copies per 32 px image; stride 1 would score 1226
    # 4 px at 32 px: the paper's 10 px is ~1/3 of ResNet-50's final 32 px stride, 4 px 1/4 of the mini
    # ResNet's final 16 px stride (10/224 of 32 px, ~1.4 px, would barely move the features)
    mask: int = 4
    stride: int = 2  # the paper: 1; 2 keeps ten mini models within ~30 s on one CPU thread
    border: str = "pad"  # "pad" (32 px images exist at one size) | "crop" (the paper: load with a margin)
    seed: int = 0
    n_boot: int = 1000  # bootstrap resamples over images for the CI (0: none)
    results_path: str = ""  # CSV to append result rows to ("" = do not record); linear rows are read from it
    device: str = ""
    batch_size: int = 256  # occluded copies per forward pass
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to use even if their split sizes differ from the canonical ones


@dataclass
class AttentionRun:
    """Maps and per-image diffusion of every model, the example images and the result rows."""

    images: dict[str, torch.Tensor]  # model -> (N, 3, S, S) the images under the maps (margin cropped)
    maps: dict[str, torch.Tensor]  # model -> (N, S, S)
    diffusion: pd.DataFrame  # model, image, diffusion
    rows: pd.DataFrame
    occlusion: Occlusion


def _models(params: AttentionParams, study) -> list[str]:
    return list(study.models) if params.model == "all" else split_names(params.model)


def run_attention(params: AttentionParams) -> AttentionRun:
    """Saliency maps and attentive diffusion for each requested model; rows recorded."""
    study = load_study(params.study)
    occlusion = Occlusion(params.mask, params.stride, params.border)
    checks = check_data([params.dataset], params.accept_split_sizes, splits=(params.split,))
    device = params.device or None
    protocol = {"dataset": params.dataset, "split": params.split, "n_images": params.n_images,
                "image_seed": params.seed, **asdict(occlusion)}
    images, maps, per_image, rows = {}, {}, [], []
    loaded: dict[str, torch.Tensor] = {}
    for spec in tqdm(_models(params, study), desc="attention", file=sys.stderr, mininterval=10):
        model = create_model(spec, zoo=study.zoo, device=device)
        size = occlusion.load_size(model.cfg.input_size)
        transform = image_transform(model.cfg, occlusion)
        key = repr(transform)  # models with the same input pipeline share the images
        if key not in loaded:
            loaded[key] = attention_images(params.dataset, params.split, params.n_images, size=size,
                                           transform=transform, seed=params.seed,
                                           accept_sizes=params.dataset in parse_accepted(params.accept_split_sizes))
        start = time.perf_counter()
        sal = occlusion_saliency(model, loaded[key], occlusion, batch_size=params.batch_size)
        seconds = time.perf_counter() - start
        name = model.cfg.name
        margin = (loaded[key].shape[-1] - sal.shape[-1]) // 2
        images[name] = loaded[key][..., margin:margin + sal.shape[-1], margin:margin + sal.shape[-1]]
        maps[name] = sal
        diffusion = attentive_diffusion(sal)
        per_image += [{"model": name, "image": i, "diffusion": float(d)} for i, d in enumerate(diffusion)]
        low, high = bootstrap_ci(lambda _, d: float(np.mean(d)), diffusion, diffusion, n_boot=params.n_boot,
                                 seed=params.seed)
        stamp = RowStamp("attention", model, params.seed, device, data_checks=checks)
        outcomes = stamp.save_outcomes(params.results_path, params.dataset, "attentive_diffusion",
                                       params_hash(protocol), "values", values=diffusion)
        rows.append(stamp.row(
            dataset=params.dataset, metric="attentive_diffusion", value=float(diffusion.mean()), ci_low=low,
            ci_high=high, ci_method=f"bootstrap{params.n_boot} over images" if params.n_boot else "",
            eval_split=params.split, n_eval=params.n_images, protocol_params=json.dumps(protocol, sort_keys=True),
            params_hash=params_hash(protocol), selected_on="(no hyperparameters)", wall_seconds=seconds,
            extra=json.dumps({"study": study.name, "mask": params.mask,
                              "stride": params.stride, "n_images": params.n_images,
                              "fixed_pattern_share": fixed_pattern_share(sal),
                              "per_image": [round(float(d), 4) for d in diffusion]}),
            outcomes=outcomes,
        ))
    if params.results_path:
        append_rows(params.results_path, rows)
    return AttentionRun(images, maps, pd.DataFrame(per_image), pd.DataFrame([asdict(r) for r in rows],
                                                                            columns=COLUMNS), occlusion)


def paper_diffusion() -> pd.Series:
    """Table 9's attentive diffusion (%) per paper model."""
    table = paper_table("table9_calibration_reconstruction_attention").set_index("model")
    return table.loc[table.index != "Correlation to ImageNet", "attentive_diffusion"]


def diffusion_correlations(rows: pd.DataFrame, results_path: str, *, n_boot: int = 10000,
                           seed: int = 0) -> pd.DataFrame:
    """Pearson and Spearman across models of logit(attentive diffusion) with logit(source top-1)
    and, when ``results_path`` holds linear rows for these models, with the linear setting (the mean
    logit accuracy over datasets, as the correlation section): Table 9's 0.09 and the text's 0.38."""
    diffusion = logit(rows.set_index("model")["value"].astype(float))
    source = rows.set_index("model").source_top1.dropna().astype(float)
    against = {"source top-1": logit(source)}
    if results_path:
        linear = latest_rows(read_results(results_path), "linear")
        linear = linear[linear.model.isin(diffusion.index)]
        if linear.model.nunique() >= 3:
            try:
                settings, _ = results_settings(linear)
                against["linear (mean logit accuracy)"] = settings["linear"]
            except ConfigError:  # e.g. rows without a recorded source accuracy
                pass
    out = []
    for name, other in against.items():
        pair = pd.concat([diffusion, other], axis=1, join="inner").dropna()
        for method in ("pearson", "spearman"):
            row = {"against": name, "method": method, "n_models": len(pair), "r": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan}
            if len(pair) >= 3 and pair.iloc[:, 0].nunique() > 1 and pair.iloc[:, 1].nunique() > 1:
                x, y = pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()
                low, high = correlation_ci(x, y, method, n_boot=n_boot, seed=seed)
                row.update(r=correlation(x, y, method), ci_low=low, ci_high=high)
            out.append(row)
    return pd.DataFrame(out, columns=["against", "method", "n_models", "r", "ci_low", "ci_high"])


def paper_correlations() -> dict[str, float]:
    """The paper's Pearson r of logit(diffusion) with logit(ImageNet top-1) (Table 9: 0.09) and with
    the linear setting (mean logit accuracy, the text: 0.38), recomputed from its tables."""
    diffusion = logit(paper_diffusion())
    linear = paper_settings()["linear"].reindex(diffusion.index)
    source = logit(paper_source_accuracy().reindex(diffusion.index))
    return {"source top-1": correlation(diffusion, source),
            "linear (mean logit accuracy)": correlation(diffusion, linear)}


SECTIONS.add("attention", Section(
    "attention", "Attention", 90, AttentionParams, run_attention, per_model=False, reads=("linear",),
    tasks=("classification",), setting=lambda dataset, metric: metric if metric == "attentive_diffusion" else None,
    choices={"border": BORDERS},
))
