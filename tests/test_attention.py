"""Occlusion saliency and attentive diffusion: coverage, a brute-force reference, a model that only
sees one region, hand-made maps, and the section's rows."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from ssl_lib.evaluate.attention import (
    Occlusion, attention_images, attentive_diffusion, coverage, fixed_pattern_share, occlusion_saliency,
)
from ssl_lib.models import FeatureModel
from ssl_lib.models._cfg import ModelCfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Window(nn.Module):
    """Features = the pixels of one square of its input: a backbone that only looks there."""

    def __init__(self, top: int, side: int) -> None:
        super().__init__()
        self.top, self.side, self.feature_dim = top, side, 3 * side * side

    def forward(self, x):
        return x[:, :, self.top:self.top + self.side, self.top:self.top + self.side].flatten(1)


def _feature_model(backbone):
    return FeatureModel(backbone, ModelCfg(name="window", zoo="test", arch="window", weights="none"), "test")


def _brute_force(model, image, occ):
    """saliency.py's loops: every window position, scores added to the pixels it covers, averaged."""
    x = model.normalize(image[None])
    if occ.border == "pad":
        x = nn.functional.pad(x, [occ.margin] * 4)
    side = x.shape[-1]
    total, count = torch.zeros(side, side), torch.zeros(side, side)
    with torch.no_grad():
        base = model.backbone(x)[0]
        for i in range(0, side - occ.mask + 1, occ.stride):
            for j in range(0, side - occ.mask + 1, occ.stride):
                occluded = x.clone()
                occluded[..., i:i + occ.mask, j:j + occ.mask] = 0
                score = (model.backbone(occluded)[0] - base).norm() / base.norm()
                total[i:i + occ.mask, j:j + occ.mask] += score
                count[i:i + occ.mask, j:j + occ.mask] += 1
    keep = slice(occ.margin, side - occ.margin)
    return (total / count)[keep, keep], count[keep, keep]


@pytest.mark.parametrize("size, mask, stride", [(8, 3, 1), (32, 4, 1), (32, 4, 2), (12, 4, 4), (224, 10, 1)])
def test_every_pixel_is_covered_by_mask_over_stride_squared_windows(size, mask, stride):
    for border in ("pad", "crop"):
        cover = coverage(size, Occlusion(mask, stride, border))
        assert cover.shape == (size, size) and torch.all(cover == (mask // stride) ** 2)


def test_bad_occlusion_settings_fail_with_one_line():
    with pytest.raises(ValueError, match="multiple of the stride"):
        Occlusion(mask=4, stride=3)
    with pytest.raises(ValueError, match="Unknown border 'padd'"):
        Occlusion(border="padd")
    with pytest.raises(ValueError, match="multiple of the occlusion stride"):
        coverage(31, Occlusion(4, 2))


@pytest.mark.parametrize("mask, stride, border", [(3, 1, "pad"), (4, 2, "pad"), (3, 1, "crop")])
def test_batched_saliency_equals_the_brute_force_loops(random_mini_model, mask, stride, border):
    occ = Occlusion(mask, stride, border)
    images = torch.rand(2, 3, occ.load_size(16), occ.load_size(16), generator=torch.Generator().manual_seed(0))
    maps = occlusion_saliency(random_mini_model, images, occ, batch_size=37)  # batches span both images
    assert maps.shape == (2, 16, 16) and torch.all(maps >= 0) and maps.max() > 0
    for image, sal in zip(images, maps):
        reference, count = _brute_force(random_mini_model, image, occ)
        assert torch.all(count == (mask // stride) ** 2)
        torch.testing.assert_close(sal, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("border", ["pad", "crop"])
def test_a_model_that_only_sees_the_top_left_quadrant_has_saliency_only_there(border):
    occ, size, half = Occlusion(mask=3, stride=1, border=border), 16, 8
    model = _feature_model(Window(top=occ.margin, side=half))  # the image's [0, 8) x [0, 8) in input coordinates
    images = torch.rand(3, 3, occ.load_size(size), occ.load_size(size), generator=torch.Generator().manual_seed(1))
    sal = occlusion_saliency(model, images, occ)
    reach = half + occ.mask - 1  # a window starting at row 7 still touches the quadrant and covers up to row 9
    assert torch.all(sal[:, :half, :half] > 0)
    assert torch.all(sal[:, reach:, :] == 0) and torch.all(sal[:, :, reach:] == 0)
    assert torch.all(sal[:, half:reach, :half] > 0)  # within the mask's reach of the quadrant


def test_attentive_diffusion_of_hand_made_maps():
    hot = torch.zeros(10, 10)
    hot[3, 4] = 1.0
    assert attentive_diffusion(hot) == pytest.approx(1.0)  # one pixel of 100 above the mean
    checker = (torch.arange(100).view(10, 10) + torch.arange(10)[:, None]) % 2 + 1.0
    ramp = torch.arange(100, dtype=torch.float32).view(10, 10)
    np.testing.assert_allclose(attentive_diffusion(torch.stack([checker, ramp, hot])), [50.0, 50.0, 1.0])
    spread = torch.ones(10, 10)
    spread[0, 0] = 0.0  # all but one pixel above the mean
    assert attentive_diffusion(spread) == pytest.approx(99.0)


def test_fixed_pattern_share_is_one_for_identical_maps_and_small_for_unrelated_ones():
    base = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    assert fixed_pattern_share(torch.stack([base, 2 * base, 3 * base])) == pytest.approx(1.0)
    shifted = torch.zeros(16, 16, 16)
    for i in range(16):  # one hot pixel, in a different place in each map
        shifted[i, i, (5 * i) % 16] = 1.0
    # scaled to mean 1 each map is 256 at its pixel, so its variance is 256 - 1; the mean map is 16 at
    # 16 pixels, variance 16 - 1
    assert fixed_pattern_share(shifted) == pytest.approx(15 / 255)


def test_images_are_distinct_seeded_and_in_range():
    images = attention_images("mini-digits", "test", 6, size=32, seed=3)
    again = attention_images("mini-digits", "test", 6, size=32, seed=3)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images, again) and 0 <= images.min() and images.max() <= 1
    assert len({tuple(im.flatten()[:64].tolist()) for im in images}) == 6
    with pytest.raises(ValueError, match="n_images must be between 1 and"):
        attention_images("mini-digits", "test", 10**6, size=32)


def test_the_section_records_one_row_per_model(random_mini_spec, tmp_path):
    from ssl_lib.sections.attention import AttentionParams, run_attention

    results = tmp_path / "results.csv"
    params = AttentionParams(study="smoke", model=random_mini_spec, dataset="mini-digits", n_images=3, mask=4,
                             stride=4, n_boot=200, results_path=str(results))
    run = run_attention(params)
    rows = pd.read_csv(results)
    assert list(rows.section) == ["attention"] and list(rows.metric) == ["attentive_diffusion"]
    per_image = json.loads(rows.extra.iloc[0])["per_image"]
    assert len(per_image) == 3 and rows.value.iloc[0] == pytest.approx(np.mean(per_image), abs=1e-3)
    assert rows.ci_low.iloc[0] <= rows.value.iloc[0] <= rows.ci_high.iloc[0]
    assert run.maps[random_mini_spec].shape == (3, 32, 32) and run.images[random_mini_spec].shape == (3, 3, 32, 32)
    assert json.loads(rows.protocol_params.iloc[0])["mask"] == 4
