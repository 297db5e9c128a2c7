"""The reproduction scorecard: the paper's headline findings, each tested on a study's results.

Every finding pairs the claim with two pieces of evidence computed, not typed: the paper's own
tables, and the study's results. Each study verdict is decided by a stated rule
(:mod:`ssl_lib.verdicts`): "A beats B" by paired bootstrap intervals over the same test images or
episodes, correlations by compatibility with the paper's interval. A finding whose section has
not run says so instead of guessing. Task groups (which tasks are "like the source") are per zoo.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ._registry import Registry
from .correlation import correlate, paper_settings, paper_source_accuracy, results_settings
from .exceptions import ConfigError
from .paper_tables import paper_table
from .results import latest_rows
from .stats import correlation, correlation_ci, logit
from .task_groups import TASK_GROUPS
from .verdicts import (AGREES, COMPATIBLE_RULE, DISAGREES, INCONCLUSIVE, MAJORITY_RULE, NOT_RUN, Comparer, Tally,
                       Verdict, compatible, majority)

__all__ = ["Finding", "Verdict", "Context", "FINDINGS", "TASK_GROUPS", "NOT_SSL", "scorecard", "study_verdicts"]

NOT_SSL = {"supervised", "random"}


@dataclass(frozen=True)
class Context:
    """What a check reads: the study's rows, its task groups, and the paired comparer."""

    rows: pd.DataFrame
    groups: dict
    compare: Comparer


@dataclass(frozen=True)
class Finding:
    claim: str
    paper: Callable[[], str]  # the evidence in the paper's published tables
    check: Callable[[Context], Verdict]


FINDINGS: Registry[Finding] = Registry("finding")


# ------------------------------------------------------------------------------------ helpers
def _latest(rows: pd.DataFrame, section: str, metric: str | None = None) -> pd.DataFrame:
    rows = latest_rows(rows, section)
    rows = rows if metric is None else rows[rows.metric == metric]
    return rows[pd.to_numeric(rows.value, errors="coerce").notna()]


def _table(name: str) -> pd.DataFrame:
    t = paper_table(name).set_index("model")
    return t.drop(index=[i for i in t.index if i.startswith("Correlation")])


def _ssl(models) -> list[str]:
    return [m for m in models if m not in NOT_SSL]


def _no_outcomes(ctx: Context, data: pd.DataFrame) -> Verdict | None:
    missing = ctx.compare.missing(data)
    if missing:
        return Verdict(NOT_RUN, f"no per-example outcomes for {', '.join(missing)} (rows from an older run; "
                                "re-run the section)", ctx.compare.rule)
    return None


def _paired_verdict(ctx: Context, tally: Tally, what: str, rule: str = MAJORITY_RULE, status=None) -> Verdict:
    return Verdict(status or majority(tally), f"{what}: {tally.describe()}", f"{ctx.compare.rule}; {rule}")


def _paper_wins(table: str, model: str | None = None) -> tuple[int, int, list[str]]:
    """Datasets where the best SSL model (or ``model``) is above supervised, from the printed table."""
    t = _table(table)
    cols = [c for c in t.columns if not c.endswith("_ci") and c not in ("imagenet_top1", "avg")]
    ssl = t.drop(index="Supervised")[cols]
    best = ssl.loc[model] if model is not None else ssl.max()
    wins = best > t.loc["Supervised", cols]
    return int(wins.sum()), len(cols), list(wins[~wins].index)


# ------------------------------------------------------------------------- many-shot and few-shot
def _best_vs_supervised(ctx: Context, data: pd.DataFrame, single: bool, supervised_wins: bool = False):
    """``(tally, chosen model or None)`` or ``None`` when supervised or SSL rows are missing."""
    wide = data.pivot_table(index="model", columns="dataset", values="value")
    ssl = _ssl(wide.index)
    if "supervised" not in wide.index or not ssl or wide.shape[1] == 0:
        return None
    by_key = {(r.model, r.dataset): r for r in data.itertuples(index=False)}
    single_model = wide.loc[ssl].mean(axis=1).idxmax() if single else None
    pairs = []
    for dataset in wide.columns:
        best = single_model or wide.loc[ssl, dataset].idxmax()
        if (best, dataset) not in by_key or ("supervised", dataset) not in by_key:
            continue
        ssl_row, sup_row = pd.Series(by_key[(best, dataset)]._asdict()), pd.Series(by_key[("supervised", dataset)]._asdict())
        label = dataset if single else f"{dataset} ({best})"
        pairs.append((label, sup_row, ssl_row) if supervised_wins else (label, ssl_row, sup_row))
    return ctx.compare.tally(pairs), single_model


def _many_shot(section: str, table: str, single: bool) -> Finding:
    def paper() -> str:
        if single:
            avg = _table(table).drop(index="Supervised")["avg"]
            won, n, lost = _paper_wins(table, avg.idxmax())
            return f"{avg.idxmax()} (best SSL on average) > supervised on {won} of {n} datasets"
        won, n, lost = _paper_wins(table)
        return f"best SSL > supervised on {won} of {n} datasets (not on {', '.join(lost) or 'none'})"

    def check(ctx: Context) -> Verdict:
        data = _latest(ctx.rows, section)
        data = data[data.dataset != ctx.groups["source"]]
        if (blocked := _no_outcomes(ctx, data)) is not None and not data.empty:
            return blocked
        result = _best_vs_supervised(ctx, data, single)
        if result is None:
            return Verdict(NOT_RUN, f"no {section} results for supervised and SSL models")
        tally, model = result
        return _paired_verdict(ctx, tally, f"{model} − supervised" if single else "best SSL − supervised per task")

    who = "the single self-supervised model that is best on average" if single else "the best self-supervised model"
    return Finding(f"{who[0].upper()}{who[1:]} beats supervised pretraining on most {section} tasks.", paper, check)


FINDINGS.add("linear", _many_shot("linear", "table1_linear", single=False))
FINDINGS.add("linear-single-model", _many_shot("linear", "table1_linear", single=True))
FINDINGS.add("finetune", _many_shot("finetune", "table1_finetune", single=False))
FINDINGS.add("finetune-single-model", _many_shot("finetune", "table1_finetune", single=True))


def _fewshot(group: str, table: str, supervised_wins: bool) -> Finding:
    who = "supervised" if supervised_wins else "the best self-supervised model"

    def paper() -> str:
        won, n, _ = _paper_wins(table)
        return (f"supervised ≥ best SSL on {n - won} of {n} datasets" if supervised_wins
                else f"best SSL > supervised on {won} of {n} datasets")

    def check(ctx: Context) -> Verdict:
        data = _latest(ctx.rows, "fewshot", "5way-20shot")
        data = data[data.dataset.isin(ctx.groups[group])]
        if (blocked := _no_outcomes(ctx, data)) is not None and not data.empty:
            return blocked
        result = _best_vs_supervised(ctx, data, single=False, supervised_wins=supervised_wins)
        if result is None:
            return Verdict(NOT_RUN, "no 20-shot results on these tasks")
        what = "supervised − best SSL per task" if supervised_wins else "best SSL − supervised per task"
        return _paired_verdict(ctx, result[0], what)

    where = "tasks like the source domain" if group == "source_like" else "cross-domain tasks"
    return Finding(f"In 5-way 20-shot recognition on {where}, {who} wins.", paper, check)


FINDINGS.add("fewshot-source-like", _fewshot("source_like", "table2_fewshot_kornblith_5w20s", supervised_wins=True))
FINDINGS.add("fewshot-cross-domain", _fewshot("cross_domain", "table3_fewshot_cdfsl_5w20s", supervised_wins=False))


# ----------------------------------------------------------------------------------- correlations
def _interval(r: pd.Series) -> str:
    return f"r = {r.r:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] over {r.n_models} models"


def _correlation_verdict(rows: pd.DataFrame, setting: str, paper: tuple[float, float, float], what: str) -> Verdict:
    """Compatibility of the study's Pearson r with the paper's, decided without ``random`` (the paper
    had no random model) and reported with it too."""
    out = {}
    for label, subset in (("without random", rows[rows.model != "random"]), ("with random", rows)):
        if subset.model.nunique() < 3:
            continue
        settings, source = results_settings(subset)
        out[label] = correlate(settings[[setting]], source, methods=("pearson",), n_boot=2000).iloc[0]
    if "without random" not in out:
        return Verdict(NOT_RUN, "fewer than 3 models (random excluded) with results", COMPATIBLE_RULE)
    r = out["without random"]
    status = compatible((r.r, r.ci_low, r.ci_high), paper)
    evidence = f"{what}: " + "; ".join(f"{label} {_interval(v)}" for label, v in out.items())
    return Verdict(status, evidence + f"; paper {paper[0]:.2f} [{paper[1]:.2f}, {paper[2]:.2f}]", COMPATIBLE_RULE)


def _paper_linear_correlation() -> tuple[float, float, float]:
    r = correlate(paper_settings()[["linear"]], paper_source_accuracy(), methods=("pearson",), n_boot=2000).iloc[0]
    return float(r.r), float(r.ci_low), float(r.ci_high)


def _paper_calibration_correlation() -> tuple[float, float, float]:
    """Pearson r of logit(ECE %) with logit(ImageNet top-1) over Table 9's 14 models, CI over models."""
    t = _table("table9_calibration_reconstruction_attention")
    x, y = logit(paper_source_accuracy().reindex(t.index)), logit(t["ece_linear_unscaled"])
    low, high = correlation_ci(x, y, "pearson", n_boot=2000)
    return correlation(x, y), low, high


FINDINGS.add("correlation", Finding(
    "Source (ImageNet) accuracy predicts many-shot linear transfer across models.",
    lambda: "Pearson r = {:.2f} [{:.2f}, {:.2f}] over 14 models (recomputed)".format(*_paper_linear_correlation()),
    lambda ctx: (_correlation_verdict(_latest(ctx.rows, "linear"), "linear", _paper_linear_correlation(),
                                      "Pearson r of logit linear score with logit source accuracy")
                 if _latest(ctx.rows, "linear").model.nunique() >= 3
                 else Verdict(NOT_RUN, "fewer than 3 models with linear results", COMPATIBLE_RULE)),
))

FINDINGS.add("calibration", Finding(
    "Models with higher source accuracy are better calibrated (lower ECE of the linear classifier).",
    lambda: "Pearson r of linear ECE with ImageNet accuracy = {:.2f} [{:.2f}, {:.2f}] (Table 9, recomputed; "
            "printed -0.77)".format(*_paper_calibration_correlation()),
    lambda ctx: (_correlation_verdict(_latest(ctx.rows, "calibration", "ece_linear_unscaled"), "ece_linear_unscaled",
                                      _paper_calibration_correlation(), "Pearson r of logit linear ECE with logit "
                                      "source accuracy")
                 if _latest(ctx.rows, "calibration", "ece_linear_unscaled").model.nunique() >= 3
                 else Verdict(NOT_RUN, "fewer than 3 models with linear calibration results", COMPATIBLE_RULE)),
))


# --------------------------------------------------------------------- one model against another
def _rows_by_model(data: pd.DataFrame) -> dict[str, pd.Series]:
    return {r.model: pd.Series(r._asdict()) for r in data.itertuples(index=False)}


def _against_supervised(ctx: Context, data: pd.DataFrame, metric: str | None, ssl_higher: bool, what: str,
                        absent: str) -> Verdict:
    """Every SSL model against supervised on one quantity; wins are SSL models on the claimed side."""
    by_model = _rows_by_model(data)
    ssl = _ssl(by_model)
    if "supervised" not in by_model or not ssl:
        return Verdict(NOT_RUN, absent)
    if (blocked := _no_outcomes(ctx, data)) is not None:
        return blocked
    pairs = [(m, by_model[m], by_model["supervised"]) for m in ssl]
    return _paired_verdict(ctx, ctx.compare.tally(pairs, metric, lower_is_better=not ssl_higher), what)


def _each_ssl_model(section: str, metric: str, what: str, absent: str) -> Callable[[Context], Verdict]:
    """The check "most SSL models are above supervised on ``metric``" (paired per model)."""
    return lambda ctx: _against_supervised(ctx, _latest(ctx.rows, section, metric), None, ssl_higher=True,
                                           what=what, absent=absent)


def _group_means(rows: pd.DataFrame) -> pd.DataFrame | None:
    inv = _latest(rows, "invariances")
    inv = inv[inv.metric.str.startswith("cosine:")]
    if inv.empty:
        return None
    inv = inv.assign(group=[json.loads(e).get("group") for e in inv.extra])
    return inv.pivot_table(index="model", columns="group", values="value")


def _check_invariances(ctx: Context) -> Verdict:
    means = _group_means(ctx.rows)
    crop, colour = "moco-v2-crop-only", "moco-v2-colour-only"
    rule = "point estimates of the mean whitened cosine per transform group (no interval)"
    if means is None or not {crop, colour} <= set(means.index):
        return Verdict(NOT_RUN, "no invariance results for the augmentation ablations", rule)
    spatial = means.loc[crop, "spatial"] > means.loc[colour, "spatial"]
    appearance = means.loc[colour, "appearance"] > means.loc[crop, "appearance"]
    return Verdict(AGREES if spatial and appearance else DISAGREES,
                   f"spatial invariance crop-only {means.loc[crop, 'spatial']:.3f} vs colour-only "
                   f"{means.loc[colour, 'spatial']:.3f}; appearance invariance colour-only "
                   f"{means.loc[colour, 'appearance']:.3f} vs crop-only {means.loc[crop, 'appearance']:.3f}", rule)


FINDINGS.add("invariances", Finding(
    "Contrastive models learn invariance to the augmentations they are trained with (follow-up paper).",
    lambda: "shown for MoCo-v2 trained with spatial-only vs appearance-only augmentations (no table)",
    _check_invariances))


def _check_colour_task(ctx: Context) -> Verdict:
    data = _latest(ctx.rows, "linear")
    data = data[data.dataset == "mini-colour"]
    by_model = _rows_by_model(data)
    crop, colour = "moco-v2-crop-only", "moco-v2-colour-only"
    if not {crop, colour} <= set(by_model):
        return Verdict(NOT_RUN, "no linear results for the ablations on the colour task")
    if (blocked := _no_outcomes(ctx, data[data.model.isin([crop, colour])])) is not None:
        return blocked
    tally = ctx.compare.tally([("mini-colour", by_model[crop], by_model[colour])])
    status = {1: AGREES, -1: DISAGREES, 0: INCONCLUSIVE}[tally.details["mini-colour"].sign]
    return _paired_verdict(ctx, tally, "crop-only − colour-only (trained to ignore colour)",
                           "agrees if the one comparison is a win, disagrees if a loss, else inconclusive", status)


FINDINGS.add("colour-invariance-hurts", Finding(
    "Colour-augmentation invariance hurts tasks that need colour (follow-up paper; the paper's ISIC result).",
    lambda: "the follow-up's dorsal/ventral models; colour-jittered SSL models trail on ISIC (Table 3)",
    _check_colour_task))


def _paper_retention() -> str:
    t = _table("table9_calibration_reconstruction_attention")
    mean = t[["colour_mse_red", "colour_mse_green", "colour_mse_blue"]].mean(axis=1)
    below = int((mean.drop(index="Supervised") > mean["Supervised"]).sum())
    return f"supervised mean colour MSE {mean['Supervised']:.0f} is below {below} of 13 SSL models'"


FINDINGS.add("colour-retention", Finding(
    "Supervised features keep more colour information than self-supervised ones (feature inversion).",
    _paper_retention,
    _each_ssl_model("retention", "colour_mse_mean", "SSL − supervised colour error per SSL model (a win: SSL keeps "
                    "less colour)", "no retention results")))


def _detection_paper() -> str:
    t = _table("table4_detection_voc")
    parts = []
    for setting in ("frozen", "finetune"):
        col = t[f"{setting}_AP50"]
        parts.append(f"{setting}: best SSL {col.drop(index='Supervised').max():.2f} vs supervised {col['Supervised']:.2f}")
    return "AP50 " + "; ".join(parts)


def _check_detection(ctx: Context) -> Verdict:
    tally = Tally()
    for setting in ("frozen", "finetune"):
        data = _latest(ctx.rows, "detection", f"{setting}_AP50")
        by_model = _rows_by_model(data)
        ssl = _ssl(by_model)
        if "supervised" not in by_model or not ssl:
            continue
        if (blocked := _no_outcomes(ctx, data)) is not None:
            return blocked
        best = max(ssl, key=lambda m: by_model[m].value)
        part = ctx.compare.tally([(f"{setting} ({best})", by_model[best], by_model["supervised"])], "AP50")
        for label, d in part.details.items():
            tally.add(label, d)
    if tally.n == 0:
        return Verdict(NOT_RUN, "no detection results for supervised and SSL models")
    status = AGREES if len(tally.wins) == tally.n else DISAGREES if tally.losses else INCONCLUSIVE
    return _paired_verdict(ctx, tally, "AP50, best SSL − supervised per setting",
                           "agrees if both settings are wins, disagrees if either is a loss, else inconclusive", status)


FINDINGS.add("detection", Finding(
    "The best self-supervised model beats supervised pretraining on detection (AP50), frozen and fine-tuned.",
    _detection_paper, _check_detection))


def _check_normals(ctx: Context) -> Verdict:
    data = _latest(ctx.rows, "dense", "sn_mean_err")
    by_model = _rows_by_model(data)
    ssl = _ssl(by_model)
    if "supervised" not in by_model or not ssl:
        return Verdict(NOT_RUN, "no surface-normal results for supervised and SSL models")
    if (blocked := _no_outcomes(ctx, data)) is not None:
        return blocked
    best = min(ssl, key=lambda m: by_model[m].value)
    tally = ctx.compare.tally([(best, by_model[best], by_model["supervised"])], lower_is_better=True)
    status = {1: AGREES, -1: DISAGREES, 0: INCONCLUSIVE}[tally.details[best].sign]
    return _paired_verdict(ctx, tally, "mean angular error, supervised − best SSL (degrees)",
                           "agrees if the one comparison is a win, disagrees if a loss, else inconclusive", status)


def _normals_paper() -> str:
    col = _table("table5_dense")["sn_mean_err"]
    return f"mean angular error: best SSL {col.drop(index='Supervised').min():.2f}° vs supervised {col['Supervised']:.2f}°"


FINDINGS.add("normals", Finding(
    "The best self-supervised model predicts surface normals better than supervised pretraining.",
    _normals_paper, _check_normals))


def _segmentation_paper() -> str:
    col = _table("table5_dense")["seg_mean_iou"]
    rank = int(col.rank(ascending=False, method="min")["Supervised"])
    return f"supervised mIoU {col['Supervised']:.4f} ranks {rank} of {len(col)} (but see the weight-loading caveat)"


FINDINGS.add("segmentation", Finding(
    "Supervised pretraining is among the worst on semantic segmentation.",
    _segmentation_paper,
    _each_ssl_model("dense", "seg_mean_iou", "mIoU, SSL − supervised per SSL model",
                    "no segmentation results for supervised and SSL models")))


def _paper_attention() -> str:
    col = _table("table9_calibration_reconstruction_attention")["attentive_diffusion"]
    higher = int((col.drop(index="Supervised") > col["Supervised"]).sum())
    return f"supervised attentive diffusion {col['Supervised']:.2f}% is below {higher} of 13 SSL models'"


FINDINGS.add("attention", Finding(
    "Supervised features attend to a smaller part of the image (lower attentive diffusion).",
    _paper_attention,
    _each_ssl_model("attention", "attentive_diffusion", "attentive diffusion, SSL − supervised per SSL model (points)",
                    "no attention results for supervised and SSL models")))


def study_verdicts(rows: pd.DataFrame, zoo: str, compare: Comparer, findings=None) -> dict[str, Verdict]:
    """Each finding's (or each of ``findings``') verdict on ``rows``, its paired comparisons made by
    ``compare`` (whose ``results_path`` holds the outcomes the rows name)."""
    rows = rows.copy()
    if "outcomes" not in rows:
        rows["outcomes"] = ""
    ctx = Context(rows, TASK_GROUPS.get(zoo, TASK_GROUPS["mini"]), compare)
    out = {}
    for key in findings or list(FINDINGS):
        try:
            out[key] = FINDINGS.get(key).check(ctx)
        except ConfigError as err:  # e.g. too few models, a constant source accuracy, unpaired outcomes
            out[key] = Verdict(NOT_RUN, str(err))
    return out


def scorecard(rows: pd.DataFrame, zoo: str, results_path=None, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per finding: the claim, the paper's evidence, this study's verdict, evidence and rule.

    ``results_path`` is the results table the rows came from; the per-example outcomes that the
    paired rules read lie beside it.
    """
    verdicts = study_verdicts(rows, zoo, Comparer(results_path, n_boot=n_boot, seed=seed))
    return pd.DataFrame([{"finding": key, "claim": finding.claim, "paper": finding.paper(),
                          "status": verdicts[key].status, "evidence": verdicts[key].evidence,
                          "rule": verdicts[key].rule} for key, finding in FINDINGS.items()])
