"""The few-shot section: prototypical episodes on one model's cached features → result rows."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data import get_dataset_spec, parse_accepted
from ..data.transforms import RESIZES
from ..evaluate.fewshot import EpisodeCfg, FewShotResult, evaluate_fewshot, shortfall
from ..exceptions import ConfigError
from ..features import get_features
from ..models import create_model
from ..results import append_rows, params_hash
from ..study import load_study
from ..task_groups import fewshot_suite
from ._common import RowStamp, check_data, parse_numbers, section_datasets
from ._record import SECTIONS, Section
from .summary import SummaryParams

__all__ = ["FewShotParams", "FewShotRun", "PROTOCOL", "run_fewshot_section", "metric_name"]

PROTOCOL = {
    "classifier": "prototypes (mean support feature per class), negative squared Euclidean distance",
    "features": "frozen, pooled, unnormalised",
    "pool": "train+val+test images of each dataset (as the paper)",
    "episodes": "classes = first n_way of a seeded permutation; shots + queries drawn without replacement",
    "interval": "1.96 · std / √episodes (the official code's)",
    "skip rule": "a dataset where any class has fewer than shots + queries images is left out of that setting",
}


@dataclass(frozen=True)
class FewShotParams:
    """Parameters of ``notebooks/fewshot.ipynb`` (its parameters cell must match these defaults)."""

    study: str = "mini"  # a name in params/ or a path to a study YAML
    model: str = "byol"  # a name in the study's zoo, paper/<name>, timm:<name>, hf-hub:<repo> or file:<path>
    dataset: str = "all"  # "all" (the study's few-shot datasets) or one dataset name
    shots: str = "5,20,50"  # comma-separated shot counts
    n_way: int = 5
    n_query: int = 15
    n_episodes: int = 600
    resize: str = "square"  # square: the official code's 257x257 resize | shorter: the paper's text
    seed: int = 0
    results_path: str = ""  # CSV to append result rows to ("" = do not record)
    data_root: str = ""  # root of real datasets ("" = $SSL_LIB_DATA or the cache)
    download: bool = False
    device: str = ""  # "" = CUDA when present, else CPU
    batch_size: int = 256  # feature extraction
    num_workers: int = 0  # DataLoader workers for feature extraction
    accept_split_sizes: str = ""  # paper datasets (comma-separated) to run even if their split sizes differ from the canonical ones


@dataclass
class FewShotRun:
    rows: pd.DataFrame
    results: dict[tuple[str, int], FewShotResult]  # (dataset, shots) → episodes' accuracies


def metric_name(n_way: int, n_shot: int) -> str:
    return f"{n_way}way-{n_shot}shot"


def pooled_features(model, dataset: str, params: FewShotParams) -> tuple[np.ndarray, np.ndarray, dict, float]:
    """Features and labels of every split of ``dataset`` concatenated (the episode pool)."""
    parts = {
        split: get_features(model, dataset, split, resize=params.resize, root=params.data_root or None,
                            download=params.download, device=params.device or None, progress=False,
                            batch_size=params.batch_size, num_workers=params.num_workers,
                            accept_sizes=dataset in parse_accepted(params.accept_split_sizes))
        for split in get_dataset_spec(dataset).splits
    }
    features = np.concatenate([p.features for p in parts.values()])
    labels = np.concatenate([p.labels for p in parts.values()])
    return features, labels, {s: p.key for s, p in parts.items()}, sum(p.seconds for p in parts.values())


def run_fewshot_section(params: FewShotParams) -> FewShotRun:
    """Every (dataset, shots) setting for ``params.model``; rows for skipped settings say why."""
    shots = parse_numbers(params.shots, "shots", int)
    if min(shots) < 1:
        raise ConfigError(f"Parameter 'shots' needs positive integers, got {params.shots!r}.")
    RESIZES.get(params.resize)
    study = load_study(params.study)
    datasets = section_datasets(study, "fewshot", params.dataset)
    checks = check_data(datasets, params.accept_split_sizes, root=params.data_root or None, download=params.download)
    model = create_model(params.model, zoo=study.zoo, device=params.device or None)
    stamp = RowStamp("fewshot", model, params.seed, params.device or None, data_checks=checks)
    rows, results = [], {}
    for name in tqdm(datasets, desc=f"fewshot · {model.cfg.name}", file=sys.stderr, mininterval=10):
        start = time.perf_counter()
        features, labels, keys, extract_seconds = pooled_features(model, name, params)
        for n_shot in shots:
            cfg = EpisodeCfg(params.n_way, n_shot, params.n_query, params.n_episodes)
            protocol = {**asdict(cfg), "resize": params.resize, "episode_seed": params.seed}
            common = dict(
                dataset=name, metric=metric_name(cfg.n_way, n_shot), protocol=metric_name(cfg.n_way, n_shot),
                train_split="(none)",
                eval_split="train+val+test episodes", n_eval=len(labels),
                protocol_params=json.dumps(protocol, sort_keys=True), hyperparams="{}",
                selected_on="(no hyperparameters)", params_hash=params_hash(protocol),
                feature_cache_key=json.dumps(keys, sort_keys=True),
            )
            reason = shortfall(labels, cfg)
            if reason is not None:
                rows.append(stamp.row(value=math.nan, extra=json.dumps({"study": study.name,
                                                        "skipped": reason}),
                                      wall_seconds=0.0, **common))
                continue
            fit_start = time.perf_counter()
            result = evaluate_fewshot(features, labels, cfg, seed=params.seed, device=params.device or None)
            results[(name, n_shot)] = result
            # the episodes depend on labels and seed only, so every model meets the same ones: paired
            outcomes = stamp.save_outcomes(params.results_path, name, common["metric"], common["params_hash"],
                                           "values", values=result.episode_accuracies)
            rows.append(stamp.row(
                value=result.accuracy, ci_low=result.accuracy - result.ci95, ci_high=result.accuracy + result.ci95,
                ci_method=f"1.96·std/√{cfg.n_episodes} over episodes",
                wall_seconds=time.perf_counter() - start,
                extra=json.dumps({"study": study.name,
                                  "episodes_seconds": time.perf_counter() - fit_start,
                                  "extract_seconds": extract_seconds}),
                outcomes=outcomes, **common,
            ))
            start = time.perf_counter()  # later settings reuse the features
    if params.results_path:
        append_rows(params.results_path, rows)
    return FewShotRun(pd.DataFrame([asdict(r) for r in rows]), results)


# The paper's two few-shot suites are separate correlation settings: "5way-20shot" on a Kornblith
# dataset is "fewshot_kornblith_20shot", on a cross-domain one "fewshot_cdfsl_20shot".
SECTIONS.add("fewshot", Section(
    "fewshot", "Few-shot", 30, FewShotParams, run_fewshot_section, reads=("fewshot",),
    tasks=("classification", "few-shot-only"),
    setting=lambda dataset, metric: f"fewshot_{fewshot_suite(dataset)}_{metric.split('-')[-1]}", summary=SummaryParams,
    choices={"resize": RESIZES},
))
