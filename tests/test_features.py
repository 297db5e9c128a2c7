import numpy as np
import pytest
import torch

import ssl_lib.features as F
from ssl_lib.data import ArrayDataset, carve_validation, eval_transform, open_split
from ssl_lib.models import build_arch, create_model


@pytest.fixture(scope="module")
def model(random_mini_model):
    return random_mini_model


def _count_forwards(model):
    calls = []
    handle = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_extract_matches_a_plain_forward(model):
    images = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    data = ArrayDataset(images, np.arange(10), eval_transform(model.cfg))
    feats, labels = F.extract_features(model, data, batch_size=4, progress=False)
    with torch.inference_mode():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        ref = model(x).numpy()
    assert feats.shape == (10, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(labels, np.arange(10))


def test_second_request_reads_the_cache_without_a_forward_pass(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path))  # other tests may have cached these features
    first = F.get_features(model, "mini-digits", "val", progress=False)
    calls, handle = _count_forwards(model)
    try:
        second = F.get_features(model, "mini-digits", "val", progress=False)
    finally:
        handle.remove()
    assert not first.from_cache and second.from_cache
    assert calls == []
    np.testing.assert_array_equal(first.features, second.features)
    assert len(first.labels) == len(open_split("mini-digits", "val"))


def test_cache_key_changes_with_weights_split_and_transform(model, tmp_path):
    key = F.feature_cache_key(model, "mini-digits", "val")
    assert key != F.feature_cache_key(model, "mini-digits", "test")
    assert key != F.feature_cache_key(model, "mini-colour", "val")
    other = create_model(f"file:{model.cfg.weights}?arch=mini_resnet&size=28")
    assert F.feature_cache_key(other, "mini-digits", "val") != key
    torch.manual_seed(1)
    path = tmp_path / "other.pth"
    torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, path)
    assert F.feature_cache_key(create_model(f"file:{path}?arch=mini_resnet"), "mini-digits", "val") != key


def test_a_corrupt_cache_entry_is_recomputed(model):
    first = F.get_features(model, "mini-digits", "test", progress=False)
    entry = F.cache_dir("features") / first.key
    (entry / "features.npy").write_bytes(b"garbage")
    again = F.get_features(model, "mini-digits", "test", progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(first.features, again.features)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]


def test_validation_carve_is_the_official_codes():
    n = 50
    indices = list(range(n))
    np.random.seed(0)
    np.random.shuffle(indices)
    train, val = carve_validation(n)
    assert sorted(val) == sorted(indices[:10]) and sorted(train) == sorted(indices[10:])
    assert not set(train) & set(val)


def test_cache_key_changes_with_the_pooling_of_the_same_weights(model):
    """ConvNeXt's max and avg pooling share every weight: only the adapter tells their features apart."""
    avg = create_model("timm:convnext_atto?pretrained=false&size=32")
    peak = create_model("timm:convnext_atto?pretrained=false&size=32&pool=max")
    assert avg.weights_hash == peak.weights_hash and peak.cfg.pooling == "maxpool"
    assert F.feature_cache_key(avg, "mini-digits", "val") != F.feature_cache_key(peak, "mini-digits", "val")


def test_resnet_cache_keys_are_unchanged_by_the_adapter_fields(model):
    """The mini and paper ResNets' keys leave the default adapter out: caches made before it stay valid."""
    import hashlib
    import json

    from ssl_lib.data import get_dataset_spec, transform_cfg

    payload = {"weights": model.weights_hash, "arch": model.cfg.arch, "mean": list(model.cfg.mean),
               "std": list(model.cfg.std), "dataset": "mini-digits", "data": get_dataset_spec("mini-digits").fingerprint,
               "split": "val", "transform": transform_cfg(model.cfg), "layer": "pool",
               "mode": F.extraction_mode("cpu"), "format": F.FORMAT_VERSION}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
    assert F.feature_cache_key(model, "mini-digits", "val", device="cpu") == expected


def test_cache_key_separates_cuda_bf16_from_cpu_fp32_and_torch_minor_versions(model, monkeypatch):
    """CUDA extraction runs under bf16 autocast: its features must never be served to a CPU fp32 run."""
    cpu = F.feature_cache_key(model, "mini-digits", "val", device="cpu")
    assert cpu != F.feature_cache_key(model, "mini-digits", "val", device="cuda")
    assert F.feature_cache_key(model, "mini-digits", "val", device="cuda:1") == F.feature_cache_key(
        model, "mini-digits", "val", device="cuda")  # the device's index does not change the features
    assert F.extraction_mode("cuda")["autocast"] == "bfloat16" and F.extraction_mode("cpu")["autocast"] == "off"
    monkeypatch.setattr(torch, "__version__", "9.7.1+cpu")
    other_minor = F.feature_cache_key(model, "mini-digits", "val", device="cpu")
    monkeypatch.setattr(torch, "__version__", "9.7.3")
    assert other_minor != cpu and F.feature_cache_key(model, "mini-digits", "val", device="cpu") == other_minor


def test_extraction_runs_in_the_mode_its_cache_key_names(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_LIB_CACHE", str(tmp_path))
    seen = []
    real = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        seen.append((device_type, dtype, enabled))
        return real(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    got = F.get_features(model, "mini-digits", "val", device="cpu", progress=False)
    assert got.key == F.feature_cache_key(model, "mini-digits", "val", device="cpu")
    assert seen and all(s[0] == "cpu" and not s[2] for s in seen)  # fp32 on CPU, as the key says
    manifest = (F.cache_dir("features") / got.key / "manifest.json").read_text()
    assert '"autocast": "off"' in manifest
