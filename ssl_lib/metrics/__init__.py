"""Every metric of the study in one place: recognition (:mod:`.classification`), detection
(:mod:`.detection`), dense prediction (:mod:`.dense`) and calibration (:mod:`.calibration`)."""

from .classification import METRICS, compute_metric, map11, mean_per_class, top1, voc07_ap

__all__ = ["METRICS", "top1", "mean_per_class", "voc07_ap", "map11", "compute_metric"]
