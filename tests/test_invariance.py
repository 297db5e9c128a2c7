import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats
from scipy.spatial.distance import mahalanobis

from ssl_lib.evaluate import invariance as inv
from ssl_lib.evaluate import synthetic_transforms as st
from ssl_lib.exceptions import SSLLibError, UnknownNameError


@pytest.fixture(scope="module")
def model(random_mini_model):
    return random_mini_model


@pytest.fixture(scope="module")
def images():
    return inv.sample_images("mini-colour", "val", 24, seed=0)


@pytest.fixture(scope="module")
def reference():
    return inv.sample_images("mini-colour", "train", 300, seed=1, replace=False)


class ColourBlind(nn.Module):
    """Sees only one grey channel: ``value`` (HSV max, unchanged by hue) or ``luma`` (unchanged by
    desaturation). No single grey is blind to both: a hue turn changes luma, desaturation the max."""

    def __init__(self, model: nn.Module, grey: str) -> None:
        super().__init__()
        self.model, self.grey = model, grey

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey == "value":
            g = x.amax(1, keepdim=True)
        else:
            g = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return self.model(g.expand_as(x))


def _whitener(model, reference):
    return inv.Whitener.fit(inv.image_features(model, reference, device="cpu"))


# ------------------------------------------------------------------------------------ the measure
def test_identity_magnitude_gives_cosine_one_and_distance_zero(model, images, reference):
    df = inv.invariance(model, images, "rotation", whitener=_whitener(model, reference), k=1, device="cpu")
    assert list(df.columns) == ["transform", "magnitude", "cosine", "mahalanobis"]
    assert df.magnitude.tolist() == [0.0]
    assert df.cosine.item() == pytest.approx(1.0, abs=1e-6)
    assert df.mahalanobis.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("grey, transform, magnitudes", [
    ("value", "hue", [-0.5, -0.25, 0.25, 0.5]),
    ("luma", "saturation", [0.0, 0.5]),  # factors > 1 clip, which changes the luma too
])
def test_colour_blind_model_is_invariant_where_a_plain_one_is_not(
    model, images, reference, grey, transform, magnitudes
):
    blind = ColourBlind(model, grey)
    kw = {"magnitudes": magnitudes, "device": "cpu"}
    blind_df = inv.invariance(blind, images, transform, whitener=_whitener(blind, reference), **kw)
    plain_df = inv.invariance(model, images, transform, whitener=_whitener(model, reference), **kw)
    assert blind_df.cosine.min() > 0.999
    assert plain_df.cosine.max() < 0.9


def test_invariance_is_deterministic_and_batch_independent(model, images, reference):
    w = _whitener(model, reference)
    a = inv.invariance(model, images, "scale", whitener=w, k=3, device="cpu")
    b = inv.invariance(model, images, "scale", whitener=w, k=3, batch_size=5, device="cpu")
    pd.testing.assert_frame_equal(a, b, rtol=1e-4)
    pd.testing.assert_frame_equal(a, inv.invariance(model, images, "scale", whitener=w, k=3, device="cpu"))


def test_profile_covers_each_transform_grid(model, images, reference):
    names = ["h_flip", "brightness"]
    df = inv.invariance_profile(model, images, names, reference_images=reference, k=3, device="cpu")
    assert df["transform"].tolist() == ["h_flip"] * 2 + ["brightness"] * 3
    assert df.magnitude.tolist() == [0.0, 1.0, 0.25, 2.625, 5.0]
    assert df.cosine.iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert df.cosine.between(-1, 1 + 1e-9).all() and (df.mahalanobis >= 0).all()


# ------------------------------------------------------------------------------------- whitening
def _correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_whitened_reference_features_have_identity_covariance():
    x = _correlated(500, 8)
    w = inv.Whitener.fit(x, eps=0.0)
    z = w.transform(x).numpy()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(8), atol=1e-8)
    np.testing.assert_allclose(w.L @ w.L.T, np.linalg.inv(np.cov(x, rowvar=False)), rtol=1e-8)


def test_shrinkage_handles_fewer_samples_than_dimensions():
    x = _correlated(10, 32)
    with pytest.raises(SSLLibError, match=r"singular .* Pass eps > 0"):
        inv.Whitener.fit(x, eps=0.0, allow_rank_deficient=True)
    assert torch.isfinite(inv.Whitener.fit(x, eps=1e-3, allow_rank_deficient=True).transform(x)).all()


def test_rank_deficient_reference_set_is_refused_in_one_line():
    with pytest.raises(SSLLibError, match=r"40 reference features in 64 dimensions.*n_reference > 64") as err:
        inv.Whitener.fit(_correlated(40, 64))
    assert "\n" not in str(err.value)


def test_power_law_features_need_more_references_than_dimensions():
    """Two "models" whose features change under a transform: A in the low-variance half of a
    power-law spectrum, B in the high-variance half, A truly less invariant (population whitening).
    From N = D/2 references (the paper preset's old 1000 images for 2048-d features) the ridge
    directions dominate and the order flips; from 10 D references both values are within 0.002."""
    d = 256
    lam = torch.arange(1, d + 1, dtype=torch.float64) ** -2.0
    basis, _ = torch.linalg.qr(_normal(d, d, seed=99))
    embed = lambda z: (z * lam.sqrt()) @ basis.T  # noqa: E731
    tail, head = torch.arange(d) >= d // 2, torch.arange(d) < d // 2
    z = _normal(400, d, seed=1)
    changed = {"A": z + 0.6 * _normal(400, d, seed=2) * tail, "B": z + 0.5 * _normal(400, d, seed=3) * head}

    def cosine(whiten, zc):
        return torch.nn.functional.cosine_similarity(whiten(embed(z)), whiten(embed(zc)), dim=1).mean().item()

    truth = {m: cosine(lambda f: f @ basis / lam.sqrt(), zc) for m, zc in changed.items()}
    assert truth["A"] < truth["B"] - 0.015
    few = inv.Whitener.fit(embed(_normal(d // 2, d, seed=5)), allow_rank_deficient=True)
    from_few = {m: cosine(few.transform, zc) for m, zc in changed.items()}
    assert from_few["A"] > from_few["B"]  # the old estimator ranks them the wrong way round
    many = inv.Whitener.fit(embed(_normal(10 * d, d, seed=5)))
    for m, zc in changed.items():
        assert cosine(many.transform, zc) == pytest.approx(truth[m], abs=0.002)


def _normal(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_reference_images_are_distinct_when_asked():
    a = inv.sample_images("mini-colour", "val", 150, seed=3, replace=False)
    assert len({tuple(img.flatten().tolist()) for img in a}) == 150
    with pytest.raises(SSLLibError, match="Cannot draw 500 distinct images"):
        inv.sample_images("mini-colour", "val", 500, seed=3, replace=False)


def test_mahalanobis_matches_scipy():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))
    images, reference = torch.rand(12, 3, 8, 8), torch.rand(200, 3, 8, 8)
    ref = inv.image_features(linear, reference, device="cpu").double().numpy()
    w = inv.Whitener.fit(ref, eps=0.0)
    df = inv.invariance(linear, images, "brightness", whitener=w, magnitudes=[0.5], device="cpu")
    clean = inv.image_features(linear, images, device="cpu").double().numpy()
    changed = inv.image_features(linear, st.brightness(images, 0.5), device="cpu").double().numpy()
    vi = np.linalg.inv(np.cov(ref, rowvar=False))
    expected = np.mean([mahalanobis(a, b, vi) for a, b in zip(clean, changed)])
    assert df.mahalanobis.item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize("name", inv.TRANSFORMS.names())
def test_transform_keeps_shape_dtype_range_and_is_deterministic(name, images):
    entry = inv.TRANSFORMS.get(name)
    x = images[:6]
    for m in entry.grid(4):
        y = entry(x, m)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert 0.0 <= y.min() and y.max() <= 1.0
        assert torch.equal(y, entry(x, m))
    assert torch.equal(x, images[:6])  # inputs untouched
    np.testing.assert_allclose(entry(x, entry.identity), x, atol=1e-5)


def test_groups_partition_the_registry():
    assert set(inv.SPATIAL) | set(inv.APPEARANCE) == set(inv.TRANSFORMS.names())
    assert not set(inv.SPATIAL) & set(inv.APPEARANCE)
    assert {"rotation", "resized_crop", "h_flip"} <= set(inv.SPATIAL)
    assert {"hue", "grayscale", "blur"} <= set(inv.APPEARANCE)


def test_grids():
    assert inv.TRANSFORMS.get("rotation").grid(4) == [0.0, 90.0, 180.0, 270.0]
    assert inv.TRANSFORMS.get("v_flip").grid(8) == [0.0, 1.0]
    assert len(inv.TRANSFORMS.get("posterize").grid(8)) == 7
    assert len(inv.TRANSFORMS.get("hue").grid(8)) == 8


def test_h_flip_twice_is_identity(images):
    assert torch.equal(st.h_flip(st.h_flip(images, 1), 1), images)


def test_unknown_transform_fails_with_one_line(model, images, reference):
    with pytest.raises(UnknownNameError, match="Unknown transform 'rotaton'. Did you mean 'rotation'") as err:
        inv.invariance(model, images, "rotaton", whitener=_whitener(model, reference), device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="Unknown transform 'colour'"):
        inv.invariance_profile(model, images, ["hue", "colour"], reference_images=reference, device="cpu")


# --------------------------------------------------------------------------------------- sampling
def test_sample_images_draws_with_replacement_and_is_seeded():
    a = inv.sample_images("mini-colour", "val", 16, seed=3)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, inv.sample_images("mini-colour", "val", 16, seed=3))
    assert not torch.equal(a, inv.sample_images("mini-colour", "val", 16, seed=4))
    from ssl_lib.data import open_split

    idx = np.random.default_rng(3).choice(len(open_split("mini-colour", "val")), size=16, replace=True)
    torch.testing.assert_close(a, open_split("mini-colour", "val").images[idx].float() / 255)


# ------------------------------------------------------------------------- invariance vs transfer
def test_invariance_vs_transfer_rank_correlates_across_models():
    models = [f"m{i}" for i in range(5)]
    cos = np.array([0.1, 0.4, 0.3, 0.8, 0.9])
    profile = pd.DataFrame({"model": np.repeat(models, 2), "transform": "hue", "cosine": np.repeat(cos, 2)})
    profile.loc[1::2, "cosine"] += 0.05  # a second magnitude: averaged per model
    transfer = pd.DataFrame({
        "model": models * 2, "dataset": ["up"] * 5 + ["mixed"] * 5,
        "value": list(cos * 10) + [0.5, 0.1, 0.9, 0.2, 0.4],
    })
    out = inv.invariance_vs_transfer(profile, transfer).set_index("dataset")
    assert out.loc["up", "correlation"] == pytest.approx(1.0)
    rho, p = stats.spearmanr(cos, [0.5, 0.1, 0.9, 0.2, 0.4])
    assert out.loc["mixed", "correlation"] == pytest.approx(rho)
    assert out.loc["mixed", "p_value"] == pytest.approx(p)
    assert (out.n_models == 5).all()
    few = inv.invariance_vs_transfer(profile, transfer[transfer.model.isin(["m0", "m1"])])
    assert few.correlation.isna().all()
    with pytest.raises(UnknownNameError, match="Unknown correlation 'spearmann'"):
        inv.invariance_vs_transfer(profile, transfer, method="spearmann")
    with pytest.raises(SSLLibError, match=r"transfer lacks column\(s\) \['value'\]"):
        inv.invariance_vs_transfer(profile, transfer.rename(columns={"value": "score"}))


def test_each_model_sees_the_study_images_at_its_own_input_size():
    """A ViT built for 48 px cannot take the mini suite's 32 px images: they are resized for it."""
    from ssl_lib.sections.invariances import InvariancesParams, at_size, run_invariances

    images = torch.rand(2, 3, 32, 32)
    assert at_size(images, 32) is images and at_size(images, 48).shape == (2, 3, 48, 48)
    profile = run_invariances(InvariancesParams(model="timm:vit_tiny_patch16_224?pretrained=false&size=48",
                                                n_images=4, n_reference=200, k=2, transforms="hue"))
    assert list(profile["transform"].unique()) == ["hue"] and profile.cosine.between(-1, 1).all()
