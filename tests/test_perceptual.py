"""Perceptual distances: the offline random-net stand-in and LPIPS through the optional extra."""

import sys
import types
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ssl_lib.evaluate.perceptual as P
import ssl_lib.sections.retention as S
from ssl_lib.exceptions import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n=2, seed=0):
    """Smooth random images: a 4x4 colour grid upsampled to 32 px."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bilinear", align_corners=False)


def test_perceptual_distance_is_zero_symmetric_and_monotone():
    x = _images(2)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    mild, strong = (x + 0.05 * noise).clamp(0, 1), (x + 0.3 * noise).clamp(0, 1)
    np.testing.assert_array_equal(P.perceptual_distance(x, x), [0, 0])
    np.testing.assert_allclose(P.perceptual_distance(x, mild), P.perceptual_distance(mild, x), rtol=1e-5)
    assert np.all(P.perceptual_distance(x, mild) < P.perceptual_distance(x, strong))
    fresh = P.RandomPerceptualDistance(seed=0)  # same seed, same network
    np.testing.assert_allclose(P.perceptual_distance(x, strong, net=fresh), P.perceptual_distance(x, strong))


def test_unknown_perceptual_net_names_the_known_ones():
    with pytest.raises(KeyError, match="random-vgg"):
        P.perceptual_distance(_images(1), _images(1), net="lpisp-alex")


@pytest.fixture
def fresh_perceptual_nets():
    P.perceptual_net.cache_clear()
    yield
    P.perceptual_net.cache_clear()


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_lpips_is_one_line_naming_the_extra(monkeypatch, fresh_perceptual_nets):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips raises ImportError
    with pytest.raises(ConfigError) as err:
        P.perceptual_distance(_images(1), _images(1), net="lpips-alex")
    message = _one_line(err)
    assert "pip install -e '.[lpips]'" in message and "internet on first use" in message and "random-vgg" in message
    # the section fails before it loads the study or inverts anything
    with pytest.raises(ConfigError, match="lpips-squeeze"):
        S.run_retention(S.RetentionParams(study="no-such-study", perceptual_net="lpips-squeeze"))


def test_lpips_backbone_download_failing_offline_is_one_line(monkeypatch, fresh_perceptual_nets):
    """lpips ships its linear layers; torchvision downloads the backbone, which fails offline."""
    def offline(**kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=offline))
    with pytest.raises(ConfigError) as err:
        P.perceptual_distance(_images(1), _images(1), net="lpips-vgg")
    message = _one_line(err)
    assert "could not download torchvision's VGG-16 weights" in message and "pip install -e '.[lpips]'" in message
