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
