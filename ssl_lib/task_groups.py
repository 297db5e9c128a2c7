"""Which downstream tasks are "like the source" and which are cross-domain, per zoo.

The paper splits few-shot recognition into the Kornblith datasets (natural images like ImageNet)
and the CD-FSL datasets (crops, satellites, skin lesions, X-rays); its correlation settings and
its findings keep the two apart, and so do the correlation section and the scorecard here.
"""

from __future__ import annotations

__all__ = ["TASK_GROUPS", "CROSS_DOMAIN", "fewshot_suite"]

TASK_GROUPS: dict[str, dict] = {
    "mini": {"source": "mini-source", "source_like": ("mini-objects", "mini-finegrained"),
             "cross_domain": ("mini-crossdomain", "mini-colour")},
    "paper": {"source": "imagenet", "source_like": ("aircraft", "caltech101", "cars", "cifar10", "cifar100", "food",
                                                    "pets", "sun397", "dtd", "flowers"),
              "cross_domain": ("cropdiseases", "eurosat", "isic", "chestx")},
}
CROSS_DOMAIN: frozenset[str] = frozenset(d for groups in TASK_GROUPS.values() for d in groups["cross_domain"])


def fewshot_suite(dataset: str) -> str:
    """``"cdfsl"`` for a cross-domain task, else ``"kornblith"`` (the paper's two few-shot suites)."""
    return "cdfsl" if dataset in CROSS_DOMAIN else "kornblith"
