"""Dense prediction: a light decoder over four levels of a backbone (reference/paper.md §3.5-3.6).

- **Encoder**: a copy of the evaluated :class:`FeatureModel`'s backbone (its own normalisation
  first) read by the multi-scale adapter (:mod:`ssl_lib.models.multiscale`): a ResNet up to
  ``layer4``, a hierarchical timm model's last four stages, a plain ViT's last-block token grid;
  optionally dilated (ResNets: stride 2 → 1 with dilated convolutions, the CSAIL
  ``_nostride_dilate``; hierarchical timm models: timm's ``output_stride``; the paper's normals
  encoder dilates layer3 and layer4).
- **Neck**: a plain ViT's ViTDet simple feature pyramid (strides 4-32; a dilated level is built at
  the finer stride, as a ViT cannot dilate), trained with the decoder; identity otherwise. Right after it is
  built its parameters and buffers are compared, bit for bit, with the FeatureModel's state dict
  (:func:`check_encoder_weights`): the paper's segmentation code loads weights with
  ``strict=False`` into a differently built ResNet and may have run on random encoders (§3.6).
- **Decoders** (:data:`DECODERS`): ``upernet`` (PPM on the last level + FPN laterals and top-down
  fusion + a fuse conv; the paper's segmentation decoder) and ``ppm`` (PPM on the last level only;
  the paper's normals decoder). Channel width is a parameter; the FPN width is half of it (CSAIL: 512 / 256).
  Logits are upsampled bilinearly to the input size.
- **Heads** (:data:`HEADS`): segmentation is per-pixel cross-entropy with an ignore index. Normals
  follow the paper's code by default: 40-way classification over k-means clusters of training
  normals; the prediction is the probability-weighted sum of cluster centres, renormalised
  (``expected``; the code's ``convert_discrete_to_continuous``), or the most likely centre
  (``argmax``). ``regression`` (3 channels, L2-normalised, cosine loss) is the option.
- **Training**: SGD momentum 0.9, weight decay 1e-4 on weights (not on biases and norm parameters,
  as the CSAIL toolkit's ``group_weight``), poly schedule ``lr * (1 - it / max_it) ** 0.9`` per
  iteration, seeded. With a frozen backbone (eval mode, no gradients) the encoder's maps are
  computed once per split and the decoder trains on them (``cache_features``); ``freeze=False``
  trains end to end on images. ``freeze`` is per task: the paper preset trains segmentation end to
  end and freezes the normals encoder, as the paper's two codes do; the mini preset freezes both.
- **Metrics**: see :func:`segmentation_counts`, :func:`segmentation_metrics` and
  :func:`normals_metrics`, over every labelled test pixel at the label's native size (file datasets:
  no crop, one image at a time); 95% percentile-bootstrap CIs resample test images.
"""


from __future__ import annotations

from ...metrics.dense import (NORMALS_METRICS, SEG_METRICS, THRESHOLDS, angular_error, normals_metrics,
                              segmentation_counts, segmentation_metrics)
from .config import PRESETS, DenseCfg, cfg_dict, preset_cfg
from .heads import HEADS, normals_vocabulary
from .model import DECODERS, DenseEncoder, DenseModel, EncoderWeightsError, check_encoder_weights
from .run import DenseResult, run_dense_task
from .train import trivial_prediction

__all__ = [
    "DenseCfg", "PRESETS", "preset_cfg", "cfg_dict", "DenseEncoder", "DenseModel", "DECODERS", "HEADS",
    "EncoderWeightsError", "check_encoder_weights", "trivial_prediction", "normals_vocabulary", "segmentation_counts",
    "segmentation_metrics", "angular_error", "normals_metrics", "DenseResult", "run_dense_task",
    "SEG_METRICS", "NORMALS_METRICS", "THRESHOLDS",
]
