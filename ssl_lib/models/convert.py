"""Checkpoints that exist only outside PyTorch → torchvision ResNet-50 state dicts.

Three of the paper's models have no PyTorch download (reference/paper.md §1.2):

* **BYOL** — DeepMind's Haiku pickle ``pretrain_res50x1.pkl``. Its ``experiment_state`` holds
  ``online_params`` ``{module: {"w" | "scale" | "offset": array}}`` and ``online_state``
  ``{module + "/~/mean_ema" | "/~/var_ema": {"average": array, ...}}``. Module names follow
  ``byol/utils/networks.py`` + ``hk.nets.ResNet``: ``<root>/~/initial_conv``,
  ``<root>/~/initial_batchnorm``, ``<root>/~/block_group_<g>/~/block_<b>/~/{conv_<i>,
  batchnorm_<i>, shortcut_conv, shortcut_batchnorm}`` with ``<root>`` = ``res_net50`` (found
  from the ``initial_conv`` entry, not assumed).
* **SimCLR-v1 / v2** — TensorFlow 1 checkpoints of ``google-research/simclr``'s ``resnet.py``.
  ``tf.layers`` names variables by creation order: ``base_model/conv2d[_k]/kernel`` and
  ``base_model/batch_normalization[_k]/{gamma,beta,moving_mean,moving_variance}``. In a block
  with a projection shortcut the shortcut conv/BN are created *first*, then conv1..conv3
  (tonylins/simclr-converter moves ``downsample`` first for the same reason).
* **SimCLR-v2 via Separius/SimCLRv2-Pytorch** — a ``{"resnet": {...}, "head": {...}}`` .pth with
  keys ``net.0.0.weight`` (stem), ``net.<s>.blocks.<b>.net.<0|2|4>.weight`` (convs),
  ``net.<s>.blocks.<b>.net.<1|3|5>.0.*`` (BNs), ``...projection.shortcut.weight`` and
  ``...projection.bn.0.*``: the 265 pairs of the paper's ``simclr_keys.pkl``.

Every function takes already-read arrays (numpy or torch), so converting needs neither JAX nor
TensorFlow; only reading the original files does, and those imports are lazy. Conv kernels go
HWIO → OIHW; BN scale/gamma → weight, offset/beta → bias, moving mean/variance → running stats.

``python -m ssl_lib.models.convert {byol,simclr-v1,simclr-v2} INPUT [OUTPUT]`` writes the
converted file where ``create_model`` looks for it and prints its sha256;
``python -m ssl_lib.models.convert hash NAME [--record]`` prints (and pins) a file's sha256.
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..exceptions import ConfigError, DataNotFoundError, SSLLibError

__all__ = [
    "RESNET50_BLOCKS", "CONVERTERS", "byol_from_haiku", "byol_params_from_checkpoint", "simclr_from_tf",
    "simclr_v2_from_separius", "is_separius_layout", "check_resnet50", "read_tf_checkpoint",
    "load_byol_pickle", "convert_file", "save_converted", "main",
]

RESNET50_BLOCKS = (3, 4, 6, 3)
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _units() -> Iterator[tuple[str, str, tuple]]:
    """Every conv and BN of a torchvision ResNet-50 as ``(kind, torch_prefix, where)``.

    ``where`` is ``("stem",)``, ``("shortcut", stage, 0)`` or ``(i, stage, block)`` with i = 1..3.
    The order is TensorFlow's creation order (shortcut before conv1); torchvision's own order
    puts ``downsample`` last, which only matters for formats named by position.
    """
    yield "conv", "conv1", ("stem",)
    yield "bn", "bn1", ("stem",)
    for stage, n_blocks in enumerate(RESNET50_BLOCKS, start=1):
        for block in range(n_blocks):
            if block == 0:
                yield "conv", f"layer{stage}.0.downsample.0", ("shortcut", stage, 0)
                yield "bn", f"layer{stage}.0.downsample.1", ("shortcut", stage, 0)
            for i in (1, 2, 3):
                yield "conv", f"layer{stage}.{block}.conv{i}", (i, stage, block)
                yield "bn", f"layer{stage}.{block}.bn{i}", (i, stage, block)


def _tensor(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().clone()
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def _kernel(hwio) -> torch.Tensor:
    """A TF/Haiku conv kernel (H, W, in, out) as a PyTorch weight (out, in, H, W)."""
    w = _tensor(hwio)
    if w.ndim != 4:
        raise ConfigError(f"Expected a 4-d conv kernel (H, W, in, out), got shape {tuple(w.shape)}.")
    return w.permute(3, 2, 0, 1).contiguous()


def _bn(weight, bias, mean, var) -> dict[str, torch.Tensor]:
    values = dict(zip(_BN_FIELDS, (_tensor(a).reshape(-1) for a in (weight, bias, mean, var))))
    values["num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return values


def _missing(what: str, name: str, hint: str) -> ConfigError:
    return ConfigError(f"{what} has no entry {name!r}; {hint}")


# --------------------------------------------------------------------------- BYOL (Haiku)

def byol_params_from_checkpoint(checkpoint) -> tuple[Mapping, Mapping]:
    """``(online_params, online_state)`` from the unpickled ``pretrain_res50x1.pkl``.

    ``experiment_state`` is a named tuple in the real file (a dict is accepted too).
    """
    state = checkpoint.get("experiment_state") if isinstance(checkpoint, Mapping) else None
    if state is None:
        raise ConfigError("Not a BYOL checkpoint: no 'experiment_state' entry (expected pretrain_res50x1.pkl).")
    get = (lambda k: state[k]) if isinstance(state, Mapping) else (lambda k: getattr(state, k))
    try:
        return get("online_params"), get("online_state")
    except (KeyError, AttributeError):
        raise ConfigError("BYOL 'experiment_state' lacks online_params/online_state; is this a BYOL checkpoint?") from None


def byol_from_haiku(params: Mapping, state: Mapping) -> dict[str, torch.Tensor]:
    """BYOL's online ResNet-50 (Haiku names) → torchvision keys; projector/predictor are left out.

    Batch-norm statistics are the EMA ``average`` of ``mean_ema``/``var_ema`` (what Haiku uses
    at test time).
    """
    roots = [k[: -len("/~/initial_conv")] for k in params if str(k).endswith("/~/initial_conv")]
    if len(roots) != 1:
        raise ConfigError(
            f"Expected one '<net>/~/initial_conv' module in the BYOL parameters, found {len(roots)}; "
            "is this BYOL's online_params?"
        )
    root = roots[0]

    def module(where: tuple, kind: str) -> str:
        if where == ("stem",):
            return f"{root}/~/initial_{'conv' if kind == 'conv' else 'batchnorm'}"
        i, stage, block = where
        base = f"{root}/~/block_group_{stage - 1}/~/block_{block}/~/"
        if i == "shortcut":
            return base + ("shortcut_conv" if kind == "conv" else "shortcut_batchnorm")
        return base + (f"conv_{i - 1}" if kind == "conv" else f"batchnorm_{i - 1}")

    out: dict[str, torch.Tensor] = {}
    hint = "the file does not hold a Haiku ResNet-50 (BYOL res50x1)."
    for kind, prefix, where in _units():
        name = module(where, kind)
        if name not in params:
            raise _missing("BYOL online_params", name, hint)
        if kind == "conv":
            out[f"{prefix}.weight"] = _kernel(params[name]["w"])
            continue
        try:
            mean, var = state[f"{name}/~/mean_ema"]["average"], state[f"{name}/~/var_ema"]["average"]
        except KeyError:
            raise _missing("BYOL online_state", f"{name}/~/mean_ema", hint) from None
        out |= {f"{prefix}.{k}": v for k, v in _bn(params[name]["scale"], params[name]["offset"], mean, var).items()}
    return out


def load_byol_pickle(path: str | Path) -> tuple[Mapping, Mapping]:
    """Unpickle ``pretrain_res50x1.pkl``; its objects are JAX/Haiku types, hence the imports it needs."""
    try:
        with open(path, "rb") as fh:
            checkpoint = pickle.load(fh)
    except ModuleNotFoundError as err:
        raise SSLLibError(
            f"Unpickling {path} needs the package {err.name!r}: pip install jax jaxlib dm-haiku dill "
            "(then run this command again)."
        ) from None
    return byol_params_from_checkpoint(checkpoint)


# --------------------------------------------------------------------------- SimCLR (TensorFlow)

_TF_VAR = re.compile(r"^(?P<layer>conv2d|batch_normalization)(?:_(?P<k>\d+))?/(?P<field>[a-z_]+)$")


def simclr_from_tf(variables: Mapping[str, object], prefix: str = "base_model/") -> dict[str, torch.Tensor]:
    """A SimCLR-v1/v2 ResNet-50 (1x, no selective kernels) TF checkpoint → torchvision keys.

    ``variables`` maps TF variable names to arrays (``tf.train.load_checkpoint`` output). Only
    ``prefix`` + ``conv2d*/kernel`` and ``batch_normalization*/*`` are read: optimizer slots
    (``/Momentum``), ``global_step``, the heads and (by default) ``ema_model/`` are ignored.
    The TF layer index is the position in TensorFlow's creation order (see :func:`_units`).
    """
    layers: dict[str, dict[int, dict[str, object]]] = {"conv2d": {}, "batch_normalization": {}}
    for name, value in variables.items():
        if not name.startswith(prefix):
            continue
        match = _TF_VAR.match(name[len(prefix):])
        if match:
            layers[match["layer"]].setdefault(int(match["k"] or 0), {})[match["field"]] = value
    units = list(_units())
    n_conv = sum(kind == "conv" for kind, *_ in units)
    for layer, found in layers.items():
        if len(found) != n_conv:
            raise ConfigError(
                f"The checkpoint has {len(found)} '{prefix}{layer}*' layers; a ResNet-50 (1x, sk0) has {n_conv}. "
                "Use the r50_1x_sk0 / ResNet50_1x checkpoint (or pass the right variable prefix)."
            )
    out: dict[str, torch.Tensor] = {}
    counters = {"conv": 0, "bn": 0}
    for kind, torch_prefix, _ in units:
        k = counters[kind]
        counters[kind] += 1
        if kind == "conv":
            out[f"{torch_prefix}.weight"] = _kernel(layers["conv2d"][k]["kernel"])
            continue
        fields = layers["batch_normalization"][k]
        try:
            bn = _bn(fields["gamma"], fields["beta"], fields["moving_mean"], fields["moving_variance"])
        except KeyError as err:
            raise _missing("The TF checkpoint", f"{prefix}batch_normalization_{k}/{err.args[0]}", "is it complete?") from None
        out |= {f"{torch_prefix}.{f}": v for f, v in bn.items()}
    return out


def read_tf_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint (a ``model.ckpt-N`` prefix or the folder holding it)."""
    try:
        import tensorflow as tf
    except ImportError:
        raise SSLLibError(
            f"Reading the TensorFlow checkpoint {path} needs TensorFlow: pip install tensorflow-cpu "
            "(then run this command again)."
        ) from None
    path = Path(path)
    if path.is_dir():
        found = tf.train.latest_checkpoint(str(path)) or next(
            (str(p.with_suffix("")) for p in sorted(path.glob("*.index"))), None
        )
        if found is None:
            raise DataNotFoundError(f"No TensorFlow checkpoint (*.index) in {path}; pass the model.ckpt-N prefix.")
        path = Path(found)
    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _separius_key(torch_key: str) -> str:
    """torchvision key → Separius/SimCLRv2-Pytorch key (the paper's ``simclr_keys.pkl``)."""
    parts = torch_key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return ("net.0.0." if parts[0] == "conv1" else "net.0.1.0.") + parts[-1]
    stage, block = int(parts[0][len("layer"):]), parts[1]
    head = f"net.{stage}.blocks.{block}."
    if parts[2] == "downsample":
        return head + ("projection.shortcut." if parts[3] == "0" else "projection.bn.0.") + parts[-1]
    i = int(parts[2][-1])  # conv1..3 / bn1..3
    return head + (f"net.{2 * (i - 1)}." if parts[2].startswith("conv") else f"net.{2 * (i - 1) + 1}.0.") + parts[-1]


def is_separius_layout(state: Mapping) -> bool:
    return "net.0.0.weight" in state and "net.1.blocks.0.net.0.weight" in state


def simclr_v2_from_separius(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Separius' converted SimCLR-v2 ResNet (``checkpoint["resnet"]``) → torchvision keys; ``fc`` dropped."""
    out: dict[str, torch.Tensor] = {}
    for kind, prefix, _ in _units():
        fields = ("weight",) if kind == "conv" else (*_BN_FIELDS, "num_batches_tracked")
        for field in fields:
            source = _separius_key(f"{prefix}.{field}")
            if source in state:
                out[f"{prefix}.{field}"] = state[source]
            elif field == "num_batches_tracked":
                out[f"{prefix}.{field}"] = torch.tensor(0, dtype=torch.long)
            else:
                raise _missing("The Separius SimCLR-v2 state dict", source, "is it a ResNet-50 1x sk0 conversion?")
    return out


# --------------------------------------------------------------------------- checks, files, CLI

def check_resnet50(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse (one line) a state dict that does not load strictly into the paper's backbone."""
    from ._arch import build_arch

    model = build_arch("resnet50")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ConfigError(
            f"Converted weights do not fit torchvision's ResNet-50: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of the wrong shape (e.g. {wrong[:2]})."
        )


def _from_pth(path: Path, name: str) -> dict[str, torch.Tensor]:
    """An already PyTorch checkpoint (tonylins' v1 output, Separius' v2 output) → torchvision keys."""
    from ._paper import PAPER_MODELS
    from ._weights import convert_state_dict

    cfg = PAPER_MODELS[name]
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return convert_state_dict(checkpoint, state_dict_key=cfg.state_dict_key, key_prefix=cfg.key_prefix,
                              drop_keys=cfg.drop_keys)


def _convert_byol(path: Path) -> dict[str, torch.Tensor]:
    return byol_from_haiku(*load_byol_pickle(path))


def _convert_simclr(name: str) -> Callable[[Path], dict[str, torch.Tensor]]:
    def convert(path: Path) -> dict[str, torch.Tensor]:
        if path.suffix in (".pth", ".pt", ".tar"):
            return _from_pth(path, name)
        return simclr_from_tf(read_tf_checkpoint(path))

    return convert


CONVERTERS: dict[str, Callable[[Path], dict[str, torch.Tensor]]] = {
    "byol": _convert_byol,
    "simclr-v1": _convert_simclr("simclr-v1"),
    "simclr-v2": _convert_simclr("simclr-v2"),
}
"""Paper model → reads its original file (TF checkpoint, Haiku pickle, or a third-party .pth)."""


def default_output(name: str) -> Path:
    """Where ``create_model`` looks for a ``manual:`` checkpoint of the paper zoo."""
    from ._paper import PAPER_MODELS
    from ._weights import cached_weights_path

    return cached_weights_path(PAPER_MODELS[name].weights)


def save_converted(state: Mapping[str, torch.Tensor], output: str | Path) -> str:
    """Check, write atomically and return the file's sha256."""
    from ..paths import atomic_path
    from ._weights import sha256_file

    check_resnet50(state)
    output = Path(output)
    with atomic_path(output) as tmp:
        torch.save(dict(state), tmp)
    return sha256_file(output)


def convert_file(name: str, source: str | Path, output: str | Path | None = None) -> tuple[Path, str]:
    """Convert ``source`` for paper model ``name``; returns ``(output path, sha256)``."""
    if name not in CONVERTERS:
        raise ConfigError(f"No converter for {name!r}; known: {', '.join(CONVERTERS)}.")
    source = Path(source).expanduser()
    if not source.exists() and not Path(str(source) + ".index").exists():
        raise DataNotFoundError(f"{source} does not exist; download the original {name} checkpoint first (see README).")
    output = Path(output).expanduser() if output else default_output(name)
    return output, save_converted(CONVERTERS[name](source), output)


def _hash(args: argparse.Namespace) -> int:
    from ._paper import PAPER_MODELS
    from ._weights import cached_weights_path, pins_path, record_pin, sha256_file

    if args.name in PAPER_MODELS:
        weights = PAPER_MODELS[args.name].weights
        path = cached_weights_path(weights)
        if path is None:
            import torchvision

            url = torchvision.models.ResNet50_Weights[weights.split(":", 1)[1]].url
            raise ConfigError(
                f"{args.name!r} comes from torchvision ({url.rsplit('/', 1)[1]}: the name carries its sha256 prefix, "
                "which torchvision checks with check_hash=True); there is no file of ours to pin."
            )
    else:
        path = Path(args.name).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist; run the model once (or convert it) first.")
    digest = sha256_file(path)
    print(f"{digest}  {path.name}")
    if args.record:
        print(f"recorded in {record_pin(path.name, digest)}")
    elif args.name in PAPER_MODELS:
        print(f"To pin it (later loads then refuse a different file): add --record (writes {pins_path()}).")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ._weights import record_pin

    output, digest = convert_file(args.command, args.input, args.output)
    print(f"{digest}  {output.name}\nwrote {output}")
    if args.record:
        print(f"recorded in {record_pin(output.name, digest)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssl_lib.models.convert",
        description="Convert BYOL (Haiku) and SimCLR (TensorFlow) checkpoints; print or pin weight checksums.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inputs = {
        "byol": "pretrain_res50x1.pkl (needs jax, dm-haiku, dill to unpickle)",
        "simclr-v1": "ResNet50_1x/model.ckpt-225206 or its folder (needs tensorflow), or tonylins' converted .pth",
        "simclr-v2": "r50_1x_sk0/model.ckpt-250228 or its folder (needs tensorflow), or Separius' converted .pth",
    }
    for name, help_text in inputs.items():
        p = sub.add_parser(name, help=f"convert {name}: {help_text}")
        p.add_argument("input", help=help_text)
        p.add_argument("output", nargs="?", default=None, help=f"default: where create_model looks ({name}.pth in the weights cache)")
        p.add_argument("--record", action="store_true", help="also pin the output's sha256")
        p.set_defaults(func=_convert)
    p = sub.add_parser("hash", help="print a weights file's sha256 (a paper model name or a path)")
    p.add_argument("name")
    p.add_argument("--record", action="store_true", help="pin it in the checksum file")
    p.set_defaults(func=_hash)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
