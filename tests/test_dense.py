"""Dense prediction: metrics against hand computations, the frozen encoder, the weight check, learning,
k-means, the paper's file layouts and the section's rows."""

import dataclasses
import json
from functools import partial

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix

from ssl_lib.data import mini
from ssl_lib.data.dense import DENSE_TASKS, ArrayDenseDataset, DenseTask, open_dense, valid_normals
from ssl_lib.evaluate.dense import (
    DenseCfg, DenseEncoder, EncoderWeightsError, angular_error, check_encoder_weights, normals_metrics,
    normals_vocabulary, preset_cfg, run_dense_task, segmentation_counts, segmentation_metrics,
)
from ssl_lib.exceptions import ConfigError, DataNotFoundError
from ssl_lib.models import build_arch, create_model
from ssl_lib.notebook import setup
from ssl_lib.paper_tables import paper_table
from ssl_lib.paths import repo_root
from ssl_lib.sections import notebook_schema
from ssl_lib.sections.dense import DenseParams, dense_cfg, run_dense_section
from ssl_lib.study import load_study

# --------------------------------------------------------------------------------------------
# Metrics


def test_segmentation_metrics_accumulate_over_the_test_set_and_skip_ignored_and_absent():
    # 4 classes; class 3 is in neither truth nor prediction; -1 is ignored (its prediction 2 must not count)
    target = np.array([[[0, 0], [1, -1]], [[1, 1], [0, 2]]])
    pred = np.array([[[0, 1], [1, 2]], [[1, 0], [0, 2]]])
    metrics = segmentation_metrics(segmentation_counts(pred, target, 4, ignore_index=-1))
    # by hand: class 0 I=2 U=4, class 1 I=2 U=4, class 2 I=1 U=1 -> (0.5 + 0.5 + 1) / 3; 5 of 7 labelled right
    assert metrics["seg_mean_iou"] == pytest.approx(2 / 3)
    assert metrics["seg_pixel_acc"] == pytest.approx(100 * 5 / 7)
    np.testing.assert_allclose(metrics["iou_per_class"][:3], [0.5, 0.5, 1.0])
    assert np.isnan(metrics["iou_per_class"][3])
    # the same from scikit-learn's confusion matrix over the labelled pixels
    valid = target != -1
    cm = confusion_matrix(target[valid], pred[valid], labels=range(4))
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    assert metrics["seg_mean_iou"] == pytest.approx(np.mean(np.diag(cm)[union > 0] / union[union > 0]))
    # accumulation differs from averaging per-image mIoUs (0.5 and 2/3)
    per_image = [segmentation_metrics(segmentation_counts(pred[i:i + 1], target[i:i + 1], 4))["seg_mean_iou"]
                 for i in range(2)]
    assert np.mean(per_image) == pytest.approx(7 / 12)


def test_angular_error_and_normals_metrics_by_hand():
    z = np.array([0.0, 0.0, 1.0])
    assert angular_error(z, z) == pytest.approx(0.0, abs=1e-6)
    assert angular_error(z, np.array([1.0, 0.0, 0.0])) == pytest.approx(90.0)
    assert angular_error(np.array([1.0, 0.0, 0.0]), np.array([3.0, 3.0, 0.0])) == pytest.approx(45.0)  # renormalised
    assert angular_error(z, -z) == pytest.approx(180.0)
    assert np.isfinite(angular_error(z * (1 + 1e-12), z))  # cosine clipped at 1
    metrics = normals_metrics(np.array([5.0, 10.0, 20.0, 22.5, 25.0, 40.0]))
    assert metrics["sn_mean_err"] == pytest.approx(122.5 / 6)
    assert metrics["sn_median_err"] == pytest.approx(21.25)
    assert metrics["sn_within_11.25"] == pytest.approx(100 * 2 / 6)
    assert metrics["sn_within_22.5"] == pytest.approx(100 * 3 / 6)  # strictly below, as the paper's code
    assert metrics["sn_within_30"] == pytest.approx(100 * 5 / 6)


def test_normals_vocabulary_recovers_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 1.0], [0.6, 0, 0.8], [0, -0.6, 0.8]])
    points = centres[rng.integers(0, 3, 3000)] + rng.normal(0, 0.01, (3000, 3))
    normals = torch.from_numpy(points.T.reshape(1, 3, 50, 60).astype(np.float32))
    vocab = normals_vocabulary(normals, 3, n_pixels=2000, seed=1)
    assert vocab.shape == (3, 3) and np.allclose(np.linalg.norm(vocab, axis=1), 1, atol=1e-5)
    distance = np.linalg.norm(centres[:, None] - vocab[None], axis=-1)
    assert sorted(distance.argmin(1)) == [0, 1, 2] and distance.min(1).max() < 0.02
    real = torch.from_numpy(mini.load("mini-normals", "train")["normals"][:20]).permute(0, 3, 1, 2)
    a, b = (normals_vocabulary(real, 40, n_pixels=5000, seed=0) for _ in range(2))
    assert a.shape == (40, 3) and np.array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Encoder, decoders and the weight check


@pytest.fixture(scope="module")
def supervised():
    return create_model("supervised")


def test_encoder_stage_shapes_pooling_and_dilation(supervised):
    x = torch.rand(2, 3, 64, 64)
    sizes = lambda enc: [m.shape[-1] for m in enc(x)]  # noqa: E731
    assert sizes(DenseEncoder(supervised)) == [32, 16, 8, 4]  # strides 2/4/8/16
    assert sizes(DenseEncoder(supervised, min_stride=4)) == [16, 16, 8, 4]
    dilated = DenseEncoder(supervised, dilate=("layer4",))
    assert sizes(dilated) == [32, 16, 8, 8] and dilated.channels == [32, 64, 128, 256]
    check_encoder_weights(dilated.backbone, supervised.backbone.state_dict())  # dilation keeps the weights


def test_weight_check_passes_for_a_real_checkpoint_and_fails_when_tampered(supervised):
    reference = supervised.backbone.state_dict()
    record = check_encoder_weights(DenseEncoder(supervised).backbone, reference)
    assert record["passed"] and record["tensors"] == len(reference) > 0
    tampered = DenseEncoder(supervised)
    with torch.no_grad():
        tampered.backbone.layer3[0].conv1.weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(EncoderWeightsError, match="1 differ"):
        check_encoder_weights(tampered.backbone, reference)
    with pytest.raises(EncoderWeightsError, match="1 tensor\\(s\\) missing"):
        check_encoder_weights(DenseEncoder(supervised).backbone, {**reference, "layer5.weight": torch.zeros(1)})
    # the paper's hazard: strict=False under other key names loads nothing and leaves a random encoder
    fresh = build_arch("mini_resnet")
    fresh.load_state_dict({f"module.{k}": v for k, v in reference.items()}, strict=False)
    with pytest.raises(EncoderWeightsError, match="strict=False"):
        check_encoder_weights(fresh, reference)


VIT = "timm:vit_tiny_patch16_224?pretrained=false&size=32"
CONVNEXT = "timm:convnext_atto?pretrained=false&size=32"


@pytest.fixture(scope="module")
def vit():
    return create_model(VIT)


@pytest.mark.parametrize("spec", [VIT, CONVNEXT], ids=["vit", "convnext"])
def test_a_vit_and_a_convnext_give_four_levels_carry_their_weights_and_dilate_their_own_way(spec):
    model = create_model(spec)
    encoder = DenseEncoder(model, min_stride=4)
    neck = encoder.neck()
    with torch.no_grad():
        maps = neck(encoder(torch.rand(2, 3, 64, 64)))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
    assert neck.channels == ([48, 96, 192, 192] if spec == VIT else [40, 80, 160, 320])
    reference = model.backbone.state_dict()
    assert check_encoder_weights(encoder.backbone, reference)["tensors"] == len(reference)
    # the paper's normals preset dilates layer3 and layer4: output stride 8 (a ViT: pyramid levels built at stride 8)
    dilated = DenseEncoder(model, dilate=("layer3", "layer4"))
    assert dilated.neck().strides == [4, 8, 8, 8]
    check_encoder_weights(dilated.backbone, reference)
    with torch.no_grad():
        next(iter(encoder.backbone.parameters()))[0] += 1e-3
    with pytest.raises(EncoderWeightsError, match="1 differ"):
        check_encoder_weights(encoder.backbone, reference)


def test_a_vit_trains_its_pyramid_on_cached_maps_and_leaves_its_encoder_untouched(vit):
    cfg = preset_cfg("mini", "segmentation", iterations=3, train_images=16)
    torch.manual_seed(0)
    start = DenseEncoder(vit, cfg.dilate, cfg.min_stride).neck().state_dict()  # the run's seeded initialisation
    result = run_dense_task(vit, "mini-scenes", cfg, n_boot=0)
    assert result.extra["cached_features"] and result.extra["encoder_unchanged_after_training"]
    assert result.extra["weights_check"]["passed"] and result.extra["pyramid"]["kind"] == "plain"
    trained = result.model.neck.state_dict()
    assert set(trained) == set(start) and any(not torch.equal(v, start[k]) for k, v in trained.items())
    assert 0 <= result.metrics["seg_mean_iou"] <= 1 and np.isfinite(result.losses).all()
    end_to_end = run_dense_task(vit, "mini-scenes", dataclasses.replace(cfg, freeze=False, cache_features=False),
                                n_boot=0)
    assert not end_to_end.extra["encoder_unchanged_after_training"]


def test_cfg_errors_are_one_line():
    with pytest.raises(ConfigError, match="upernet"):
        DenseCfg(decoder="unet")
    with pytest.raises(ConfigError, match="batch_size"):
        DenseCfg(batch_size=1)


# --------------------------------------------------------------------------------------------
# Training


def test_frozen_backbone_is_bit_identical_after_training_and_end_to_end_is_not(supervised):
    before = {k: v.clone() for k, v in supervised.backbone.state_dict().items()}
    cfg = preset_cfg("mini", "segmentation", iterations=3, train_images=16, cache_features=False)
    frozen = run_dense_task(supervised, "mini-scenes", cfg, n_boot=0)
    assert frozen.extra["encoder_unchanged_after_training"] and frozen.extra["weights_check"]["passed"]
    trained = frozen.model.encoder.backbone.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in before.items())  # BN running stats included
    end_to_end = run_dense_task(supervised, "mini-scenes", dataclasses.replace(cfg, freeze=False), n_boot=0)
    changed = end_to_end.model.encoder.backbone.state_dict()
    assert not end_to_end.extra["encoder_unchanged_after_training"] and end_to_end.extra["freeze"] is False
    assert any(not torch.equal(changed[k], v) for k, v in before.items())
    # the weights themselves learn, not only batch-norm statistics (a FeatureModel's parameters do not require grad)
    assert any(not torch.equal(p, before[k]) for k, p in end_to_end.model.encoder.backbone.named_parameters())
    assert all(torch.equal(supervised.backbone.state_dict()[k], v) for k, v in before.items())  # the model itself


def test_paper_preset_trains_segmentation_end_to_end_and_freezes_normals_unless_forced():
    # the paper's codes: CSAIL segmentation trains everything, the normals code freezes up to layer4
    assert preset_cfg("paper", "segmentation").freeze is False and preset_cfg("paper", "normals").freeze is True
    assert preset_cfg("mini", "segmentation").freeze and preset_cfg("mini", "normals").freeze
    paper = load_study("paper")
    by_preset = DenseParams(study="paper")
    assert dense_cfg(by_preset, "segmentation", paper).freeze is False
    assert dense_cfg(by_preset, "normals", paper).freeze is True
    assert dense_cfg(DenseParams(study="paper", freeze=True), "segmentation", paper).freeze is True
    assert dense_cfg(DenseParams(study="paper", freeze=False), "normals", paper).freeze is False
    assert dense_cfg(DenseParams(), "segmentation").freeze is True  # mini
    with pytest.raises(ConfigError, match="freeze must be True, False or None"):
        dense_cfg(DenseParams(freeze="yes"), "normals")


def test_notebook_setup_takes_none_for_the_presets_freeze_and_refuses_other_types():
    assert setup({"freeze": None}, "dense").freeze is None
    assert setup({"freeze": False, "iterations": None}, "dense").freeze is False
    with pytest.raises(ConfigError, match="'freeze' must be True or False or None, got 'yes'"):
        setup({"freeze": "yes"}, "dense")
    with pytest.raises(ConfigError, match="'iterations' must be an integer or None, got 2.5"):
        setup({"iterations": 2.5}, "dense")


def test_segmentation_beats_predicting_the_majority_class(supervised):
    result = run_dense_task(supervised, "mini-scenes", preset_cfg("mini", "segmentation"), n_boot=20)
    masks = mini.load("mini-scenes", "test")["masks"]
    majority = np.bincount(masks.ravel()).argmax()
    baseline = segmentation_metrics(segmentation_counts(np.full_like(masks, majority), masks, 7))["seg_mean_iou"]
    assert result.metrics["seg_mean_iou"] > baseline + 0.02
    assert result.extra["trivial_baseline"]["seg_mean_iou"] == pytest.approx(baseline, abs=1e-4)
    assert result.ci["seg_mean_iou"][0] <= result.metrics["seg_mean_iou"] <= result.ci["seg_mean_iou"][1]
    assert result.examples["predictions"].shape == (4, 64, 64)


def _colour_normals(split, *, root=None, download=False, image_size=None, full_resolution=False, n=None):
    """A learnable stand-in: the image *is* the normal map, (n + 1) / 2 as RGB."""
    normals = mini.load("mini-normals", split)["normals"][:n]
    return ArrayDenseDataset(np.round((normals + 1) / 2 * 255).astype(np.uint8), normals)


@pytest.fixture
def colour_normals(monkeypatch):
    task = DenseTask("colour-normals", "normals", 3, partial(_colour_normals, n=160), fingerprint="test")
    monkeypatch.setitem(DENSE_TASKS._entries, task.name, task)
    return task.name


def test_normals_beat_the_mean_training_normal(supervised, colour_normals):
    cfg = preset_cfg("mini", "normals", iterations=100, train_images=None)
    result = run_dense_task(supervised, colour_normals, cfg, n_boot=20)
    train = mini.load("mini-normals", "train")["normals"][:160].reshape(-1, 3).mean(0)
    test = mini.load("mini-normals", "test")["normals"][:160]
    baseline = normals_metrics(angular_error(np.broadcast_to(train, test.shape), test))["sn_mean_err"]
    # the whole interval clearly below predicting the mean training normal everywhere
    assert result.ci["sn_mean_err"][1] < baseline - 2 and result.metrics["sn_mean_err"] < baseline - 3
    assert result.extra["trivial_baseline"]["sn_mean_err"] == pytest.approx(baseline, abs=0.05)
    assert result.extra["head"] == "classification" and result.extra["prediction"] == "expected"
    assert result.examples["errors"].shape == (4, 64, 64)
    regression = run_dense_task(supervised, colour_normals, dataclasses.replace(cfg, head="regression"), n_boot=0)
    assert regression.metrics["sn_mean_err"] < baseline and regression.extra["head"] == "regression"


def test_training_is_deterministic(supervised):
    cfg = preset_cfg("mini", "segmentation", iterations=8, train_images=32)
    a, b = (run_dense_task(supervised, "mini-scenes", cfg, n_boot=0, seed=3) for _ in range(2))
    assert a.losses == b.losses and a.metrics == b.metrics


# --------------------------------------------------------------------------------------------
# The paper's datasets on fake trees


def test_fake_ade20k_tree_loads_with_the_label_shift(tmp_path, supervised):
    base = tmp_path / "ADEChallengeData2016"
    labelled = 0
    for folder in ("training", "validation"):
        (base / "images" / folder).mkdir(parents=True)
        (base / "annotations" / folder).mkdir(parents=True)
        for i, (h, w) in zip((1, 2), ((10, 16), (12, 20))):  # sizes differ, as ADE20K's do
            Image.fromarray(np.full((h, w, 3), 100 * i, np.uint8)).save(base / "images" / folder / f"ADE_{i}.jpg")
            label = np.zeros((h, w), np.uint8)
            label[:, 8:] = 1
            label[0, :] = 150
            label[-1, :3] = 0  # "other": ignored
            Image.fromarray(label).save(base / "annotations" / folder / f"ADE_{i}.png")
            labelled += (label > 0).sum() if folder == "validation" else 0
    data = open_dense("ade20k", "test", root=tmp_path)
    image, target = data[0]
    assert image.shape == (3, 10, 16) and image.dtype == torch.uint8
    assert target.dtype == torch.int64 and target[5, 0] == -1 and target[5, 15] == 0 and target[0, 3] == 149
    image, target = open_dense("ade20k", "train", root=tmp_path, image_size=8)[0]
    assert image.shape == (3, 8, 8) and set(target.unique().tolist()) <= {-1, 0, 149}
    image, target = open_dense("ade20k", "test", root=tmp_path, image_size=32, full_resolution=True)[1]
    assert image.shape == (3, 32, 53) and target.shape == (12, 20)  # no crop; the label stays native
    with pytest.raises(DataNotFoundError, match="download=True"):
        open_dense("ade20k", "train", root=tmp_path / "empty")
    # the paper preset's path: files through a DataLoader, the whole network trained (no cache)
    cfg = preset_cfg("paper", "segmentation", width=8, iterations=2, batch_size=2, image_size=32)
    result = run_dense_task(supervised, "ade20k", cfg, root=tmp_path, n_boot=0)
    assert result.n_test == 2 and not result.extra["cached_features"] and 0 <= result.metrics["seg_mean_iou"] <= 1
    assert result.extra["freeze"] is False and not result.extra["encoder_unchanged_after_training"]
    reference = supervised.backbone.state_dict()
    assert any(not torch.equal(p, reference[k]) for k, p in result.model.encoder.backbone.named_parameters())
    assert result.extra["scored_pixels"] == labelled  # every labelled pixel of both native-size labels
    assert [e.shape for e in result.examples["targets"]] == [(10, 16), (12, 20)]
    assert [e.shape[:2] for e in result.examples["images"]] == [(10, 16), (12, 20)]


def test_nyuv2_test_images_are_scored_uncropped_at_native_size(tmp_path, supervised):
    """640 x 480 test images: every valid pixel is scored (a centre crop kept 480 x 480 of them)."""
    rng = np.random.default_rng(0)
    valid = 0
    for split in ("train", "test"):
        base = tmp_path / "nyuv2" / split
        for sub in ("rgb", "normals", "mask"):
            (base / sub).mkdir(parents=True)
        for i in range(2):
            normals = rng.normal(size=(480, 640, 3))
            normals[..., 2] = np.abs(normals[..., 2]) + 0.5
            normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
            mask = np.where(rng.random((480, 640)) < 0.1, 0, 255).astype(np.uint8)
            valid += (mask > 0).sum() if split == "test" else 0
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(base / "rgb" / f"{i:04d}.png")
            Image.fromarray(np.round((normals + 1) / 2 * 255).astype(np.uint8)).save(base / "normals" / f"{i:04d}.png")
            Image.fromarray(mask).save(base / "mask" / f"{i:04d}.png")
    image, target = open_dense("nyuv2", "test", root=tmp_path, image_size=64, full_resolution=True)[0]
    assert image.shape == (3, 64, 85) and target.shape == (3, 480, 640)
    cfg = preset_cfg("paper", "normals", width=8, iterations=2, image_size=64, kmeans_pixels=2000)
    result = run_dense_task(supervised, "nyuv2", cfg, root=tmp_path, n_boot=0)
    assert result.extra["freeze"] is True and result.extra["encoder_unchanged_after_training"]
    assert result.extra["scored_pixels"] == valid
    assert result.examples["errors"].shape == (2, 480, 640) and np.isfinite(result.examples["errors"]).sum() == valid


def test_fake_nyuv2_tree_decodes_normals_and_mask(tmp_path):
    base = tmp_path / "nyuv2" / "train"
    for sub in ("rgb", "normals", "mask"):
        (base / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(base / "rgb" / "0001.png")
    encoded = np.tile(np.array([128, 128, 255], np.uint8), (4, 6, 1))  # (0, 0, 1)
    encoded[0, 0] = (255, 128, 128)  # (1, 0, 0)
    encoded[0, 1] = (128, 0, 128)  # (0, -1, 0)
    Image.fromarray(encoded).save(base / "normals" / "0001.png")
    mask = np.full((4, 6), 255, np.uint8)
    mask[3, 5] = 0
    Image.fromarray(mask).save(base / "mask" / "0001.png")
    _, target = open_dense("nyuv2", "train", root=tmp_path)[0]
    n = target.permute(1, 2, 0).numpy()
    assert target.shape == (3, 4, 6)
    assert angular_error(n[1, 1], [0, 0, 1]) < 0.5 and angular_error(n[0, 0], [1, 0, 0]) < 0.5
    assert angular_error(n[0, 1], [0, -1, 0]) < 0.5
    valid = valid_normals(target)
    assert not valid[3, 5] and valid.sum() == 23 and np.all(n[3, 5] == 0)
    with pytest.raises(DataNotFoundError, match="Ladick"):
        open_dense("nyuv2", "test", root=tmp_path)


# --------------------------------------------------------------------------------------------
# The section and its notebooks


def test_section_rows_carry_the_table5_metric_names(colour_normals, tmp_path):
    results = tmp_path / "results.csv"
    common = dict(model="supervised", iterations=20, n_boot=10, results_path=str(results))
    seg = run_dense_section(DenseParams(dataset="mini-scenes", **common)).rows
    nrm = run_dense_section(DenseParams(dataset=colour_normals, **common)).rows
    table5 = set(paper_table("table5_dense").columns) - {"model"}
    assert list(seg.metric) == ["seg_mean_iou", "seg_pixel_acc"]
    assert list(nrm.metric) == ["sn_mean_err", "sn_median_err", "sn_within_11.25", "sn_within_22.5", "sn_within_30"]
    assert set(seg.metric) | set(nrm.metric) == table5
    rows = pd.concat([seg, nrm])
    assert (rows.section == "dense").all() and (rows.selected_on == "none: fixed schedule").all()
    extra = json.loads(nrm.extra.iloc[0])
    assert extra["weights_check"]["passed"] and extra["iterations"] == 20 and extra["freeze"] is True
    assert extra["freeze_set_by"] == "preset" and extra["scored_pixels"] == 160 * 64 * 64
    assert json.loads(seg.protocol_params.iloc[0])["decoder"] == "upernet"
    assert np.isnan(nrm.set_index("metric").ci_low["sn_median_err"]) and not seg.ci_low.isna().any()
    assert len(pd.read_csv(results)) == 7


@pytest.mark.parametrize(("notebook", "schema"), [("dense", "dense"), ("dense_summary", "dense_summary")])
def test_notebook_parameters_match_the_section(notebook, schema):
    declared = pm.inspect_notebook(str(repo_root() / "notebooks" / f"{notebook}.ipynb"))
    defaults = {f.name: f.default for f in dataclasses.fields(notebook_schema(schema))}
    assert list(declared) == list(defaults)
    assert all(eval(info["default"]) == defaults[name] for name, info in declared.items())
