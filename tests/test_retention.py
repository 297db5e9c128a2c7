import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ssl_lib.evaluate.retention as R
import ssl_lib.sections.retention as S
from ssl_lib.exceptions import ConfigError, UnknownNameError
from ssl_lib.models import FeatureModel, ModelCfg, build_arch

TINY = dict(channels=(8, 16), kernel_sizes=(3, 3), input_depth=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mini(random_mini_model):
    return random_mini_model


class _Pixels(nn.Module):
    """An 'identity-like' backbone: its feature map is the normalised image, downsampled 2x."""

    feature_dim = 3 * 16 * 16

    def forward_features(self, x):
        return F.avg_pool2d(x, 2)

    def forward(self, x):
        return self.forward_features(x).flatten(1)


@pytest.fixture(scope="module")
def pixels():
    cfg = ModelCfg(name="pixels", zoo="file", arch="pixels", weights="none", mean=(0.5,) * 3, std=(0.25,) * 3,
                   input_size=32)
    return FeatureModel(_Pixels(), cfg, weights_hash="none").eval()


def _images(n=2, seed=0):
    """Smooth random images: a 4x4 colour grid upsampled to 32 px."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bilinear", align_corners=False)


def test_feature_map_is_the_unpooled_last_stage(mini):
    x = _images(2)
    fmap = R.feature_map(mini, x)
    assert fmap.shape == (2, 256, 2, 2)
    torch.testing.assert_close(fmap.mean(dim=(2, 3)), mini(x))  # pooling it gives the model's features


def test_feature_map_of_torchvision_resnet50():
    cfg = ModelCfg(name="r50", zoo="file", arch="resnet50", weights="none")
    model = FeatureModel(build_arch("resnet50"), cfg, weights_hash="none").eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        fmap = R.feature_map(model, x)
        assert fmap.shape == (1, 2048, 2, 2)
        torch.testing.assert_close(fmap.mean(dim=(2, 3)), model(x))


def test_feature_map_of_a_vit_is_its_token_grid_and_of_a_convnext_its_last_stage():
    from ssl_lib.models import create_model

    vit = create_model("timm:vit_tiny_patch16_224?pretrained=false&size=32")
    x = _images(2)
    with torch.no_grad():
        grid = R.feature_map(vit, x)
        tokens = vit.backbone.forward_features(vit.normalize(x))  # (B, 1 + 4, 192), the cls token first
    assert grid.shape == (2, 192, 2, 2) and R.feature_map_kind(vit.backbone).startswith("token grid")
    torch.testing.assert_close(grid, tokens[:, 1:].transpose(1, 2).reshape(2, 192, 2, 2))
    convnext = create_model("timm:convnext_atto?pretrained=false&size=32")
    with torch.no_grad():
        fmap = R.feature_map(convnext, x)
        torch.testing.assert_close(convnext.backbone.forward_head(fmap, pre_logits=True), convnext(x))
    assert fmap.shape == (2, 320, 1, 1) and R.feature_map_kind(convnext.backbone) == "feature map"
    recon = R.invert(vit, x[:1], steps=2, generator=lambda: R.SkipGenerator(**TINY))
    assert recon.shape == (1, 3, 32, 32)
    # a ViT's grid is fixed by its position embedding: the section gives it the images at its input size
    big = F.interpolate(x, size=64, mode="bilinear")
    assert S.model_images(vit, big).shape[-2:] == (32, 32) and S.model_images(convnext, big) is big
    assert S.model_images(vit, x) is x


def test_unknown_backbone_says_how_to_register_one():
    cfg = ModelCfg(name="x", zoo="file", arch="x", weights="none")
    backbone = nn.Linear(3, 3)
    backbone.feature_dim = 3
    with pytest.raises(ConfigError, match="register_feature_map"):
        R.feature_map(FeatureModel(backbone, cfg, weights_hash="none"), torch.rand(1, 3, 8, 8))


def test_inversion_through_an_identity_like_feature_map_reconstructs_the_image(pixels):
    x = _images(1)
    start = R.invert(pixels, x, steps=0)
    recon = R.invert(pixels, x, steps=40)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    before, after = F.mse_loss(start, x).item(), F.mse_loss(recon, x).item()
    assert after < 0.3 * before


def test_invert_is_deterministic_and_batching_does_not_change_results(mini):
    x = _images(3)
    gen = lambda: R.SkipGenerator(**TINY)  # noqa: E731
    a = R.invert(mini, x, steps=5, seed=1, generator=gen)
    assert torch.equal(a, R.invert(mini, x, steps=5, seed=1, generator=gen))
    assert not torch.equal(a, R.invert(mini, x, steps=5, seed=2, generator=gen))
    single = R.invert(mini, x[1], steps=5, seed=1, generator=gen)
    assert single.shape == (3, 32, 32)
    torch.testing.assert_close(single, a[1], atol=1e-4, rtol=0)


def test_invert_leaves_the_global_rng_alone(mini):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    R.invert(mini, _images(1), steps=1, generator=lambda: R.SkipGenerator(**TINY))
    assert torch.equal(torch.rand(3), expected)


def test_invert_refuses_a_model_in_training_mode(mini):
    mini.train()
    try:
        with pytest.raises(ValueError, match="model.eval"):
            R.invert(mini, _images(1), steps=1)
    finally:
        mini.eval()


def test_colour_mse_by_hand():
    x = torch.rand(2, 3, 8, 8) * 0.9
    shifted = x.clone()
    shifted[:, 0] += 10 / 255
    np.testing.assert_allclose(R.colour_mse(x, shifted), [[100, 0, 0]] * 2, atol=1e-3)
    u8 = (x * 255).round().to(torch.uint8)
    u8_shifted = u8.clone()
    u8_shifted[1] += 2  # every channel off by 2 in image 1
    np.testing.assert_allclose(R.colour_mse(u8, u8_shifted), [[0, 0, 0], [4, 4, 4]], atol=1e-9)
    assert R.colour_mse(u8[0], u8_shifted[0]).shape == (3,)


def test_float_images_outside_unit_range_are_refused():
    with pytest.raises(ValueError, match="Divide 0-255 data by 255"):
        R.colour_mse(torch.full((3, 4, 4), 200.0), torch.zeros(3, 4, 4))


def test_retention_table_columns(mini):
    x = (_images(2) * 255).to(torch.uint8)
    table, recon = R.retention_table(mini, x, steps=2, generator=lambda: R.SkipGenerator(**TINY))
    assert recon.shape == (2, 3, 32, 32)
    assert list(table.columns) == [
        "image", "mse_red", "mse_green", "mse_blue", "perceptual", "perceptual_net",
        "feature_mse_start", "feature_mse", "model", "steps", "seed",
    ]
    assert (table.perceptual_net == "random-vgg").all() and table.model.iloc[0].startswith("file:")
    np.testing.assert_allclose(table[["mse_red", "mse_green", "mse_blue"]], R.colour_mse(x, recon))


def test_attribute_probe_separates_linear_signal_from_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    assert R.attribute_probe(X, X @ rng.normal(size=20) + 0.05 * rng.normal(size=200)) > 0.95
    assert R.attribute_probe(X, rng.normal(size=200)) < 0.1
    with pytest.raises(ValueError, match="one attribute at a time"):
        R.attribute_probe(X, X[:, :2])


def test_image_attributes_of_a_bright_square():
    images = torch.zeros(2, 3, 32, 32)
    images[0, :, 4:10, 20:26] = 1.0  # white square centred at row 6.5, column 22.5
    images[1, 0] = 1.0  # pure red, no object
    attrs = R.image_attributes(images)
    assert attrs.centroid_x[0] == pytest.approx(22.5 / 31) and attrs.centroid_y[0] == pytest.approx(6.5 / 31)
    assert attrs.mean_red[0] == pytest.approx(36 / 1024) and attrs.saturation[0] == 0
    assert attrs.mean_red[1] == 1 and attrs.mean_green[1] == 0 and attrs.saturation[1] == 1
    assert np.isnan(attrs.centroid_x[1])  # a uniform image has no object


def _folder_dataset(root, sizes=((40, 50), (64, 48), (33, 33))):
    """An image-folder dataset on disk whose images differ in size (as real datasets do)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            for i, (w, h) in enumerate(sizes):
                path = root / split / label / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return f"folder:{root}"


def test_study_level_pages_read_datasets_on_disk_at_the_zoos_size(tmp_path, random_mini_spec):
    """The paper study's invariance, retention and attention pages sample images from disk."""
    import yaml

    from ssl_lib.sections._common import study_images
    from ssl_lib.sections.retention import RetentionParams, run_retention
    from ssl_lib.study import load_study

    dataset = _folder_dataset(tmp_path / "data")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({"name": "disk", "zoo": "mini", "models": [random_mini_spec],
                                          "sections": {"retention": {"datasets": [dataset]}}}))
    images = study_images(load_study(study_file), dataset, "test", 5, seed=0)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert torch.equal(images, study_images(load_study(study_file), dataset, "test", 5, seed=0))
    run = run_retention(RetentionParams(study=str(study_file), steps=3, probe_dataset=dataset, n_probe=12))
    assert run.images.shape == (1, 3, 32, 32)
    assert len(run.probes) == 6 and run.probes.r2.notna().all()  # mean R/G/B, saturation, centroid x/y


def _levels(net: R.SkipGenerator):
    level = net.body
    while level is not None:
        yield level
        level = level.deeper


def test_paper_generator_has_the_papers_channels_and_kernels():
    """jonahanton/SSL_medicalimaging's DIP skip net: channels 16-128, kernels 7-3, skip 4, depth-32 noise."""
    net = R.GENERATORS.get("paper")()
    levels = list(_levels(net))
    assert tuple(lv.down[0][0].out_channels for lv in levels) == (16, 32, 64, 128, 128, 128)
    assert tuple(lv.down[0][0].kernel_size[0] for lv in levels) == (7, 7, 5, 5, 3, 3)
    assert {lv.skip[0].out_channels for lv in levels} == {4} and net.body.skip[0].in_channels == 32
    assert net.noise(224, 224, generator=torch.Generator().manual_seed(0)).shape == (1, 32, 256, 256)  # cropped to 224
    assert net.noise(32, 32, generator=torch.Generator()).shape == (1, 32, 128, 128)  # a 2x2 bottleneck at least
    assert len(list(_levels(R.GENERATORS.get("mini")()))) == 3
    assert S.generator_name(S.RetentionParams(), "paper") == "paper"  # by zoo
    assert S.generator_name(S.RetentionParams(), "mini") == "mini"
    assert S.generator_name(S.RetentionParams(generator="mini"), "paper") == "mini"
    with pytest.raises(UnknownNameError, match="paper"):
        S.generator_name(S.RetentionParams(generator="papr"), "paper")


def test_run_device_is_the_parameter_else_cuda_when_present(monkeypatch):
    assert S.run_device(S.RetentionParams(device="cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert S.run_device(S.RetentionParams()) == "cuda" and S.run_device(S.RetentionParams(device="cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert S.run_device(S.RetentionParams()) == "cpu"


def test_section_passes_its_generator_and_device(tmp_path, random_mini_spec, monkeypatch):
    import yaml

    dataset = _folder_dataset(tmp_path / "data")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({"name": "disk", "zoo": "mini", "models": [random_mini_spec],
                                          "sections": {"retention": {"datasets": [dataset]}}}))
    seen = {}

    def create_model(spec, **kwargs):
        seen["device"] = kwargs.get("device")
        return real_create(spec, **kwargs)

    def retention_table(model, images, **kwargs):
        seen["generator"], seen["model_device"] = kwargs.get("generator"), R._device_of(model)
        return real_table(model, images, **kwargs)

    real_create, real_table = S.create_model, S.retention_table
    monkeypatch.setattr(S, "create_model", create_model)
    monkeypatch.setattr(S, "retention_table", retention_table)
    run = S.run_retention(S.RetentionParams(study=str(study_file), steps=1, generator="paper", device="cpu",
                                            probe_dataset=dataset, n_probe=12, results_path=str(tmp_path / "r.csv")))
    assert seen["device"] == "cpu" and seen["model_device"] == torch.device("cpu")
    assert seen["generator"] is R.GENERATORS.get("paper") and run.generator == "paper" and run.device == "cpu"
    import pandas as pd

    rows = pd.read_csv(tmp_path / "r.csv")
    assert {json.loads(p)["generator"] for p in rows.protocol_params} == {"paper"}
    assert rows.device.str.startswith("cpu").all()
