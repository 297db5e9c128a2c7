"""Detection: the VOC metric against hand computations, the detector's freezing and weights, the
loaders (a fake VOCdevkit in the real layout) and the section's rows."""

import dataclasses
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
import torch
from PIL import Image

from ssl_lib.data._paper import VOC_CLASSES
from ssl_lib.data.detection import MiniScenes, get_detection_spec, open_detection
from ssl_lib.metrics.detection import summaries, weighted_class_ap
from ssl_lib.evaluate.detection import (
    DETECTION_PRESETS, bootstrap_detection_ci, build_detector, check_backbone_weights, detection_metrics,
    lr_schedule, match_detections, pairwise_iou, predict_detections, train_detector, voc_ap,
)
from ssl_lib.exceptions import ConfigError, DataNotFoundError, UnknownNameError
from ssl_lib.models import create_model
from ssl_lib.paper_tables import paper_table
from ssl_lib.sections import notebook_schema
from ssl_lib.sections.detection import DetectionParams, detection_cfg, run_detection_section

ROOT = Path(__file__).resolve().parents[1]


def _gt(boxes, labels, difficult=None):
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.asarray(labels), "difficult": np.zeros(len(boxes), bool)
            if difficult is None else np.asarray(difficult, bool)}


def _det(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "scores": np.asarray(scores, float),
            "labels": np.asarray(labels)}


# ---------------------------------------------------------------------------------------------
# The metric


def test_iou_on_hand_computed_boxes():
    a, b = [[0, 0, 10, 10]], [[5, 5, 15, 15], [10, 0, 20, 10], [0, 0, 10, 5]]
    np.testing.assert_allclose(pairwise_iou(a, b), [[25 / 175, 0.0, 0.5]])
    # inclusive pixel indices (VOC devkit): [0, 0, 2, 2] is 3x3 pixels; overlap with [1, 1, 3, 3] is 2x2
    np.testing.assert_allclose(pairwise_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]], plus_one=True), [[4 / 14]])
    np.testing.assert_allclose(pairwise_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]]), [[1 / 7]])


def test_ap_of_a_toy_set_matches_the_hand_computation():
    # 2 ground-truth boxes; detections by score: TP, FP (no overlap), TP
    # → recall .5 .5 1, precision 1 .5 2/3; 11-point: 6 points at 1, 5 at 2/3 → 28/33
    gt = [_gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])]
    det = [_det([[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [1, 1, 1])]
    assert detection_metrics(det, gt, 1)["AP50"] == pytest.approx(100 * 28 / 33)
    # area under the envelope: 0.5 * 1 + 0.5 * 2/3
    assert detection_metrics(det, gt, 1, use_07_metric=False)["AP50"] == pytest.approx(100 * 5 / 6)
    np.testing.assert_allclose(voc_ap([1, 1, 2], [0, 1, 1], 2), 28 / 33)


def test_perfect_detector_scores_100_and_a_class_without_detections_0():
    gt = [_gt([[0, 0, 10, 10], [20, 20, 34, 30]], [1, 2]), _gt([[5, 5, 25, 25]], [1])]
    perfect = [_det(g["boxes"], np.linspace(0.9, 0.5, len(g["labels"])), g["labels"]) for g in gt]
    m = detection_metrics(perfect, gt, 2)
    assert m["AP"] == m["AP50"] == m["AP75"] == pytest.approx(100.0)
    only_class_1 = [_det(g["boxes"][g["labels"] == 1], [0.9] * int((g["labels"] == 1).sum()), [1]) for g in gt]
    m = detection_metrics(only_class_1, gt, 2)
    assert m["AP50_per_class"] == pytest.approx([100.0, 0.0]) and m["AP50"] == pytest.approx(50.0)


def test_iou_exactly_at_the_threshold_is_not_a_match():
    gt = [_gt([[0, 0, 10, 10]], [1])]
    at = detection_metrics([_det([[0, 0, 10, 5]], [0.9], [1])], gt, 1, thresholds=(0.5,))  # IoU = 0.5
    above = detection_metrics([_det([[0, 0, 10, 6]], [0.9], [1])], gt, 1, thresholds=(0.5,))  # IoU = 0.6
    assert at["AP50"] == 0.0 and above["AP50"] == pytest.approx(100.0)


def test_difficult_boxes_are_neither_true_nor_false_positives():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30]]
    det = [_det(boxes, [0.9, 0.8], [1, 1])]
    easy = detection_metrics(det, [_gt(boxes, [1, 1], [True, False])], 1)
    assert easy["AP50"] == pytest.approx(100.0)  # the difficult hit is ignored, the other is TP
    table = match_detections(det, [_gt(boxes, [1, 1], [True, False])], 1, thresholds=(0.5,))
    assert table.ignored.tolist() == [[True, False]] and table.tp.tolist() == [[False, True]]
    assert table.npos.tolist() == [[1]]
    # a detection only on the difficult box: no false positive, but the easy box is missed
    missed = detection_metrics([_det(boxes[:1], [0.9], [1])], [_gt(boxes, [1, 1], [True, False])], 1)
    assert missed["AP50"] == 0.0


def test_duplicates_and_matches_follow_voc_eval():
    # a second detection of a box already found is a FP; a detection whose best-IoU box is taken is a
    # FP even if another box overlaps it above the threshold (voc_eval takes the argmax over all boxes)
    gt = [_gt([[0, 0, 10, 10], [0, 0, 10, 8]], [1, 1])]
    det = [_det([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])]
    table = match_detections(det, gt, 1, thresholds=(0.5,))
    assert table.tp.tolist() == [[True, False]]


def test_weighted_bootstrap_equals_rescoring_duplicated_images():
    rng = np.random.default_rng(0)
    preds, gts = [], []
    for _ in range(25):
        g = rng.integers(1, 4)
        xy = rng.uniform(0, 40, (g, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 20, (g, 2))], 1)
        labels = rng.integers(1, 4, g)
        gts.append(_gt(boxes, labels, rng.random(g) < 0.15))
        pick = rng.integers(0, g, rng.integers(0, 6))
        wrong = rng.random(len(pick)) < 0.3
        preds.append(_det(boxes[pick] + rng.normal(0, 3, (len(pick), 4)), rng.random(len(pick)),
                          np.where(wrong, rng.integers(1, 4, len(pick)), labels[pick])))
    table = match_detections(preds, gts, 3)
    for use_07 in (True, False):
        copies = rng.integers(0, 3, len(gts))
        weighted = summaries(weighted_class_ap(table, copies[None].astype(float), use_07), table.thresholds)
        idx = np.repeat(np.arange(len(gts)), copies)
        explicit = detection_metrics([preds[i] for i in idx], [gts[i] for i in idx], 3, use_07_metric=use_07)
        for name in ("AP", "AP50", "AP75"):
            assert weighted[name][0] == pytest.approx(explicit[name])
    ci = bootstrap_detection_ci(table, n_boot=50, seed=0)
    assert ci["AP50"][0] <= ci["AP50"][1] and bootstrap_detection_ci(table, n_boot=0) == {}


# ---------------------------------------------------------------------------------------------
# The detector

TINY = DETECTION_PRESETS.get("mini").with_schedule(iterations=3, batch_size=4)


@pytest.fixture(scope="module")
def byol():
    return create_model("byol")


@pytest.fixture(scope="module")
def scenes():
    return MiniScenes("train"), MiniScenes("test")


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("setting", ["frozen", "finetune"])
def test_freezing_keeps_frozen_stages_bit_identical_and_trains_the_rest(byol, scenes, setting):
    torch.manual_seed(0)
    det = build_detector(byol, 6, TINY, setting)
    check = check_backbone_weights(det, byol)
    assert check["ok"] and check["tensors_compared"] > 50
    before = _snapshot(det.backbone.body)
    train_detector(det, torch.utils.data.Subset(scenes[0], range(16)), TINY, seed=0, progress=False)
    after = det.backbone.body.state_dict()
    frozen_prefixes = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.") if setting == "frozen" else ()
    weights = [k for k in before if k.endswith("weight") and "bn" not in k and "downsample.1" not in k]  # convs
    for key in before:
        if key.startswith(frozen_prefixes) or key not in weights:  # frozen stages and every FrozenBN buffer
            assert torch.equal(before[key], after[key]), key
        else:
            assert not torch.equal(before[key], after[key]), f"{key} did not train"
    assert any(k.startswith("layer4.") for k in weights if not torch.equal(before[k], after[k]))


def test_training_is_deterministic_given_the_seed(byol, scenes):
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        det = build_detector(byol, 6, TINY, "finetune")
        losses = train_detector(det, torch.utils.data.Subset(scenes[0], range(16)), TINY, seed=3, progress=False)
        states.append((losses, _snapshot(det)))
    assert states[0][0] == states[1][0]
    assert all(torch.equal(v, states[1][1][k]) for k, v in states[0][1].items())


def test_weights_check_passes_for_a_real_checkpoint_and_raises_on_a_tampered_one(byol):
    torch.manual_seed(0)
    det = build_detector(byol, 6, TINY, "frozen")
    assert check_backbone_weights(det, byol)["weights_sha256"] == byol.weights_hash
    with torch.no_grad():
        det.backbone.body.layer3[0].conv1.weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(ConfigError, match=r"1 differ .*layer3\.0\.conv1\.weight"):
        check_backbone_weights(det, byol)
    with torch.no_grad():  # FrozenBN statistics are checked too
        det.backbone.body.layer3[0].conv1.weight[0, 0, 0, 0] -= 1e-3
        det.backbone.body.bn1.running_var[0] = 7.0
    with pytest.raises(ConfigError, match="bn1.running_var"):
        check_backbone_weights(det, byol)


VIT = "timm:vit_tiny_patch16_224?pretrained=false&size=32"
CONVNEXT = "timm:convnext_atto?pretrained=false&size=32"
# the last stage (trains when frozen), a frozen stage, the stem (trains only when fine-tuned)
PARTS = {VIT: ("blocks.10.", "blocks.4.", "patch_embed."), CONVNEXT: ("stages.3.", "stages.1.", "stem.")}


@pytest.mark.parametrize("spec", [VIT, CONVNEXT], ids=["vit", "convnext"])
def test_a_vit_and_a_convnext_detect_with_the_right_stages_frozen_and_their_weights_checked(spec, scenes):
    model = create_model(spec)
    last, middle, stem = PARTS[spec]
    for setting in ("frozen", "finetune"):
        torch.manual_seed(0)
        det = build_detector(model, 6, TINY, setting)
        body = det.backbone.body.backbone
        assert check_backbone_weights(det, model)["tensors_compared"] == len(model.backbone.state_dict())
        before, neck = _snapshot(body), _snapshot(det.backbone.neck)
        train_detector(det, torch.utils.data.Subset(scenes[0], range(8)), TINY, seed=0, progress=False)
        after = body.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert any(k.startswith(last) for k in changed), setting
        assert any(k.startswith((middle, stem)) for k in changed) == (setting == "finetune"), setting
        assert all(not p.requires_grad for k, p in body.named_parameters() if k.startswith(stem)) == (setting == "frozen")
    if spec == VIT:  # the simple pyramid trains with the FPN
        assert neck and any(not torch.equal(v, det.backbone.neck.state_dict()[k]) for k, v in neck.items())
    info = det.backbone.info()
    assert info["strides"] == [4, 8, 16, 32] and info["kind"] == ("plain" if spec == VIT else "hierarchical")
    det = build_detector(model, 6, TINY, "frozen")
    body = det.backbone.body.backbone
    with torch.no_grad():
        dict(body.named_parameters())[f"{last}norm1.weight" if spec == VIT else f"{last}blocks.0.norm.weight"][0] += 1
    with pytest.raises(ConfigError, match=r"1 differ \(e\.g\. \['" + last.replace(".", r"\.")):
        check_backbone_weights(det, model)


def test_a_short_training_run_beats_a_trivial_detector(scenes):
    train, test = scenes
    # trivial: every class at the mean training box in every image
    mean_box = torch.cat([t["boxes"] for t in train.targets]).mean(0).numpy()
    targets = [{k: v.numpy() for k, v in t.items()} for t in test.targets]
    trivial = detection_metrics([_det(np.tile(mean_box, (6, 1)), np.ones(6), np.arange(1, 7))] * len(test), targets, 6)
    cfg = DETECTION_PRESETS.get("mini").with_schedule(iterations=40)
    model = create_model("supervised")
    torch.manual_seed(0)
    det = build_detector(model, 6, cfg, "frozen")
    losses = train_detector(det, train, cfg, seed=0, progress=False)
    predictions, eval_targets = predict_detections(det, torch.utils.data.Subset(test, range(100)))
    trained = detection_metrics(predictions, eval_targets, 6)
    assert trivial["AP50"] < 1.0
    assert trained["AP50"] > 3.0 + 3 * trivial["AP50"], (trained, trivial)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_lr_schedule_warms_up_then_steps():
    cfg = dataclasses.replace(TINY, lr=0.1, iterations=10, warmup_iters=4, warmup_factor=0.001, steps=(6, 8))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched, lrs = lr_schedule(opt, cfg), []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [1e-4, 0.025075, 0.05005, 0.075025, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_presets_and_schedule_overrides():
    paper = DETECTION_PRESETS.get("paper")
    assert (paper.lr, paper.batch_size, paper.iterations, paper.steps) == (0.0025, 2, 144_000, (96_000, 128_000))
    assert paper.min_size_train == tuple(range(480, 801, 32)) and paper.anchor_sizes[0] == (32,)
    short = paper.with_schedule(iterations=1440, batch_size=4)
    assert (short.iterations, short.steps, short.batch_size, short.warmup_iters) == (1440, (960, 1280), 4, 100)
    assert detection_cfg(DetectionParams())[0] == "mini"
    assert detection_cfg(DetectionParams(study="paper"))[0] == "paper"
    with pytest.raises(UnknownNameError, match="Unknown detection preset 'minii'. Did you mean 'mini'"):
        detection_cfg(DetectionParams(preset="minii"))
    with pytest.raises(ConfigError, match="must be the last of min_size_train"):
        dataclasses.replace(paper, min_size_test=600)
    with pytest.raises(ConfigError, match="'iterations' must be a positive integer"):
        detection_cfg(DetectionParams(iterations=0))


# ---------------------------------------------------------------------------------------------
# Loaders

_XML = """<annotation><folder>VOC{year}</folder><filename>{name}.jpg</filename>
<size><width>40</width><height>30</height><depth>3</depth></size>{objects}</annotation>"""
_OBJ = """<object><name>{cls}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>
<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"""


def _fake_voc(root: Path) -> None:
    """VOCdevkit/VOC2007 (trainval + test) and VOC2012 (trainval) with 40x30 images."""
    sets = {"2007": {"trainval": {"000005": [("dog", 0, (1, 2, 20, 25)), ("person", 1, (10, 5, 40, 30))]},
                     "test": {"000001": [("car", 0, (3, 4, 13, 14))]}},
            "2012": {"trainval": {"2008_000002": [("tvmonitor", 0, (5, 6, 35, 28))]}}}
    for year, image_sets in sets.items():
        base = root / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for image_set, images in image_sets.items():
            (base / "ImageSets/Main" / f"{image_set}.txt").write_text("".join(f"{n}\n" for n in images))
            for name, objects in images.items():
                Image.new("RGB", (40, 30), (255, 0, 0)).save(base / "JPEGImages" / f"{name}.jpg")
                xml = "".join(_OBJ.format(cls=c, d=d, b=b) for c, d, b in objects)
                (base / "Annotations" / f"{name}.xml").write_text(_XML.format(year=year, name=name, objects=xml))


def test_fake_voc_tree_loads_with_detectron2_boxes_labels_and_difficult_flags(tmp_path):
    _fake_voc(tmp_path)
    train = open_detection("voc07+12", "train", root=tmp_path)
    assert len(train) == 2  # VOC2007 trainval + VOC2012 trainval
    image, target = train[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert target["boxes"].tolist() == [[0.0, 1.0, 20.0, 25.0], [9.0, 4.0, 40.0, 30.0]]  # xmin, ymin - 1
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert target["difficult"].tolist() == [False, True]
    _, target = train[1]  # a single object (one <object> element) from VOC2012
    assert target["boxes"].tolist() == [[4.0, 5.0, 35.0, 28.0]] and target["labels"].tolist() == [20]
    _, target = open_detection("voc07+12", "test", root=tmp_path)[0]
    assert target["boxes"].tolist() == [[2.0, 3.0, 13.0, 14.0]] and target["labels"].tolist() == [7]
    spec = get_detection_spec("voc07+12")
    assert spec.num_classes == 20 and (spec.train_split, spec.test_split) == ("train", "test")


def test_missing_voc_and_unknown_names_fail_with_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"Pascal VOC2007 trainval not found under .*download=True") as err:
        open_detection("voc07+12", "train", root=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="Known detection datasets: mini-scenes, voc07"):
        get_detection_spec("voc2007-det")
    with pytest.raises(UnknownNameError, match="Unknown split of mini-scenes 'trainval'"):
        open_detection("mini-scenes", "trainval")


def test_mini_scenes_targets_match_the_generated_arrays(scenes):
    from ssl_lib.data import mini

    arrays = mini.load("mini-scenes", "test")
    image, target = scenes[1][5]
    assert torch.equal(image, torch.from_numpy(arrays["images"][5]).permute(2, 0, 1).float() / 255)
    sel = arrays["box_image"] == 5
    assert target["boxes"].numpy().tolist() == arrays["boxes"][sel].tolist()
    assert target["labels"].numpy().tolist() == arrays["box_labels"][sel].tolist()
    assert sum(len(t["labels"]) for t in scenes[1].targets) == len(arrays["box_labels"])


# ---------------------------------------------------------------------------------------------
# Section and notebooks


def test_section_rows_carry_table4_metric_names_and_resume_from_the_cache(tmp_path):
    params = DetectionParams(dataset="mini-scenes", iterations=2, n_boot=20, results_path=str(tmp_path / "r.csv"))
    run = run_detection_section(params)
    rows = run.rows
    table4 = [c for c in paper_table("table4_detection_voc").columns if c != "model"]
    assert list(rows.metric) == table4
    assert set(rows.selected_on) == {"none: fixed schedule"} and set(rows.section) == {"detection"}
    assert set(rows.train_split) == {"train"} and set(rows.eval_split) == {"test"}
    assert (rows.ci_low <= rows.ci_high).all() and rows.value.between(0, 100).all()
    extra = [__import__("json").loads(e) for e in rows.extra]
    assert all(e["weights_check"]["ok"] and e["iterations"] == 2 and not e["resumed"] for e in extra)
    again = run_detection_section(params)
    assert all(__import__("json").loads(e)["resumed"] for e in again.rows.extra)
    assert again.rows.value.tolist() == rows.value.tolist()
    with pytest.raises(UnknownNameError, match="Unknown detection setting 'frozn'"):
        run_detection_section(dataclasses.replace(params, settings="frozn"))


@pytest.mark.parametrize("notebook, schema", [("detection", "detection"), ("detection_summary", "detection_summary")])
def test_notebook_parameters_match_the_declared_schema(notebook, schema):
    declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"))
    defaults = {f.name: f.default for f in dataclasses.fields(notebook_schema(schema))}
    assert list(declared) == list(defaults)
    for name, info in declared.items():
        assert eval(info["default"]) == defaults[name], name
