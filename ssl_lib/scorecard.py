"""The reproduction scorecard: the paper's headline findings, each tested on a study's results.

Every finding pairs the claim with two pieces of evidence computed, not typed: the paper's own
tables, and the study's results table. A finding whose section has not run says so instead of
guessing. Task groups (which downstream tasks are "like the source") are per zoo.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ._registry import Registry
from .exceptions import ConfigError
from .correlation import correlate, results_settings
from .paper_tables import paper_table
from .results import latest_rows

__all__ = ["Finding", "Verdict", "FINDINGS", "TASK_GROUPS", "scorecard"]

NOT_SSL = {"supervised", "random"}
# Tasks like the source domain and tasks far from it, as the paper splits few-shot (Kornblith vs CD-FSL).
TASK_GROUPS = {
    "mini": {"source": "mini-source", "source_like": ("mini-objects", "mini-finegrained"),
             "cross_domain": ("mini-crossdomain", "mini-colour")},
    "paper": {"source": "imagenet", "source_like": ("aircraft", "caltech101", "cars", "cifar10", "cifar100", "food",
                                                    "pets", "sun397", "dtd", "flowers"),
              "cross_domain": ("cropdiseases", "eurosat", "isic", "chestx")},
}


@dataclass(frozen=True)
class Verdict:
    status: str  # "agrees" | "disagrees" | "not run"
    evidence: str


@dataclass(frozen=True)
class Finding:
    claim: str
    paper: Callable[[], str]  # the evidence in the paper's published tables
    check: Callable[[pd.DataFrame, dict], Verdict]  # (study rows, task groups) -> verdict


FINDINGS: Registry[Finding] = Registry("finding")


def _latest(rows: pd.DataFrame, section: str, metric: str | None = None) -> pd.DataFrame:
    rows = latest_rows(rows, section)
    return rows if metric is None else rows[rows.metric == metric]


def _ssl_vs_supervised(rows: pd.DataFrame, datasets=None) -> tuple[list[str], list[str]] | None:
    """Datasets where the best self-supervised model beats supervised, and where it does not."""
    wide = rows.pivot_table(index="model", columns="dataset", values="value")
    if datasets is not None:
        wide = wide[[d for d in datasets if d in wide.columns]]
    ssl = [m for m in wide.index if m not in NOT_SSL]
    if "supervised" not in wide.index or not ssl or wide.shape[1] == 0:
        return None
    wins = wide.loc[ssl].max() > wide.loc["supervised"]
    return list(wins[wins].index), list(wins[~wins].index)


def _paper_wins(table: str, columns=None) -> tuple[int, int, list[str]]:
    t = paper_table(table).set_index("model")
    cols = [c for c in t.columns if not c.endswith("_ci") and c not in ("imagenet_top1", "avg")]
    cols = [c for c in cols if columns is None or c in columns]
    wins = t.drop(index="Supervised")[cols].max() > t.loc["Supervised", cols]
    return int(wins.sum()), len(cols), list(wins[~wins].index)


def _many_shot(section: str, table: str, most: bool = True) -> Finding:
    def paper() -> str:
        won, n, lost = _paper_wins(table)
        return f"best SSL > supervised on {won} of {n} datasets (not on {', '.join(lost) or 'none'})"

    def check(rows, groups) -> Verdict:
        data = _latest(rows, section)
        data = data[data.dataset != groups["source"]]
        result = _ssl_vs_supervised(data)
        if result is None:
            return Verdict("not run", f"no {section} results for supervised and SSL models")
        won, lost = result
        agrees = len(won) > len(lost)
        return Verdict("agrees" if agrees else "disagrees",
                       f"best SSL > supervised on {len(won)} of {len(won) + len(lost)} tasks"
                       + (f" (not on {', '.join(lost)})" if lost else ""))

    return Finding(f"The best self-supervised model beats supervised pretraining on most {section} tasks.",
                   paper, check)


FINDINGS.add("linear", _many_shot("linear", "table1_linear"))
FINDINGS.add("finetune", _many_shot("finetune", "table1_finetune"))


def _fewshot(group: str, table: str, supervised_wins: bool) -> Finding:
    who = "supervised" if supervised_wins else "the best self-supervised model"

    def paper() -> str:
        won, n, lost = _paper_wins(table)
        return (f"supervised ≥ best SSL on {n - won} of {n} datasets" if supervised_wins
                else f"best SSL > supervised on {won} of {n} datasets")

    def check(rows, groups) -> Verdict:
        data = _latest(rows, "fewshot", "5way-20shot")
        result = _ssl_vs_supervised(data, groups[group])
        if result is None:
            return Verdict("not run", "no 20-shot results on these tasks")
        won, lost = result
        n = len(won) + len(lost)
        agrees = (len(lost) > n / 2) if supervised_wins else (len(won) > n / 2)
        count = f"supervised ≥ best SSL on {len(lost)} of {n}" if supervised_wins else f"best SSL > supervised on {len(won)} of {n}"
        return Verdict("agrees" if agrees else "disagrees", f"{count} ({', '.join(groups[group])})")

    where = "tasks like the source domain" if group == "source_like" else "cross-domain tasks"
    return Finding(f"In 5-way 20-shot recognition on {where}, {who} wins.", paper, check)


FINDINGS.add("fewshot-source-like", _fewshot("source_like", "table2_fewshot_kornblith_5w20s", supervised_wins=True))
FINDINGS.add("fewshot-cross-domain", _fewshot("cross_domain", "table3_fewshot_cdfsl_5w20s", supervised_wins=False))


def _paper_correlation() -> str:
    from .correlation import paper_settings, paper_source_accuracy

    corr = correlate(paper_settings()[["linear"]], paper_source_accuracy(), methods=("pearson",), n_boot=2000)
    r = corr.iloc[0]
    return f"Pearson r = {r.r:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] over 14 models (recomputed)"


def _check_correlation(rows, groups) -> Verdict:
    linear = _latest(rows, "linear")
    if linear.model.nunique() < 3:
        return Verdict("not run", "fewer than 3 models with linear results")
    settings, source = results_settings(linear)
    r = correlate(settings[["linear"]], source, methods=("pearson",), n_boot=2000).iloc[0]
    return Verdict("agrees" if r.ci_low > 0 else "disagrees",
                   f"Pearson r = {r.r:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] over {r.n_models} models")


FINDINGS.add("correlation", Finding(
    "Source (ImageNet) accuracy predicts many-shot linear transfer across models.",
    _paper_correlation, _check_correlation))


def _group_means(rows: pd.DataFrame) -> pd.DataFrame | None:
    inv = _latest(rows, "invariances")
    inv = inv[inv.metric.str.startswith("cosine:")]
    if inv.empty:
        return None
    inv = inv.assign(group=[json.loads(e).get("group") for e in inv.extra])
    return inv.pivot_table(index="model", columns="group", values="value")


def _check_invariances(rows, groups) -> Verdict:
    means = _group_means(rows)
    crop, colour = "moco-v2-crop-only", "moco-v2-colour-only"
    if means is None or not {crop, colour} <= set(means.index):
        return Verdict("not run", "no invariance results for the augmentation ablations")
    spatial = means.loc[crop, "spatial"] > means.loc[colour, "spatial"]
    appearance = means.loc[colour, "appearance"] > means.loc[crop, "appearance"]
    return Verdict("agrees" if spatial and appearance else "disagrees",
                   f"spatial invariance crop-only {means.loc[crop, 'spatial']:.3f} vs colour-only "
                   f"{means.loc[colour, 'spatial']:.3f}; appearance invariance colour-only "
                   f"{means.loc[colour, 'appearance']:.3f} vs crop-only {means.loc[crop, 'appearance']:.3f}")


FINDINGS.add("invariances", Finding(
    "Contrastive models learn invariance to the augmentations they are trained with (follow-up paper).",
    lambda: "shown for MoCo-v2 trained with spatial-only vs appearance-only augmentations (no table)",
    _check_invariances))


def _check_colour_task(rows, groups) -> Verdict:
    linear = _latest(rows, "linear").pivot_table(index="model", columns="dataset", values="value")
    crop, colour, task = "moco-v2-crop-only", "moco-v2-colour-only", "mini-colour"
    if task not in linear.columns or not {crop, colour} <= set(linear.index):
        return Verdict("not run", "no linear results for the ablations on the colour task")
    a, b = linear.loc[crop, task], linear.loc[colour, task]
    return Verdict("agrees" if a > b else "disagrees",
                   f"on {task}: crop-only {a:.1f} vs colour-only {b:.1f} (trained to ignore colour)")


FINDINGS.add("colour-invariance-hurts", Finding(
    "Colour-augmentation invariance hurts tasks that need colour (follow-up paper; the paper's ISIC result).",
    lambda: "the follow-up's dorsal/ventral models; colour-jittered SSL models trail on ISIC (Table 3)",
    _check_colour_task))


def _check_retention(rows, groups) -> Verdict:
    ret = _latest(rows, "retention", "colour_mse_mean")
    ssl = ret[~ret.model.isin(NOT_SSL)]
    if "supervised" not in set(ret.model) or ssl.empty:
        return Verdict("not run", "no retention results")
    sup = float(ret[ret.model == "supervised"].value.iloc[0])
    better = int((ssl.value > sup).sum())
    return Verdict("agrees" if better > len(ssl) / 2 else "disagrees",
                   f"supervised colour error {sup:.0f} is below {better} of {len(ssl)} SSL models'")


def _paper_retention() -> str:
    t = _table("table9_calibration_reconstruction_attention")
    mean = t[["colour_mse_red", "colour_mse_green", "colour_mse_blue"]].mean(axis=1)
    below = int((mean.drop(index="Supervised") > mean["Supervised"]).sum())
    return f"supervised mean colour MSE {mean['Supervised']:.0f} is below {below} of 13 SSL models'"


FINDINGS.add("colour-retention", Finding(
    "Supervised features keep more colour information than self-supervised ones (feature inversion).",
    _paper_retention, _check_retention))


def _table(name: str) -> pd.DataFrame:
    t = paper_table(name).set_index("model")
    return t.drop(index=[i for i in t.index if i.startswith("Correlation")])


def _by_model(rows: pd.DataFrame, section: str, metric: str) -> pd.Series:
    """The latest value of ``metric`` per model, averaged over datasets."""
    return _latest(rows, section, metric).groupby("model")["value"].mean()


def _detection_paper() -> str:
    t = _table("table4_detection_voc")
    parts = []
    for setting in ("frozen", "finetune"):
        col = t[f"{setting}_AP50"]
        parts.append(f"{setting}: best SSL {col.drop(index='Supervised').max():.2f} vs supervised {col['Supervised']:.2f}")
    return "AP50 " + "; ".join(parts)


def _check_detection(rows, groups) -> Verdict:
    parts, wins = [], []
    for setting in ("frozen", "finetune"):
        ap = _by_model(rows, "detection", f"{setting}_AP50")
        ssl = ap[[m for m in ap.index if m not in NOT_SSL]]
        if "supervised" not in ap.index or ssl.empty:
            continue
        wins.append(ssl.max() > ap["supervised"])
        parts.append(f"{setting}: best SSL ({ssl.idxmax()}) {ssl.max():.1f} vs supervised {ap['supervised']:.1f}")
    if not parts:
        return Verdict("not run", "no detection results for supervised and SSL models")
    return Verdict("agrees" if all(wins) else "disagrees", "AP50 " + "; ".join(parts))


FINDINGS.add("detection", Finding(
    "The best self-supervised model beats supervised pretraining on detection (AP50), frozen and fine-tuned.",
    _detection_paper, _check_detection))


def _check_normals(rows, groups) -> Verdict:
    err = _by_model(rows, "dense", "sn_mean_err")
    ssl = err[[m for m in err.index if m not in NOT_SSL]]
    if "supervised" not in err.index or ssl.empty:
        return Verdict("not run", "no surface-normal results for supervised and SSL models")
    return Verdict("agrees" if ssl.min() < err["supervised"] else "disagrees",
                   f"mean angular error: best SSL ({ssl.idxmin()}) {ssl.min():.1f}° vs supervised {err['supervised']:.1f}°")


def _normals_paper() -> str:
    col = _table("table5_dense")["sn_mean_err"]
    return f"mean angular error: best SSL {col.drop(index='Supervised').min():.2f}° vs supervised {col['Supervised']:.2f}°"


FINDINGS.add("normals", Finding(
    "The best self-supervised model predicts surface normals better than supervised pretraining.",
    _normals_paper, _check_normals))


def _rank_text(values: pd.Series, model: str, higher_is_better: bool = True) -> tuple[int, int]:
    ranks = values.rank(ascending=not higher_is_better, method="min")
    return int(ranks[model]), len(values)


def _check_segmentation(rows, groups) -> Verdict:
    miou = _by_model(rows, "dense", "seg_mean_iou").drop(index=[m for m in ("random",)], errors="ignore")
    if "supervised" not in miou.index or len(miou) < 3:
        return Verdict("not run", "no segmentation results for supervised and at least 2 SSL models")
    rank, n = _rank_text(miou, "supervised")
    return Verdict("agrees" if rank > n / 2 else "disagrees",
                   f"supervised mIoU {miou['supervised']:.3f} ranks {rank} of {n} pretrained models")


def _segmentation_paper() -> str:
    col = _table("table5_dense")["seg_mean_iou"]
    rank, n = _rank_text(col, "Supervised")
    return f"supervised mIoU {col['Supervised']:.4f} ranks {rank} of {n} (but see the weight-loading caveat)"


FINDINGS.add("segmentation", Finding(
    "Supervised pretraining is among the worst on semantic segmentation.",
    _segmentation_paper, _check_segmentation))


def _paper_calibration() -> str:
    row = paper_table("table9_calibration_reconstruction_attention").set_index("model").loc["Correlation to ImageNet"]
    return f"Pearson r of linear ECE with ImageNet accuracy = {row['ece_linear_unscaled']:.2f} (Table 9, printed)"


def _check_calibration(rows, groups) -> Verdict:
    ece = _latest(rows, "calibration", "ece_linear_unscaled")
    if ece.model.nunique() < 3:
        return Verdict("not run", "fewer than 3 models with linear calibration results")
    settings, source = results_settings(ece)
    r = correlate(settings[["ece_linear_unscaled"]], source, methods=("pearson",), n_boot=2000).iloc[0]
    return Verdict("agrees" if r.ci_high < 0 else "disagrees",
                   f"Pearson r of linear ECE with source accuracy = {r.r:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] "
                   f"over {r.n_models} models")


FINDINGS.add("calibration", Finding(
    "Models with higher source accuracy are better calibrated (lower ECE of the linear classifier).",
    _paper_calibration, _check_calibration))


def _paper_attention() -> str:
    col = _table("table9_calibration_reconstruction_attention")["attentive_diffusion"]
    higher = int((col.drop(index="Supervised") > col["Supervised"]).sum())
    return f"supervised attentive diffusion {col['Supervised']:.2f}% is below {higher} of 13 SSL models'"


def _check_attention(rows, groups) -> Verdict:
    diff = _by_model(rows, "attention", "attentive_diffusion")
    ssl = diff[[m for m in diff.index if m not in NOT_SSL]]
    if "supervised" not in diff.index or ssl.empty:
        return Verdict("not run", "no attention results for supervised and SSL models")
    higher = int((ssl > diff["supervised"]).sum())
    return Verdict("agrees" if higher > len(ssl) / 2 else "disagrees",
                   f"supervised attentive diffusion {diff['supervised']:.1f}% is below {higher} of {len(ssl)} SSL models'")


FINDINGS.add("attention", Finding(
    "Supervised features attend to a smaller part of the image (lower attentive diffusion).",
    _paper_attention, _check_attention))


def scorecard(rows: pd.DataFrame, zoo: str) -> pd.DataFrame:
    """One row per finding: the claim, the paper's evidence, this study's verdict and evidence."""
    groups = TASK_GROUPS.get(zoo, TASK_GROUPS["mini"])
    out = []
    for key, finding in FINDINGS.items():
        try:
            verdict = finding.check(rows, groups)
        except ConfigError as err:  # e.g. too few models, or a constant source accuracy
            verdict = Verdict("not run", str(err))
        out.append({"finding": key, "claim": finding.claim, "paper": finding.paper(),
                    "status": verdict.status, "evidence": verdict.evidence})
    return pd.DataFrame(out)
