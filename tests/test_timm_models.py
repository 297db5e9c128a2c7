"""timm backbones: spec options, the adapter contract, strict local loads and the offline hub cache.

Tiny architectures at 32 px (``vit_tiny_patch16_224``: 2x2 patches; ``convnext_atto``), random
weights saved to temporary files: nothing is downloaded.
"""

import time

import pytest
import timm
import torch

from ssl_lib.exceptions import ConfigError, DataNotFoundError, UnknownNameError
from ssl_lib.models import _timm, create_model, get_model_cfg, require_multiscale

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VIT = "timm:vit_tiny_patch16_224?pretrained=false&size=32"
CONVNEXT = "timm:convnext_atto?pretrained=false&size=32"
VIT_TAG = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def _timm_model(name, **kwargs):
    torch.manual_seed(1)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _pre_logits(model, x):
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def test_cards_record_the_adapter_contract_read_from_the_model():
    vit, convnext = get_model_cfg(VIT), get_model_cfg(CONVNEXT)
    assert vit.adapter() == {"arch": "vit_tiny_patch16_224", "pooling": "cls_token", "feature_layer": "blocks.11",
                             "normalization": "inception", "input_size": 32, "resize_size": 35, "patch_size": 16}
    assert (convnext.pooling, convnext.feature_layer, convnext.patch_size, convnext.normalization) == (
        "avgpool", "stages.3", None, "imagenet")
    assert vit.arch_kwargs == {"img_size": 32} and convnext.arch_kwargs == {}  # ConvNeXt takes any size
    assert get_model_cfg(VIT + "&pool=avg").pooling == "mean_patch_tokens"
    assert get_model_cfg(VIT + "&resize=32&norm=clip").adapter()["resize_size"] == 32
    assert get_model_cfg(VIT + "&norm=clip").normalization == "clip"
    dinov2 = get_model_cfg("timm:vit_small_patch14_dinov2.lvd142m?size=224")  # card only: nothing downloads
    assert (dinov2.patch_size, dinov2.input_size, dinov2.resize_size, dinov2.arch_kwargs) == (14, 224, 224,
                                                                                              {"img_size": 224})
    assert get_model_cfg("paper/byol").adapter()["pooling"] == "avgpool"


def test_only_the_classifier_is_dropped():
    """Substring filters ("head") would also drop EfficientNet/MobileNetV3's conv_head."""
    assert get_model_cfg(CONVNEXT).drop_prefixes == ("head.fc.",)
    mobilenet = get_model_cfg("timm:mobilenetv3_small_050?pretrained=false")
    assert mobilenet.drop_prefixes == ("classifier.",) and mobilenet.drop_keys == ()


@pytest.mark.parametrize("spec, error, message", [
    (VIT + "&sise=32", ConfigError, r"Unknown option\(s\) \['sise'\].*allowed: pretrained, file"),
    ("timm:vit_tiny_patch16_224?pretrained=maybe", ConfigError, "must be true or false"),
    ("timm:vit_tiny_patch16_224?pretrained=false&file=/x.pth", ConfigError, "pass one of them"),
    ("timm:vit_tiny_patch16_224?prefix=module.", ConfigError, "add file=<path>"),
    ("timm:vit_tiny_patch16_224?size=big", ConfigError, "whole number of pixels"),
    ("timm:vit_tiny_patch16_224?size=64&resize=32", ConfigError, "smaller than the 64 px crop"),
    ("timm:vit_tiny_patch16_224?norm=imagnet", UnknownNameError, "Did you mean 'imagenet'"),
    ("timm:vit_tiny_patch16_224.augreg_in21k_ft_in1kk", UnknownNameError, "Did you mean 'augreg_in21k_ft_in1k'"),
    ("timm:vit_tinny_patch16_224", UnknownNameError, "Unknown timm model"),
    ("timm:nf_resnet26", ConfigError, r"has no pretrained weights; pass timm:nf_resnet26\?pretrained=false"),
    ("timm:vit_tiny_patch16_224?pretrained=false&pool=bogus", ConfigError, "timm cannot build"),
])
def test_bad_timm_specs_are_one_line(spec, error, message):
    with pytest.raises(error, match=message) as info:
        get_model_cfg(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", [VIT, CONVNEXT])
def test_random_init_is_seeded_and_pools_to_the_feature_dim(spec):
    a, b = create_model(spec), create_model(spec)
    assert a.weights_hash == b.weights_hash
    out = a(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, a.feature_dim) and a.feature_dim == {"vit": 192, "con": 320}[spec[5:8]]


def test_file_loads_strictly_with_the_classifier_dropped(tmp_path):
    source = _timm_model("vit_tiny_patch16_224", img_size=32)  # 1000-way head, as a real checkpoint
    path = tmp_path / "vit.pth"
    torch.save({"model": source.state_dict()}, path)
    model = create_model(f"timm:vit_tiny_patch16_224?file={path}&size=32")
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.backbone(x), _pre_logits(source, x), atol=1e-5)
    assert model.cfg.weights == str(path) and model.cfg.pooling == "cls_token"
    # an SSL training checkpoint: the backbone under a prefix in one entry, beside its own head
    nested = {"teacher": {**{f"backbone.{k}": v for k, v in source.state_dict().items()},
                          "head.mlp.0.weight": torch.zeros(4, 4)}}
    torch.save(nested, tmp_path / "dino.pth")
    again = create_model(f"timm:vit_tiny_patch16_224?file={tmp_path / 'dino.pth'}&key=teacher&prefix=backbone."
                         "&size=32")
    assert again.weights_hash == model.weights_hash


def test_file_resamples_the_position_embedding_to_the_requested_size(tmp_path):
    source = _timm_model("vit_tiny_patch16_224", img_size=64, num_classes=0)  # 4x4 patches
    path = tmp_path / "vit64.safetensors"
    import safetensors.torch

    safetensors.torch.save_file(source.state_dict(), str(path))
    model = create_model(f"timm:vit_tiny_patch16_224?file={path}&size=32")  # timm's filter: 4x4 -> 2x2
    assert model.backbone.pos_embed.shape == (1, 1 + 4, 192)


def test_conv_head_survives_the_key_filter(tmp_path):
    source = _timm_model("mobilenetv3_small_050")
    path = tmp_path / "mnv3.pth"
    torch.save(source.state_dict(), path)
    model = create_model(f"timm:mobilenetv3_small_050?file={path}&size=32")
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(model.backbone(x), _pre_logits(source, x), atol=1e-5)


def test_a_wrong_architecture_is_one_line(tmp_path):
    path = tmp_path / "convnext.pth"
    torch.save(_timm_model("convnext_atto").state_dict(), path)
    with pytest.raises(ConfigError, match=r"does not fit architecture 'vit_tiny_patch16_224': \d+ missing keys") as info:
        create_model(f"timm:vit_tiny_patch16_224?file={path}&size=32")
    assert "\n" not in str(info.value) and "prefix=" in str(info.value)
    torch.save(_timm_model("vit_small_patch16_224", img_size=32).state_dict(), path)  # same keys, wider
    with pytest.raises(ConfigError, match="size mismatch") as info:
        create_model(f"timm:vit_tiny_patch16_224?file={path}&size=32")
    assert "\n" not in str(info.value)
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read as a PyTorch state dict"):
        create_model(f"timm:vit_tiny_patch16_224?file={tmp_path / 'notes.pth'}")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        create_model(f"timm:vit_tiny_patch16_224?file={tmp_path / 'nope.pth'}")


def _fake_hub_snapshot(cache, repo, files):
    """The Hugging Face cache layout: models--<org>--<name>/{refs/main, snapshots/<commit>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    files(snapshot)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("cached weights must load without asking the network")

    monkeypatch.setattr(_timm, "hub_reachable", no_network)
    return cache


def test_cached_hub_weights_load_offline(hub_cache):
    import safetensors.torch

    source = _timm_model("vit_tiny_patch16_224", img_size=32)
    _fake_hub_snapshot(hub_cache, f"timm/{VIT_TAG}",
                       lambda d: safetensors.torch.save_file(source.state_dict(), str(d / "model.safetensors")))
    model = create_model(f"timm:{VIT_TAG}?size=32")
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.backbone(x), _pre_logits(source, x), atol=1e-5)
    assert model.cfg.weights == f"timm:{VIT_TAG}" and model.cfg.normalization == "inception"


def test_hf_hub_models_read_their_config_from_the_cache(hub_cache):
    from timm.models._hub import save_for_hf

    source = _timm_model("convnext_atto", num_classes=7)
    _fake_hub_snapshot(hub_cache, "someone/tiny-convnext", lambda d: save_for_hf(source, str(d)))
    model = create_model("hf-hub:someone/tiny-convnext?size=32")
    assert model.cfg.arch == "convnext_atto" and model.cfg.pooling == "avgpool"
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(model.backbone(x), _pre_logits(source, x), atol=1e-5)


def test_uncached_hub_weights_fail_fast_with_how_to_fetch_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(_timm, "hub_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as info:
        create_model(f"timm:{VIT_TAG}")
    message = str(info.value)
    assert time.perf_counter() - start < 10 and "\n" not in message
    assert f"`hf download timm/{VIT_TAG}`" in message and "timm:vit_tiny_patch16_224?file=<path>" in message
    with pytest.raises(DataNotFoundError, match=r"config and weights .* `hf download someone/vit`.* timm:<arch>\?file="):
        get_model_cfg("hf-hub:someone/vit")


def test_offline_mode_counts_as_unreachable(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert _timm.hub_reachable() is False


def test_sections_that_read_multi_scale_maps_take_each_family_and_refuse_the_rest_in_one_line():
    assert require_multiscale(get_model_cfg("byol"), "detection") == "resnet"
    assert require_multiscale(get_model_cfg("paper/byol"), "dense") == "resnet"
    assert require_multiscale(get_model_cfg("timm:resnet18?pretrained=false"), "dense") == "resnet"
    assert require_multiscale(get_model_cfg("timm:convnext_atto?pretrained=false"), "dense") == "hierarchical"
    assert require_multiscale(get_model_cfg(VIT), "retention") == "plain"
    # an MLP-Mixer's token-mixing MLPs fix its grid; LeViT has three levels: neither offers a pyramid
    for arch in ("mixer_s16_224", "levit_128s"):
        with pytest.raises(ConfigError, match=f"The retention section needs multi-scale feature maps; "
                                              f"'timm:{arch}\\?pretrained=false' \\({arch}\\)") as info:
            require_multiscale(get_model_cfg(f"timm:{arch}?pretrained=false"), "retention")
        assert "\n" not in str(info.value) and "plain timm ViT" in str(info.value)
