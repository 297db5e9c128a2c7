import pytest
import torch

from ssl_lib.exceptions import ChecksumError, ConfigError, DataNotFoundError
from ssl_lib.models import build_arch, create_model, get_model_cfg
from ssl_lib.models._weights import convert_state_dict, sha256_file, verify_sha256


def _mini_state():
    torch.manual_seed(0)
    return build_arch("mini_resnet").state_dict()


@pytest.mark.parametrize("name", ["moco-v2", "swav", "infomin", "supervised"])
def test_paper_key_layouts_convert_to_a_strict_load(name):
    """Synthetic checkpoints in each source's layout load strictly after conversion."""
    cfg = get_model_cfg(name, zoo="paper")
    backbone = _mini_state()  # the layout logic is architecture-independent
    head = {"fc.0.weight": torch.zeros(2, 2), "fc.2.weight": torch.zeros(2, 2)}
    if cfg.key_prefix == "module.encoder_q.":
        raw = {f"module.encoder_q.{k}": v for k, v in {**backbone, **head}.items()}
        raw |= {f"module.encoder_k.{k}": v for k, v in backbone.items()}  # momentum encoder
        raw["module.queue"] = torch.zeros(4)
        checkpoint = {"state_dict": raw, "epoch": 800}
    elif cfg.key_prefix == "module.":
        raw = {f"module.{k}": v for k, v in backbone.items()}
        raw |= {"module.projection_head.0.weight": torch.zeros(2), "module.prototypes.weight": torch.zeros(3, 2)}
        checkpoint = raw
    elif cfg.key_prefix == "module.encoder.":
        raw = {f"module.encoder.{k}": v for k, v in backbone.items()}
        raw |= {"module.encoder.fc.weight": torch.zeros(2), "module.jigsaw.weight": torch.zeros(1)}
        checkpoint = {"model": raw}
    else:
        checkpoint = {**backbone, "fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}
    state = convert_state_dict(checkpoint, state_dict_key=cfg.state_dict_key, key_prefix=cfg.key_prefix,
                               drop_keys=cfg.drop_keys)
    model = build_arch("mini_resnet")
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.state_dict()["conv1.weight"], backbone["conv1.weight"])


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
