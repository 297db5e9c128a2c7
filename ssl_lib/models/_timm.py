"""timm backbones behind the same card and strict load as the zoos.

Specs (``?`` options joined with ``&``)::

    timm:<arch>[.<tag>]                 hub weights of timm's pretrained cfg (cached, else downloaded)
    timm:<arch>?file=<path>[&prefix=..&key=..]   local weights for a timm architecture
    timm:<arch>?pretrained=false        seeded random init (tests, baselines)
    hf-hub:<repo>                       a timm model published on the Hugging Face hub
    ... &size=<px>&resize=<px>&pool=<timm global_pool>&norm=imagenet|inception|clip|none

Every source ends in the same strict load (:func:`~ssl_lib.models._weights.load_strict`) after
timm's own per-family ``checkpoint_filter_fn`` (which converts upstream formats and resamples a
ViT's position embedding to ``size``); only the classifier is dropped, by timm's
``pretrained_cfg["classifier"]`` name. Hub weights are read from the local cache without touching
the network; when they are not cached and the hub cannot be reached, one line says how to fetch
or pass them (huggingface_hub itself retries for over a minute before failing).
"""

from __future__ import annotations

import functools
import json
import math
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import torch
import torch.nn as nn

from .._registry import unknown_name_message
from ..exceptions import ConfigError, DataNotFoundError, UnknownNameError
from ._cfg import IMAGENET_MEAN, IMAGENET_STD, NORMS, ModelCfg
from ._weights import convert_state_dict, load_checkpoint, load_strict

__all__ = ["TIMM_OPTIONS", "timm_cfg", "hf_hub_cfg", "build_timm", "timm_adapter", "timm_pyramid_kind",
           "hub_reachable"]

TIMM_OPTIONS = ("pretrained", "file", "prefix", "key", "size", "resize", "pool", "norm")
_HF_OPTIONS = ("size", "resize", "pool", "norm")
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order
_TOKEN_POOLS = {"token": "cls_token", "avg": "mean_patch_tokens", "max": "max_patch_tokens",
                "avgmax": "avgmax_patch_tokens", "map": "attention_pool", "": "none"}


def _options(spec: str, body: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    name, _, query = body.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"Unknown option(s) {unknown} in {spec!r}; allowed: {', '.join(allowed)}.")
    for key in ("size", "resize"):
        if key in options and not options[key].isdigit():
            raise ConfigError(f"Option {key}= in {spec!r} must be a whole number of pixels, got {options[key]!r}.")
    if "norm" in options and options["norm"] not in NORMS:
        raise UnknownNameError(unknown_name_message("normalisation", options["norm"], list(NORMS)))
    return name, options


def timm_adapter(model: nn.Module) -> dict:
    """Pooling, feature layer, patch size and pooled dimension of a timm model, read from the model."""
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str):  # token models (ViT family): token | avg | map ...
        pooling = _TOKEN_POOLS.get(pool, f"{pool}_tokens")
    else:
        from timm.layers import SelectAdaptivePool2d

        pools = [m.pool_type for m in model.modules() if isinstance(m, SelectAdaptivePool2d)]
        pooling = f"{pools[0]}pool" if pools and pools[0] else "none"
    info = getattr(model, "feature_info", None)
    feature_layer = info[-1]["module"] if info else ""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch) if patch is not None else None
    return {"pooling": pooling, "feature_layer": feature_layer, "patch_size": patch_size}


@functools.lru_cache(maxsize=64)
def _meta_adapter(arch: str, kwargs_json: str) -> dict:
    """The adapter of ``arch``, its pooled width and its multi-scale family, from a model on the meta
    device (no memory, no weights, ~0.3 s): a forward pass there gives the output shape whatever the pooling."""
    import timm

    from .multiscale import backbone_kind

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False, num_classes=0, **json.loads(kwargs_json))
        size = getattr(getattr(model, "patch_embed", None), "img_size", None) or (224, 224)
        width = int(model(torch.empty(1, 3, *size)).shape[-1])
    return {**timm_adapter(model), "feature_dim": width, "pyramid": backbone_kind(model)}


def timm_pyramid_kind(cfg: ModelCfg) -> str:
    """The card's multi-scale family (:func:`~ssl_lib.models.multiscale.backbone_kind`), without weights."""
    return _meta_adapter(cfg.arch, json.dumps(cfg.arch_kwargs, sort_keys=True))["pyramid"]


def _card(spec: str, arch: str, weights: str, pcfg: dict, options: dict, *, description: str,
          model_args: dict | None = None, extra: dict | None = None) -> ModelCfg:
    """A card from a timm pretrained cfg (``dict``) and the spec's options."""
    default_size = int((pcfg.get("input_size") or (3, 224, 224))[-1])
    size = int(options.get("size", default_size))
    kwargs = {k: v for k, v in (model_args or {}).items() if k != "num_classes"}  # always 0: pooled output
    if size != default_size and pcfg.get("fixed_input_size", False):
        kwargs["img_size"] = size  # ViTs: a position embedding for this grid (timm resamples the weights')
    if "pool" in options:
        kwargs["global_pool"] = options["pool"]
    crop_pct = pcfg.get("crop_pct") or 0.875
    resize = int(options.get("resize", math.floor(size / crop_pct)))  # timm's own eval transform
    if resize < size:
        raise ConfigError(f"resize={resize} in {spec!r} is smaller than the {size} px crop; use resize >= size.")
    mean, std = NORMS[options["norm"]] if "norm" in options else (
        tuple(pcfg.get("mean") or IMAGENET_MEAN), tuple(pcfg.get("std") or IMAGENET_STD))
    try:
        adapter = {k: v for k, v in _meta_adapter(arch, json.dumps(kwargs, sort_keys=True)).items()
                   if k not in ("feature_dim", "pyramid")}
    except (TypeError, ValueError, AssertionError) as err:  # e.g. a global_pool the family does not know
        raise ConfigError(f"timm cannot build {arch!r} with {kwargs} from {spec!r}: {str(err).splitlines()[0]}") from None
    classifier = pcfg.get("classifier") or ()
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return ModelCfg(
        name=spec, zoo="timm", arch=arch, weights=weights, mean=tuple(mean), std=tuple(std), input_size=size,
        resize_size=resize, interpolation=pcfg.get("interpolation") or "bicubic",
        state_dict_key=(options["key"],) if "key" in options else ("state_dict", "model"),
        key_prefix=options.get("prefix", ""), drop_keys=(), drop_prefixes=tuple(f"{c}." for c in classifiers),
        arch_kwargs=kwargs, description=description, extra=extra or {}, **adapter,
    )


def timm_cfg(spec: str) -> ModelCfg:
    """The card of ``timm:<arch>[.<tag>][?options]`` (see the module docstring)."""
    import timm

    name, options = _options(spec, spec[len("timm:"):], TIMM_OPTIONS)
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        known = timm.list_models(arch[:3] + "*") or timm.list_models()
        raise UnknownNameError(unknown_name_message("timm model", arch, known, "See timm.list_models()."))
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        raise UnknownNameError(unknown_name_message(
            f"weights tag of {arch}", tag, [t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*")],
            f"See timm.list_pretrained('{arch}.*').",
        ))
    pretrained = options.get("pretrained", "true").lower()
    if pretrained not in ("true", "false"):
        raise ConfigError(f"Option pretrained= in {spec!r} must be true or false, got {options['pretrained']!r}.")
    if pretrained == "false" and "file" in options:
        raise ConfigError(f"{spec!r} sets both pretrained=false and file=; pass one of them.")
    if ("prefix" in options or "key" in options) and "file" not in options:
        raise ConfigError(f"prefix= and key= in {spec!r} apply to a local checkpoint; add file=<path>.")
    pcfg = timm.get_pretrained_cfg(name)
    pcfg = pcfg.to_dict() if pcfg is not None else {}
    if "file" in options:
        weights = str(Path(options["file"]).expanduser())
        description = f"timm {arch} with local weights {Path(weights).name}"
    elif pretrained == "false":
        weights, description = "random", f"timm {arch}, seeded random initialisation (no weights)"
    else:
        if not (pcfg.get("hf_hub_id") or pcfg.get("url")):
            raise ConfigError(f"timm model {name!r} has no pretrained weights; pass timm:{arch}?pretrained=false "
                              f"or timm:{arch}?file=<path>, or a tag from timm.list_pretrained('{arch}.*').")
        weights = f"timm:{arch}.{pcfg['tag']}" if pcfg.get("tag") else f"timm:{arch}"
        description = f"timm {weights[5:]} (hub weights)"
    extra = {k: pcfg[k] for k in ("hf_hub_id", "hf_hub_filename", "url", "tag") if pcfg.get(k)}
    return _card(spec, arch, weights, pcfg, options, description=description, extra=extra)


def _cached_hub_file(repo: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_reachable(url: str = "https://huggingface.co", timeout: float = 3.0) -> bool:
    """Whether ``url``'s host (or the https proxy) accepts a TCP connection within ``timeout``."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    target = urllib.parse.urlsplit(urllib.request.getproxies().get("https") or url)
    try:
        socket.create_connection((target.hostname, target.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _not_cached(spec: str, what: str, where: str, fetch: str, copy: str) -> DataNotFoundError:
    arch = spec.split(":", 1)[1].split("?")[0].split(".")[0] if spec.startswith("timm:") else "<arch>"
    return DataNotFoundError(
        f"The {what} of {spec!r} are not cached ({where}) and the hub cannot be reached from here. On a machine "
        f"with internet run {fetch} and copy {copy}, or pass local weights as timm:{arch}?file=<path>."
    )


def _hub_file(repo: str, filenames: tuple[str, ...], spec: str, what: str = "weights") -> Path:
    """A hub file from the cache, else downloaded; one line when neither is possible."""
    from huggingface_hub import constants, hf_hub_download

    if (path := _cached_hub_file(repo, filenames)) is not None:
        return path
    if not hub_reachable(constants.ENDPOINT):
        folder = "models--" + repo.replace("/", "--")
        raise _not_cached(spec, f"{what} (hub repository {repo})", constants.HF_HUB_CACHE,
                          f"`hf download {repo}`", f"its {folder} folder from ~/.cache/huggingface/hub into that cache")
    from huggingface_hub.errors import EntryNotFoundError

    for filename in filenames:
        try:
            return Path(hf_hub_download(repo, filename))
        except EntryNotFoundError:
            continue
        except Exception as err:  # network errors come in many types
            raise DataNotFoundError(f"Could not download {repo}/{filename} ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0][:160]}). Run `hf download {repo}` and retry.") from None
    raise DataNotFoundError(f"The hub repository {repo} has none of {list(filenames)}; it is not a timm model.")


def _url_file(url: str, spec: str) -> Path:
    """A legacy (non-hub) timm weight URL, through torch.hub's checkpoint cache as timm does."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlsplit(url).path).name
    if target.exists():
        return target
    if not hub_reachable(url):
        raise _not_cached(spec, "weights", str(target), f"`curl -L -O {url}`", "the file there")
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target), progress=True)
    return target


def hf_hub_cfg(spec: str) -> ModelCfg:
    """The card of ``hf-hub:<repo>[?size=..&resize=..&pool=..&norm=..]``: a timm model's config.json."""
    from timm.models._hub import load_model_config_from_path

    repo, options = _options(spec, spec[len("hf-hub:"):], _HF_OPTIONS)
    config = _hub_file(repo, ("config.json",), spec, "config and weights")
    pcfg, arch, model_args = load_model_config_from_path(config.parent)
    return _card(spec, arch, spec.split("?")[0], dict(pcfg), options, model_args=model_args,
                 description=f"timm {arch} from the Hugging Face hub ({repo})", extra={"hf_hub_id": repo})


def _weights_file(cfg: ModelCfg) -> Path:
    if cfg.weights.startswith("hf-hub:"):
        return _hub_file(cfg.extra["hf_hub_id"], _HF_WEIGHT_FILES, cfg.name)
    if cfg.weights.startswith("timm:"):
        if cfg.extra.get("hf_hub_id"):
            names = (cfg.extra["hf_hub_filename"],) if cfg.extra.get("hf_hub_filename") else _HF_WEIGHT_FILES
            return _hub_file(cfg.extra["hf_hub_id"], names, cfg.name)
        return _url_file(cfg.extra["url"], cfg.name)
    path = Path(cfg.weights)
    if not path.exists():
        raise DataNotFoundError(f"Checkpoint file {path} does not exist; check the path after 'file='.")
    return path


def build_timm(cfg: ModelCfg) -> nn.Module:
    """The timm model of a card with its weights, strictly loaded; pooled output (no classifier)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # ?pretrained=false is the same network every time
        model = timm.create_model(cfg.arch, pretrained=False, num_classes=0, **cfg.arch_kwargs)
    if cfg.weights != "random":
        state = convert_state_dict(load_checkpoint(_weights_file(cfg)), state_dict_key=cfg.state_dict_key,
                                   key_prefix=cfg.key_prefix, drop_keys=cfg.drop_keys,
                                   drop_prefixes=cfg.drop_prefixes)
        # timm's own per-family conversion (upstream formats, position-embedding resampling)
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = filter_fn(state, model)
            except (KeyError, RuntimeError, ValueError, AttributeError) as err:
                raise ConfigError(f"Checkpoint for {cfg.name!r} does not fit timm architecture {cfg.arch!r} "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:160]}).") from None
            state = {k: v for k, v in state.items() if not k.startswith(cfg.drop_prefixes)}
        load_strict(model, state, cfg)
    model.feature_dim = _meta_adapter(cfg.arch, json.dumps(cfg.arch_kwargs, sort_keys=True))["feature_dim"]
    return model
