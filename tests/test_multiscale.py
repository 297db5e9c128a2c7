"""The multi-scale adapter: levels, strides and channels per family, the ResNet path against
torchvision's own feature API, timm's levels against a stage-by-stage run, freezing and errors."""

import pytest
import timm
import torch
import torch.nn as nn
import torchvision
from torchvision.models._utils import IntermediateLayerGetter

from ssl_lib.exceptions import ConfigError
from ssl_lib.models import FeatureModel, ModelCfg, SimplePyramid, build_arch, create_model, multiscale
from ssl_lib.models.multiscale import backbone_kind, dilated_strides

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VIT = "timm:vit_tiny_patch16_224?pretrained=false&size=32"
CONVNEXT = "timm:convnext_atto?pretrained=false&size=32"
STAGES = ["layer1", "layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def vit():
    return create_model(VIT)


@pytest.fixture(scope="module")
def convnext():
    return create_model(CONVNEXT)


@pytest.fixture(scope="module")
def resnet50():
    cfg = ModelCfg(name="r50", zoo="file", arch="resnet50", weights="none")
    torch.manual_seed(0)
    return FeatureModel(build_arch("resnet50"), cfg, weights_hash="none").eval()


def _x(side=64, n=2, seed=0):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _levels(model, side=64, **kwargs):
    trunk = multiscale(model, **kwargs)
    neck = trunk.neck()
    with torch.no_grad():
        maps = neck(trunk(model.normalize(_x(side))))
    return trunk, neck, maps


def test_each_family_gives_four_levels_with_their_strides_and_channels(vit, convnext, random_mini_model):
    cases = [(random_mini_model, "resnet", [32, 64, 128, 256], [2, 4, 8, 16]),
             (create_model("timm:resnet18?pretrained=false"), "resnet", [64, 128, 256, 512], [4, 8, 16, 32]),
             (convnext, "hierarchical", [40, 80, 160, 320], [4, 8, 16, 32]),
             (vit, "plain", [48, 96, 192, 192], [4, 8, 16, 32])]  # the card is 32 px; the grid follows the input
    for model, kind, channels, strides in cases:
        trunk, neck, maps = _levels(model)
        assert trunk.kind == kind and neck.channels == channels and neck.strides == strides, model.cfg.name
        assert [m.shape[1:] for m in maps] == [(c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
        assert trunk.info(neck) == {"kind": kind, "levels": trunk.levels, "strides": strides, "channels": channels,
                                    "neck": type(neck).__name__}
    assert _levels(vit)[0].levels == ["blocks.11"] and _levels(convnext)[0].levels == [f"stages.{i}" for i in range(4)]


def test_resnet_path_is_torchvisions_intermediate_layers_and_its_dilation(resnet50):
    x = resnet50.normalize(_x())
    trunk = multiscale(resnet50)
    assert not any(m.training for m in trunk.modules())  # the model's eval mode, probing or not
    getter = IntermediateLayerGetter(resnet50.backbone, {s: s for s in STAGES}).eval()
    with torch.no_grad():
        ours, theirs = trunk(x), getter(x)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs.values()))
        # CSAIL's stride-to-dilation conversion is torchvision's replace_stride_with_dilation, weights unchanged
        dilated = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
        dilated.fc = nn.Identity()
        dilated.load_state_dict(resnet50.backbone.state_dict())
        reference = IntermediateLayerGetter(dilated.eval(), {s: s for s in STAGES})(x)
        ours = multiscale(resnet50, dilate=(2, 3))(x)
    assert [m.shape[-1] for m in ours] == [16, 8, 8, 8]
    assert all(torch.equal(a, b) for a, b in zip(ours, reference.values()))


def test_min_stride_pools_the_mini_resnets_stride_2_level(random_mini_model):
    trunk, neck, maps = _levels(random_mini_model, min_stride=4)
    full = _levels(random_mini_model)[2]
    assert neck.strides == [4, 4, 8, 16]
    assert torch.equal(maps[0], nn.functional.avg_pool2d(full[0], 2)) and torch.equal(maps[3], full[3])


def test_hierarchical_levels_are_the_stage_outputs_and_dilate_through_output_stride(convnext):
    x = convnext.normalize(_x())
    with torch.no_grad():
        h, stages = convnext.backbone.stem(x), []
        for stage in convnext.backbone.stages:
            h = stage(h)
            stages.append(h)
        maps = multiscale(convnext)(x)
        assert all(torch.equal(a, b) for a, b in zip(maps, stages))
        for dilate, strides in (((3,), [4, 8, 16, 16]), ((2, 3), [4, 8, 8, 8])):
            trunk = multiscale(convnext, dilate=dilate)
            assert trunk.strides == strides == dilated_strides([4, 8, 16, 32], dilate)
            dilated = trunk(x)
            assert all(torch.equal(dilated[i], maps[i]) for i in range(min(dilate)))  # the stages before
            assert all(torch.equal(v, convnext.backbone.state_dict()[k]) for k, v in trunk.backbone.state_dict().items())
    with pytest.raises(ConfigError, match="only the last levels can be dilated"):
        multiscale(convnext, dilate=(2,))


def test_a_plain_vit_reads_its_last_block_tokens_and_resamples_the_position_embedding(vit):
    x = vit.normalize(_x(32))
    trunk = multiscale(vit)
    assert not any(m.training for m in trunk.modules())
    with torch.no_grad():
        grid = trunk(x)[0]
        tokens = vit.backbone.forward_features(x)[:, vit.backbone.num_prefix_tokens:]  # after the final norm
    assert grid.shape == (2, 192, 2, 2)
    assert torch.allclose(grid, tokens.transpose(1, 2).reshape(2, 192, 2, 2), atol=1e-6)
    assert trunk.backbone.pos_embed.shape == vit.backbone.pos_embed.shape  # resampled per input, never stored
    assert all(torch.equal(v, vit.backbone.state_dict()[k]) for k, v in trunk.backbone.state_dict().items())
    with torch.no_grad():
        assert trunk(vit.normalize(_x(96)))[0].shape == (2, 192, 6, 6)


def test_a_vit_cannot_dilate_so_its_pyramid_builds_the_dilated_levels_finer(vit):
    for dilate, strides in (((3,), [4, 8, 16, 16]), ((2, 3), [4, 8, 8, 8])):
        _, neck, maps = _levels(vit, dilate=dilate)
        assert neck.strides == strides and [m.shape[-1] for m in maps] == [64 // s for s in strides]
    pyramid = SimplePyramid(64, (4, 8, 16, 32))
    assert pyramid.channels == [16, 32, 64, 64]
    deconvs = [sum(isinstance(m, nn.ConvTranspose2d) for m in b.modules()) for b in pyramid.branches]
    assert deconvs == [2, 1, 0, 0] and isinstance(pyramid.branches[3], nn.MaxPool2d)
    with pytest.raises(ConfigError, match="powers of two"):
        SimplePyramid(64, (4, 12, 16, 32))


def test_a_14px_patch_grid_is_resized_onto_the_stride_16_grid():
    model = create_model("timm:vit_small_patch14_dinov2?pretrained=false&size=28")
    trunk, neck, maps = _levels(model, side=64)  # 5 x 5 patches of 14 px → 4 x 4 at stride 16
    assert trunk.strides == [16] and neck.strides == [4, 8, 16, 32]
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2] and neck.channels == [96, 192, 384, 384]


def _frozen(trunk, at):
    trunk.freeze_at(at)
    return {n for n, p in trunk.backbone.named_parameters() if not p.requires_grad}


def test_freeze_at_freezes_the_stem_and_the_first_stages_of_each_family(vit, convnext, random_mini_model):
    resnet = multiscale(random_mini_model)
    assert {n.split(".")[0] for n in _frozen(resnet, 4)} == {"conv1", "bn1", "layer1", "layer2", "layer3"}
    assert {n.split(".")[0] for n in _frozen(resnet, 1)} == {"conv1", "bn1"} and not _frozen(resnet, 0)
    convnext_trunk = multiscale(convnext)
    frozen = _frozen(convnext_trunk, 4)
    assert {".".join(n.split(".")[:2]) if n.startswith("stages") else n.split(".")[0] for n in frozen} == {
        "stem", "stages.0", "stages.1", "stages.2"}
    assert not _frozen(convnext_trunk, 0)
    vit_trunk = multiscale(vit)
    frozen = _frozen(vit_trunk, 4)  # a ViT-Ti's 12 blocks in four quarters: blocks 9-11 and the final norm train
    blocks = {int(n.split(".")[1]) for n in frozen if n.startswith("blocks.")}
    assert blocks == set(range(9)) and {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= frozen
    assert not any(n.startswith(("blocks.9", "blocks.10", "blocks.11", "norm.")) for n in frozen)
    assert _frozen(vit_trunk, 1) == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}


def test_a_backbone_without_multi_scale_maps_is_one_line():
    backbone = nn.Linear(3, 3)
    backbone.feature_dim = 3
    model = FeatureModel(backbone, ModelCfg(name="lin", zoo="file", arch="lin", weights="none"), "none")
    assert backbone_kind(backbone) == ""
    with pytest.raises(ConfigError, match="The dense section needs multi-scale feature maps; 'lin' \\(lin\\)"):
        multiscale(model, section="dense")
    with torch.device("meta"):
        assert backbone_kind(timm.create_model("mixer_s16_224", num_classes=0)) == ""
