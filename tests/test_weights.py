import pickle
import re
from collections import namedtuple

import numpy as np
import pytest
import torch

from ssl_lib.exceptions import ChecksumError, ConfigError, DataNotFoundError, SSLLibError
from ssl_lib.models import PAPER_MODELS, build_arch, convert, create_model
from ssl_lib.models._cfg import IMAGENET_MEAN, IMAGENET_STD
from ssl_lib.models._weights import cached_weights_path, read_pins, sha256_file, verify_sha256


def _mini_state():
    torch.manual_seed(0)
    return build_arch("mini_resnet").state_dict()


def test_checksum_mismatch_names_the_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(b"weights")
    assert verify_sha256(path, sha256_file(path)) == sha256_file(path)
    with pytest.raises(ChecksumError, match="ckpt.pth"):
        verify_sha256(path, "0" * 64)


def test_file_checkpoint_round_trip_and_normalisation(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": _mini_state()}, path)
    model = create_model(f"file:{path}?arch=mini_resnet&norm=none")
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 256)
    assert torch.allclose(model.normalize(x), x)  # norm=none
    assert not any(p.requires_grad for p in model.parameters())
    again = create_model(f"file:{path}?arch=mini_resnet&norm=none")
    assert again.weights_hash == model.weights_hash


def test_wrong_architecture_is_one_clear_error(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": _mini_state()}, path)
    with pytest.raises(ConfigError, match="does not fit architecture 'resnet50'"):
        create_model(f"file:{path}?arch=resnet50")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        create_model(f"file:{tmp_path}/nope.pth?arch=mini_resnet")


def test_committed_mini_zoo_loads_and_a_corrupted_checkpoint_is_refused(tmp_path, monkeypatch):
    import shutil

    from ssl_lib.models import MINI_MODEL_NAMES, MINI_ZOO_DIR
    from ssl_lib.models import _factory

    for name in MINI_MODEL_NAMES:  # every committed checkpoint matches its manifest sha256
        assert create_model(name, zoo="mini").feature_dim == 256
    corrupt = tmp_path / "byol.pth"
    shutil.copy(MINI_ZOO_DIR / "byol.pth", corrupt)
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(_factory, "MINI_ZOO_DIR", tmp_path)
    with pytest.raises(ChecksumError, match=r"Checksum mismatch for .*byol\.pth"):
        create_model("byol", zoo="mini")


# ---------------------------------------------------------------------------------------------
# The paper zoo: each source's real container and key layout, with ResNet-50's true shapes.

@pytest.fixture(autouse=True)
def _own_weights_cache_and_pins(tmp_path, monkeypatch):
    """Each test gets an empty weights cache and its own checksum file (never the user's)."""
    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SSL_LIB_WEIGHTS_SHA256", str(tmp_path / "pins.sha256"))


@pytest.fixture(scope="module")
def r50_shapes():
    import torchvision

    return {k: v.shape for k, v in torchvision.models.resnet50().state_dict().items()}


def _random_r50(shapes, seed):
    """A full torchvision ResNet-50 state dict (with fc) of seeded random values."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.tensor(seed) if k.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
            for k, shape in shapes.items()}


def _split_fc(state):
    return {k: v for k, v in state.items() if not k.startswith("fc.")}, {k: v for k, v in state.items() if k.startswith("fc.")}


# --- upstream layouts (as the released files are saved) ---

def _moco_layout(state, mlp_head):
    """MoCo-v1/v2, PCL-v1/v2: {'state_dict': q encoder (+fc head), k encoder, queue}, plus epoch/arch/optimizer."""
    backbone, _ = _split_fc(state)
    head = ({"fc.0.weight": torch.randn(8, 2048), "fc.0.bias": torch.randn(8), "fc.2.weight": torch.randn(4, 8),
             "fc.2.bias": torch.randn(4)} if mlp_head else {"fc.weight": torch.randn(4, 2048), "fc.bias": torch.randn(4)})
    raw = {f"module.encoder_q.{k}": v for k, v in {**backbone, **head}.items()}
    raw |= {f"module.encoder_k.{k}": v + 1.0 for k, v in {**backbone, **head}.items()}  # momentum encoder differs
    raw |= {"module.queue": torch.randn(4, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 200, "arch": "resnet50", "state_dict": raw,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}}


def _swav_layout(state):
    """SwAV, DeepCluster-v2, SeLa-v2: a plain DDP state dict with projection head and prototypes."""
    backbone, _ = _split_fc(state)
    raw = {f"module.{k}": v for k, v in backbone.items()}
    raw |= {"module.projection_head.0.weight": torch.randn(8, 2048), "module.projection_head.0.bias": torch.randn(8),
            "module.projection_head.1.weight": torch.randn(8), "module.projection_head.1.running_mean": torch.randn(8),
            "module.projection_head.1.num_batches_tracked": torch.tensor(3),
            "module.projection_head.3.weight": torch.randn(4, 8), "module.prototypes.weight": torch.randn(30, 4),
            "module.prototypes.prototypes0.weight": torch.randn(30, 4)}
    return raw


def _pycontrast_layout(state, jigsaw):
    """InsDis, PIRL, InfoMin (PyContrast): {'model': DDP encoder + heads, 'model_ema', 'contrast', ...}."""
    backbone, _ = _split_fc(state)
    model = {f"module.encoder.{k}": v for k, v in backbone.items()}
    model |= {"module.head.0.weight": torch.randn(4, 2048), "module.head.0.bias": torch.randn(4)}
    if jigsaw:
        model |= {"module.head_jig.fc1.weight": torch.randn(4, 2048), "module.head_jig.fc2.weight": torch.randn(4, 36)}
    ema = {f"encoder.{k}": v - 1.0 for k, v in backbone.items()}
    return {"model": model, "model_ema": ema, "contrast": {"memory": torch.randn(16, 4), "params": torch.tensor([0.07])},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0]}]}, "epoch": 800}


def _haiku_layout(state):
    """BYOL's pickle: experiment_state.online_params / online_state with Haiku module names."""
    root = "res_net50/~"
    params, ema = {}, {}

    def put_bn(module, prefix):
        params[module] = {"scale": state[f"{prefix}.weight"].numpy().reshape(1, 1, 1, -1),
                          "offset": state[f"{prefix}.bias"].numpy().reshape(1, 1, 1, -1)}
        for stat, key in (("mean_ema", "running_mean"), ("var_ema", "running_var")):
            ema[f"{module}/~/{stat}"] = {"average": state[f"{prefix}.{key}"].numpy().reshape(1, 1, 1, -1),
                                         "hidden": np.zeros(1), "counter": np.array(1000)}

    def hwio(key):
        return {"w": state[key].permute(2, 3, 1, 0).numpy()}

    params[f"{root}/initial_conv"] = hwio("conv1.weight")
    put_bn(f"{root}/initial_batchnorm", "bn1")
    for key in state:
        m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.weight", key)
        if m:
            block = f"{root}/block_group_{int(m[1]) - 1}/~/block_{m[2]}/~/"
            if m[3] == "conv":
                params[block + f"conv_{int(m[4]) - 1}"] = hwio(key)
            else:
                put_bn(block + f"batchnorm_{int(m[4]) - 1}", key[: -len(".weight")])
        m = re.fullmatch(r"layer(\d)\.0\.downsample\.0\.weight", key)
        if m:
            block = f"{root}/block_group_{int(m[1]) - 1}/~/block_0/~/"
            params[block + "shortcut_conv"] = hwio(key)
            put_bn(block + "shortcut_batchnorm", f"layer{m[1]}.0.downsample.1")
    params |= {"projector/~/linear": {"w": np.zeros((2048, 8)), "b": np.zeros(8)},
               "projector/~/batch_norm": {"scale": np.ones(8), "offset": np.zeros(8)},
               "predictor/~/linear": {"w": np.zeros((4, 8)), "b": np.zeros(8)}, "classifier": {"w": np.zeros((2048, 10))}}
    ema |= {"projector/~/batch_norm/~/mean_ema": {"average": np.zeros(8)}}
    return params, ema


def _tf_order():
    """SimCLR's TF creation order: stem, then per block [shortcut,] conv1, conv2, conv3."""
    convs, bns = ["conv1"], ["bn1"]
    for stage, n in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for b in range(n):
            if b == 0:
                convs.append(f"layer{stage}.0.downsample.0")
                bns.append(f"layer{stage}.0.downsample.1")
            convs += [f"layer{stage}.{b}.conv{i}" for i in (1, 2, 3)]
            bns += [f"layer{stage}.{b}.bn{i}" for i in (1, 2, 3)]
    return convs, bns


def _tf_layout(state, prefix="base_model/"):
    convs, bns = _tf_order()
    out = {"global_step": np.array(225206)}
    for k, name in enumerate(convs):
        tf_name = f"{prefix}conv2d{'' if k == 0 else f'_{k}'}/kernel"
        out[tf_name] = state[f"{name}.weight"].permute(2, 3, 1, 0).numpy()
        out[tf_name + "/Momentum"] = np.zeros(1)  # optimizer slot
    for k, name in enumerate(bns):
        for tf_field, field in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                ("moving_variance", "running_var")):
            out[f"{prefix}batch_normalization{'' if k == 0 else f'_{k}'}/{tf_field}"] = state[f"{name}.{field}"].numpy()
    out |= {"head_supervised/linear_layer/dense/kernel": np.zeros((2048, 1000)),
            "head_contrastive/nl_0/dense/kernel": np.zeros((2048, 2048)),
            "ema_model/base_model/conv2d/kernel": np.zeros((7, 7, 3, 64))}
    return out


def _separius_layout(state):
    """Separius/SimCLRv2-Pytorch's converted file: {'resnet': net.* keys + fc, 'head': ...}."""
    def rename(key):
        key = re.sub(r"^conv1\.", "net.0.0.", key)
        key = re.sub(r"^bn1\.", "net.0.1.0.", key)
        key = re.sub(r"^layer(\d)\.(\d+)\.downsample\.0\.", r"net.\1.blocks.\2.projection.shortcut.", key)
        key = re.sub(r"^layer(\d)\.(\d+)\.downsample\.1\.", r"net.\1.blocks.\2.projection.bn.0.", key)
        key = re.sub(r"^layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"net.{m[1]}.blocks.{m[2]}.net.{2 * int(m[3]) - 2}.", key)
        return re.sub(r"^layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"net.{m[1]}.blocks.{m[2]}.net.{2 * int(m[3]) - 1}.0.", key)

    return {"resnet": {rename(k): v for k, v in state.items()}, "head": {"layers.0.weight": torch.randn(4, 4)}}


def _place(name, state, monkeypatch):
    """Put a checkpoint of ``name`` in its upstream layout where create_model finds it."""
    cfg = PAPER_MODELS[name]
    layouts = {
        "moco-v1": lambda: _moco_layout(state, mlp_head=False), "pcl-v1": lambda: _moco_layout(state, mlp_head=False),
        "moco-v2": lambda: _moco_layout(state, mlp_head=True), "pcl-v2": lambda: _moco_layout(state, mlp_head=True),
        "swav": lambda: _swav_layout(state), "deepcluster-v2": lambda: _swav_layout(state),
        "sela-v2": lambda: _swav_layout(state), "insdis": lambda: _pycontrast_layout(state, jigsaw=False),
        "pirl": lambda: _pycontrast_layout(state, jigsaw=True), "infomin": lambda: _pycontrast_layout(state, jigsaw=True),
        "simclr-v2": lambda: _separius_layout(state),
    }
    if name == "supervised":  # torchvision's own file: a plain state dict with fc
        import torchvision.models._api as api

        monkeypatch.setattr(api, "load_state_dict_from_url", lambda url, *a, **k: dict(state))
    elif name == "byol":
        convert.save_converted(convert.byol_from_haiku(*_haiku_layout(state)), cached_weights_path(cfg.weights))
    elif name == "simclr-v1":
        convert.save_converted(convert.simclr_from_tf(_tf_layout(state)), cached_weights_path(cfg.weights))
    else:
        torch.save(layouts[name](), cached_weights_path(cfg.weights))


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_paper_checkpoints_in_their_upstream_layout_load_strictly(name, r50_shapes, monkeypatch, capsys):
    """All 14: the upstream container and keys → create_model's strict load; every tensor arrives intact."""
    seed = list(PAPER_MODELS).index(name) + 1
    state = _random_r50(r50_shapes, seed)
    _place(name, state, monkeypatch)
    model = create_model(name, zoo="paper")
    loaded = model.backbone.state_dict()
    backbone, _ = _split_fc(state)
    assert set(loaded) == set(backbone)  # fc is gone, nothing else added or missing
    for key, value in backbone.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key
    if cached_weights_path(PAPER_MODELS[name].weights) and PAPER_MODELS[name].weights.startswith("http"):
        assert "no published checksum" in capsys.readouterr().out  # the first load prints the file's sha256


def test_paper_cards_normalise_inputs_as_the_paper():
    for name, cfg in PAPER_MODELS.items():
        if name.startswith("simclr"):
            assert (cfg.mean, cfg.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), name  # --no-norm
        else:
            assert (cfg.mean, cfg.std) == (IMAGENET_MEAN, IMAGENET_STD), name
        assert (cfg.arch, cfg.input_size, cfg.resize_size, cfg.interpolation) == ("resnet50", 224, 224, "bicubic")


def test_byol_conversion_transposes_kernels_and_takes_the_ema_statistics(r50_shapes):
    state = _random_r50(r50_shapes, 7)
    params, ema = _haiku_layout(state)
    Experiment = namedtuple("_ByolExperimentState", "online_params target_params online_state target_state opt_state")
    checkpoint = {"step": 5000, "experiment_state": Experiment(params, {}, ema, {}, None)}
    out = convert.byol_from_haiku(*convert.byol_params_from_checkpoint(checkpoint))
    w = params["res_net50/~/block_group_2/~/block_3/~/conv_1"]["w"]  # HWIO (3, 3, 256, 256)
    assert w.shape == (3, 3, 256, 256)
    assert torch.equal(out["layer3.3.conv2.weight"], torch.from_numpy(w).permute(3, 2, 0, 1))
    assert out["layer3.3.conv2.weight"][5, 7, 0, 2] == float(w[0, 2, 7, 5])
    sc = params["res_net50/~/block_group_1/~/block_0/~/shortcut_conv"]["w"]
    assert out["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1) and out["layer2.0.downsample.0.weight"][3, 9, 0, 0] == float(sc[0, 0, 9, 3])
    avg = ema["res_net50/~/initial_batchnorm/~/var_ema"]["average"]
    assert torch.equal(out["bn1.running_var"], torch.from_numpy(avg.reshape(-1)))
    assert not any("projector" in k or "predictor" in k for k in out)
    convert.check_resnet50(out)
    del params["res_net50/~/block_group_3/~/block_2/~/conv_2"]
    with pytest.raises(ConfigError, match="block_group_3/~/block_2/~/conv_2"):
        convert.byol_from_haiku(params, ema)


def test_simclr_tf_conversion_follows_tensorflows_creation_order(r50_shapes):
    state = _random_r50(r50_shapes, 11)
    for prefix in ("base_model/", "ema_model/base_model/"):
        variables = _tf_layout(state, prefix)
        out = convert.simclr_from_tf(variables, prefix=prefix)
        # Hand-counted: conv2d_1 is block 1's shortcut, conv2d_2 its conv1; stage 2 starts at conv2d_11.
        assert torch.equal(out["layer1.0.downsample.0.weight"], torch.from_numpy(variables[f"{prefix}conv2d_1/kernel"]).permute(3, 2, 0, 1))
        assert out["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
        k = variables[f"{prefix}conv2d_13/kernel"]  # layer2.0.conv2: 3x3, 128 → 128, stride 2
        assert k.shape == (3, 3, 128, 128) and out["layer2.0.conv2.weight"][1, 2, 0, 1] == float(k[0, 1, 2, 1])
        assert torch.equal(out["layer2.0.bn3.bias"], torch.from_numpy(variables[f"{prefix}batch_normalization_14/beta"]))
        assert torch.equal(out["layer4.2.bn3.running_var"],
                           torch.from_numpy(variables[f"{prefix}batch_normalization_52/moving_variance"]))
        convert.check_resnet50(out)
    variables = _tf_layout(state)
    variables["base_model/conv2d_53/kernel"] = np.zeros((1, 1, 8, 8))  # e.g. an sk1 checkpoint
    with pytest.raises(ConfigError, match="54 'base_model/conv2d\\*' layers; a ResNet-50 \\(1x, sk0\\) has 53"):
        convert.simclr_from_tf(variables)


def test_separius_keys_are_the_papers_simclr_keys_pkl(r50_shapes):
    state = _random_r50(r50_shapes, 13)
    separius = _separius_layout(state)["resnet"]
    out = convert.simclr_v2_from_separius(separius)
    assert len([k for k in out if not k.endswith("num_batches_tracked")]) == 265  # as simclr_keys.pkl
    assert torch.equal(out["conv1.weight"], separius["net.0.0.weight"])
    assert torch.equal(out["layer1.0.conv1.weight"], separius["net.1.blocks.0.net.0.weight"])
    assert torch.equal(out["layer3.5.bn2.running_var"], separius["net.3.blocks.5.net.3.0.running_var"])
    assert torch.equal(out["layer4.0.downsample.1.bias"], separius["net.4.blocks.0.projection.bn.0.bias"])
    assert "fc.weight" not in out


def test_convert_cli_writes_where_create_model_looks_and_pins_its_hash(r50_shapes, tmp_path, capsys):
    state = _random_r50(r50_shapes, 17)
    params, ema = _haiku_layout(state)
    pkl = tmp_path / "pretrain_res50x1.pkl"
    pkl.write_bytes(pickle.dumps({"step": 1, "experiment_state": {"online_params": params, "online_state": ema}}))
    assert convert.main(["byol", str(pkl)]) == 0
    target = cached_weights_path(PAPER_MODELS["byol"].weights)
    out = capsys.readouterr().out
    assert f"{sha256_file(target)}  byol.pth" in out and str(target) in out
    assert convert.main(["hash", "byol", "--record"]) == 0
    assert read_pins() == {"byol.pth": sha256_file(target)}
    model = create_model("byol", zoo="paper")  # verified against the pin, then loaded
    assert torch.equal(model.backbone.state_dict()["layer2.1.conv2.weight"], state["layer2.1.conv2.weight"])
    # Third-party converted SimCLR files go through the same command: Separius' v2, tonylins' v1.
    separius = tmp_path / "r50_1x_sk0.pth"
    torch.save(_separius_layout(state), separius)
    assert convert.main(["simclr-v2", str(separius)]) == 0
    tonylins = tmp_path / "resnet50-1x.pth"
    torch.save({"state_dict": state}, tonylins)  # torchvision keys with the supervised fc head
    assert convert.main(["simclr-v1", str(tonylins)]) == 0
    for name in ("simclr-v1", "simclr-v2"):
        model = create_model(name, zoo="paper")
        assert torch.equal(model.backbone.state_dict()["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
        x = torch.rand(1, 3, 8, 8)
        assert torch.equal(model.normalize(x), x)  # SimCLR: raw [0, 1] pixels


def test_pinned_hash_protects_downloads_and_a_bad_pins_file_is_one_line(tmp_path, r50_shapes, capsys):
    state = _random_r50(r50_shapes, 19)
    target = cached_weights_path(PAPER_MODELS["swav"].weights)
    torch.save(_swav_layout(state), target)
    assert convert.main(["hash", "swav", "--record"]) == 0
    create_model("swav", zoo="paper")  # matches its pin: loads, prints no "no published checksum"
    assert "no published checksum" not in capsys.readouterr().out
    pinned = read_pins()["swav_800ep_pretrain.pth.tar"]
    torch.save(_swav_layout(_random_r50(r50_shapes, 20)), target)  # the upstream file changed
    with pytest.raises(ChecksumError) as info:
        create_model("swav", zoo="paper")
    message = str(info.value)
    pins = tmp_path / "pins.sha256"
    assert message == (
        f"Checksum mismatch for {target}: expected sha256 {pinned} (the pin in {pins}), got {sha256_file(target)}. "
        "The file is corrupt or was replaced: delete it and download or convert it again, "
        f"or, if the new file is the right one, update the pin in {pins}."
    )
    (tmp_path / "pins.sha256").write_text("not a hash  swav_800ep_pretrain.pth.tar\n")
    with pytest.raises(ConfigError, match=r"pins\.sha256, line 1: expected '<64 hex digits>  <file name>'"):
        create_model("swav", zoo="paper")


def test_missing_optional_packages_and_files_are_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
    (tmp_path / "model.ckpt-225206.index").write_bytes(b"")
    assert convert.main(["simclr-v1", str(tmp_path / "model.ckpt-225206")]) == 2
    assert "error: Reading the TensorFlow checkpoint" in capsys.readouterr().err
    with pytest.raises(SSLLibError, match="pip install tensorflow-cpu"):
        convert.read_tf_checkpoint(tmp_path / "model.ckpt-225206")
    pkl = tmp_path / "pretrain_res50x1.pkl"
    pkl.write_bytes(b"\x80\x02chaiku_not_installed._src.data_structures\nFlatMap\nq\x00)\x81q\x01.")
    assert convert.main(["byol", str(pkl)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install jax jaxlib dm-haiku dill" in err
    assert convert.main(["byol", str(tmp_path / "nope.pkl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(DataNotFoundError, match=r"'simclr-v1' needs a converted checkpoint .*simclr-v1\.pth.*python -m ssl_lib\.models\.convert simclr-v1"):
        create_model("simclr-v1", zoo="paper")
