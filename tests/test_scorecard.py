"""The scorecard tests the paper's findings on a results table, and says when it cannot."""

import json

import pandas as pd

from ssl_lib.scorecard import FINDINGS, scorecard


def _rows(section, values, metric="top1", extra=None, source=None):
    """``values``: {model: {dataset: value}} → result rows with source accuracy in ``extra``."""
    source = source or {}
    return [{"section": section, "model": m, "dataset": d, "metric": metric, "value": v,
             "created_utc": "2026-01-01T00:00:00Z",
             "extra": json.dumps({"source_top1": source.get(m, 10.0), **(extra or {})})}
            for m, per in values.items() for d, v in per.items()]


def _verdicts(rows):
    card = scorecard(pd.DataFrame(rows), "mini")
    return dict(zip(card.finding, zip(card.status, card.evidence)))


def test_every_finding_states_the_papers_evidence_and_is_not_run_without_results():
    card = scorecard(pd.DataFrame(columns=["section", "model", "dataset", "metric", "value", "created_utc", "extra"]),
                     "mini")
    assert list(card.finding) == list(FINDINGS)
    assert set(card.status) == {"not run"}
    linear = card.set_index("finding").loc["linear", "paper"]
    assert linear == "best SSL > supervised on 10 of 11 datasets (not on pets)"  # Table 1, computed


def test_many_shot_counts_tasks_where_the_best_ssl_model_beats_supervised():
    values = {"supervised": {"mini-objects": 50, "mini-colour": 60, "mini-digits": 70, "mini-source": 90},
              "byol": {"mini-objects": 55, "mini-colour": 50, "mini-digits": 72, "mini-source": 10},
              "random": {"mini-objects": 99, "mini-colour": 99, "mini-digits": 99, "mini-source": 99}}
    status, evidence = _verdicts(_rows("linear", values))["linear"]
    # the source task is not a transfer task, and random init is not self-supervised
    assert status == "agrees" and evidence == "best SSL > supervised on 2 of 3 tasks (not on mini-colour)"


def test_few_shot_on_source_like_tasks_expects_supervised_to_win():
    values = {"supervised": {"mini-objects": 80, "mini-finegrained": 70},
              "swav": {"mini-objects": 75, "mini-finegrained": 72}}
    status, evidence = _verdicts(_rows("fewshot", values, metric="5way-20shot"))["fewshot-source-like"]
    assert status == "disagrees" and evidence.startswith("supervised ≥ best SSL on 1 of 2")


def test_correlation_agrees_only_when_the_interval_excludes_zero():
    source = {"a": 5, "b": 10, "c": 20, "d": 30, "e": 40}
    values = {m: {"mini-objects": 10 + s} for m, s in source.items()}
    status, evidence = _verdicts(_rows("linear", values, source=source))["correlation"]
    assert status == "agrees" and "over 5 models" in evidence


def test_invariance_finding_compares_the_ablations_by_group():
    rows = (_rows("invariances", {"moco-v2-crop-only": {"mini-source": 0.6}, "moco-v2-colour-only": {"mini-source": 0.4}},
                  metric="cosine:rotation", extra={"group": "spatial"})
            + _rows("invariances", {"moco-v2-crop-only": {"mini-source": 0.3}, "moco-v2-colour-only": {"mini-source": 0.5}},
                    metric="cosine:hue", extra={"group": "appearance"}))
    status, evidence = _verdicts(rows)["invariances"]
    assert status == "agrees" and "crop-only 0.600 vs colour-only 0.400" in evidence


def test_paper_evidence_of_the_dense_detection_calibration_and_attention_findings():
    card = scorecard(pd.DataFrame(columns=["section", "model", "dataset", "metric", "value", "created_utc", "extra"]),
                     "mini").set_index("finding")["paper"]
    assert card["detection"] == "AP50 frozen: best SSL 82.34 vs supervised 81.53; finetune: best SSL 82.57 vs supervised 81.51"
    assert card["normals"] == "mean angular error: best SSL 28.77° vs supervised 33.52°"  # SimCLR-v2, Table 5
    assert card["segmentation"].startswith("supervised mIoU 0.2563 ranks 13 of 14")
    assert card["attention"] == "supervised attentive diffusion 43.88% is below 11 of 13 SSL models'"
    assert "-0.77" in card["calibration"]


def test_detection_needs_the_best_ssl_model_ahead_in_both_settings():
    rows = (_rows("detection", {"supervised": {"mini-scenes": 40}, "byol": {"mini-scenes": 45}, "random": {"mini-scenes": 90}},
                  metric="frozen_AP50")
            + _rows("detection", {"supervised": {"mini-scenes": 50}, "byol": {"mini-scenes": 48}}, metric="finetune_AP50"))
    status, evidence = _verdicts(rows)["detection"]
    assert status == "disagrees"  # random init is not an SSL model; fine-tuned supervised wins
    assert evidence == "AP50 frozen: best SSL (byol) 45.0 vs supervised 40.0; finetune: best SSL (byol) 48.0 vs supervised 50.0"


def test_normals_segmentation_and_attention_verdicts():
    dense = (_rows("dense", {"supervised": {"n": 30.0}, "byol": {"n": 28.0}, "swav": {"n": 33.0}}, metric="sn_mean_err")
             + _rows("dense", {"supervised": {"s": 0.20}, "byol": {"s": 0.30}, "swav": {"s": 0.25}, "random": {"s": 0.1}},
                     metric="seg_mean_iou")
             + _rows("attention", {"supervised": {"src": 40.0}, "byol": {"src": 45.0}, "swav": {"src": 39.0},
                                   "dino": {"src": 47.0}}, metric="attentive_diffusion"))
    verdicts = _verdicts(dense)
    assert verdicts["normals"] == ("agrees", "mean angular error: best SSL (byol) 28.0° vs supervised 30.0°")
    assert verdicts["segmentation"] == ("agrees", "supervised mIoU 0.200 ranks 3 of 3 pretrained models")
    assert verdicts["attention"] == ("agrees", "supervised attentive diffusion 40.0% is below 2 of 3 SSL models'")


def test_calibration_agrees_only_when_ece_falls_with_source_accuracy():
    source = {"a": 5, "b": 10, "c": 20, "d": 30, "e": 40}
    falling = {m: {"mini-objects": 30 - 0.5 * s} for m, s in source.items()}
    status, evidence = _verdicts(_rows("calibration", falling, metric="ece_linear_unscaled", source=source))["calibration"]
    assert status == "agrees" and evidence.startswith("Pearson r of linear ECE with source accuracy = -0.9")
    rising = {m: {"mini-objects": 5 + 0.5 * s} for m, s in source.items()}
    status, _ = _verdicts(_rows("calibration", rising, metric="ece_linear_unscaled", source=source))["calibration"]
    assert status == "disagrees"
