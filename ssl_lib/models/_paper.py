"""The paper's 14 ResNet-50 models (reference/paper.md §1): weight URLs, key conversions, inputs.

Container layouts (what ``convert_state_dict`` unwraps): MoCo-v1/v2 and PCL-v1/v2 save
``{"state_dict": {"module.encoder_q.*", "module.encoder_k.*", "module.queue", ...}}``; SwAV,
DeepCluster-v2 and SeLa-v2 a plain ``{"module.*", "module.projection_head.*",
"module.prototypes.*"}``; PyContrast (InsDis, PIRL, InfoMin) ``{"model": {"module.encoder.*",
"module.head*.*"}, "model_ema": ..., "contrast": ...}``; torchvision a plain dict with ``fc.*``;
BYOL and SimCLR are converted by :mod:`ssl_lib.models.convert` into plain torchvision keys.

Checksums of the upstream files are not published; ``sha256=None`` means "not recorded": the
first download prints the file's hash, and ``python -m ssl_lib.models.convert hash <name>
--record`` pins it (see :mod:`ssl_lib.models._weights`).
"""

from __future__ import annotations

from ._cfg import NO_NORM, ModelCfg

__all__ = ["PAPER_MODELS"]

_DROPBOX = "https://www.dropbox.com/sh/87d24jqsl6ra7t2"
_FAIR = "https://dl.fbaipublicfiles.com"
_PCL = "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint"

# name, ImageNet top-1 used by the paper, family, weights, key prefix
_ROWS = [
    ("insdis", 59.50, "contrastive", f"{_DROPBOX}/AACcsSIt1_Njv7GsmsuzZ6Sta/InsDis.pth", "module.encoder."),
    ("moco-v1", 60.60, "contrastive", f"{_FAIR}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar", "module.encoder_q."),
    ("pcl-v1", 61.50, "clustering", f"{_PCL}/PCL_v1_epoch200.pth.tar", "module.encoder_q."),
    ("pirl", 61.70, "contrastive", f"{_DROPBOX}/AADN4jKnvTI0U5oT6hTmQZz8a/PIRL.pth", "module.encoder."),
    ("pcl-v2", 67.60, "clustering", f"{_PCL}/PCL_v2_epoch200.pth.tar", "module.encoder_q."),
    ("simclr-v1", 69.30, "contrastive", "manual:simclr-v1.pth", ""),
    ("moco-v2", 71.10, "contrastive", f"{_FAIR}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar", "module.encoder_q."),
    ("simclr-v2", 71.70, "contrastive", "manual:simclr-v2.pth", ""),
    ("sela-v2", 71.80, "clustering", f"{_FAIR}/deepcluster/selav2_400ep_pretrain.pth.tar", "module."),
    ("infomin", 73.00, "contrastive", f"{_DROPBOX}/AAAzMTynP3Qc8mIE4XWkgILUa/InfoMin_800.pth", "module.encoder."),
    ("byol", 74.30, "contrastive", "manual:byol.pth", ""),
    ("deepcluster-v2", 75.20, "clustering", f"{_FAIR}/deepcluster/deepclusterv2_800ep_pretrain.pth.tar", "module."),
    ("swav", 75.30, "clustering", f"{_FAIR}/deepcluster/swav_800ep_pretrain.pth.tar", "module."),
    ("supervised", 77.20, "supervised", "torchvision:IMAGENET1K_V1", ""),
]

_NOTES = {
    "simclr-v1": (
        "TF checkpoint https://storage.cloud.google.com/simclr-gcs/checkpoints/ResNet50_1x.zip: unzip, then "
        "`python -m ssl_lib.models.convert simclr-v1 ResNet50_1x/model.ckpt-225206` (needs tensorflow; "
        "tonylins/simclr-converter's .pth is accepted too). No input normalisation."
    ),
    "simclr-v2": (
        "TF checkpoint gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0: "
        "`python -m ssl_lib.models.convert simclr-v2 r50_1x_sk0/model.ckpt-250228` (needs tensorflow; "
        "Separius/SimCLRv2-Pytorch's r50_1x_sk0.pth is accepted too). No input normalisation."
    ),
    "byol": (
        "Haiku pickle https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl: "
        "`python -m ssl_lib.models.convert byol pretrain_res50x1.pkl` (needs jax, dm-haiku, dill)."
    ),
    "supervised": "torchvision IMAGENET1K_V1 (76.13 top-1 in torchvision's docs; the paper's table uses 77.20).",
}


def _cfg(name: str, top1: float, family: str, weights: str, prefix: str) -> ModelCfg:
    mean_std = NO_NORM if name.startswith("simclr") else None
    return ModelCfg(
        name=name,
        zoo="paper",
        arch="resnet50",
        weights=weights,
        key_prefix=prefix,
        family=family,
        source_top1=top1,
        resize_size=224,
        description=_NOTES.get(name, ""),
        **({"mean": mean_std[0], "std": mean_std[1]} if mean_std else {}),
    )


PAPER_MODELS: dict[str, ModelCfg] = {row[0]: _cfg(*row) for row in _ROWS}
