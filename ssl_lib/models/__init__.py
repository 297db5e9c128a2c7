"""Model registry: zoos ``mini`` and ``paper``, plus ``timm:<name>``, ``hf-hub:<repo>`` and ``file:<path>``."""

from ._arch import ARCHS, build_arch
from ._cfg import ModelCfg
from ._factory import ZOOS, FeatureModel, create_model, get_model_cfg, list_models, require_multiscale
from ._mini import MINI_MODEL_NAMES, MINI_ZOO_DIR
from ._paper import PAPER_MODELS
from .multiscale import MultiScale, SimplePyramid, multiscale

__all__ = [
    "ARCHS", "ZOOS", "FeatureModel", "MultiScale", "SimplePyramid", "multiscale", "ModelCfg", "MINI_MODEL_NAMES", "MINI_ZOO_DIR", "PAPER_MODELS",
    "build_arch", "create_model", "get_model_cfg", "list_models", "require_multiscale",
]
