"""ssl_lib.pretrain: losses against hand computations, augmentations, training steps, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from ssl_lib.exceptions import SSLLibError, UnknownNameError
from ssl_lib.pretrain import augment as A
from ssl_lib.pretrain import objectives as O
from ssl_lib.pretrain.checkpoint import load_checkpoint, save_checkpoint
from ssl_lib.pretrain.recipes import ZOO, Recipe
from ssl_lib.pretrain.train import (
    build_backbone, build_objective, build_optimizer, lr_at, make_views, pretrain, train_step,
)
from ssl_lib.pretrain.zoo import read_manifest, write_manifest_entry

T = torch.tensor


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on shared cores OpenMP's spin-waiting
    between 2 threads makes these tests ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Losses against hand computations


def test_nt_xent_orthogonal_pairs():
    # views a, b, a', b' with a = a' = e1, b = b' = e2: every anchor has its positive at cos 1
    # and two negatives at cos 0, so each term is -log(e^{1/t} / (e^{1/t} + 2)).
    z = T([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    expected = math.log(1 + 2 * math.exp(-1 / t))
    assert O.nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_general_case_matches_numpy_loops():
    z1 = np.array([[1.0, 2.0], [-1.0, 0.5]])
    z2 = np.array([[0.5, 1.0], [2.0, -1.0]])
    t = 0.3
    v = np.concatenate([z1, z2])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    terms = []
    for i in range(4):
        pos = (i + 2) % 4
        denom = sum(np.exp(v[i] @ v[k] / t) for k in range(4) if k != i)
        terms.append(-np.log(np.exp(v[i] @ v[pos] / t) / denom))
    got = O.nt_xent(torch.from_numpy(z1).float(), torch.from_numpy(z2).float(), t).item()
    assert got == pytest.approx(np.mean(terms), rel=1e-5)


def test_info_nce_with_tiny_queue():
    q, k = T([[1.0, 0.0]]), T([[0.6, 0.8]])
    queue = T([[0.0, 1.0], [-1.0, 0.0]])
    # logits / t = [0.6, 0, -1] / 0.5; the positive is index 0
    expected = -math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(0.0) + math.exp(-2.0)))
    assert O.info_nce(q, k, queue, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_byol_normalised_mse():
    p = T([[1.0, 0.0], [0.0, 2.0]])
    z = T([[1.0, 1.0], [0.0, -1.0]])
    expected = ((2 - 2 / math.sqrt(2)) + (2 - 2 * -1.0)) / 2
    assert O.byol_loss(p, z).item() == pytest.approx(expected, rel=1e-6)


def test_barlow_twins_two_by_two():
    # standardised over the batch of 2 (biased std), columns become +-1:
    # z1 -> [[-1, 1], [1, -1]], z2 -> [[-1, -1], [1, 1]]; C = z1^T z2 / 2 = [[1, 1], [-1, -1]]
    z1 = T([[1.0, 5.0], [3.0, 1.0]])
    z2 = T([[0.0, 0.0], [2.0, 1.0]])
    on = (1 - 1) ** 2 + (-1 - 1) ** 2
    off = 1**2 + (-1) ** 2
    assert O.barlow_twins_loss(z1, z2, 0.5).item() == pytest.approx(on + 0.5 * off, rel=1e-5)


def test_dino_loss_centering_and_temperatures():
    teacher = [T([[1.0, 0.0]]), T([[0.0, 1.0]])]
    student = [T([[0.0, 0.0]]), T([[1.0, 0.0]])]
    center = T([[0.5, 0.5]])
    tt, ts = 0.5, 1.0

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    p1 = softmax((np.array([1.0, 0.0]) - 0.5) / tt)  # sharpened, centred teacher of view 1
    p2 = softmax((np.array([0.0, 1.0]) - 0.5) / tt)
    logq1 = np.log(softmax(np.array([0.0, 0.0]) / ts))
    logq2 = np.log(softmax(np.array([1.0, 0.0]) / ts))
    expected = (-(p1 * logq2).sum() - (p2 * logq1).sum()) / 2  # only cross-view pairs
    got = O.dino_loss(student, teacher, center, ts, tt).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_sinkhorn_marginals():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(12, 4, generator=g) * 0.3
    codes = O.sinkhorn(scores, epsilon=0.5, iterations=200)
    assert torch.allclose(codes.sum(1), torch.ones(12), atol=1e-5)  # each sample: a distribution
    assert torch.allclose(codes.sum(0), torch.full((4,), 12 / 4), atol=1e-3)  # equal partition
    few = O.sinkhorn(scores, epsilon=0.05, iterations=3)
    assert torch.allclose(few.sum(1), torch.ones(12), atol=1e-5)  # exact after the last step
    assert (few >= 0).all()


def test_swav_swapped_loss():
    s1, s2 = T([[1.0, 0.0]]), T([[0.0, 2.0]])
    c1, c2 = T([[0.75, 0.25]]), T([[0.1, 0.9]])
    t = 0.5

    def log_softmax(x):
        return x - np.log(np.exp(x).sum())

    l1 = -(np.array([0.75, 0.25]) * log_softmax(np.array([0.0, 2.0]) / t)).sum()
    l2 = -(np.array([0.1, 0.9]) * log_softmax(np.array([1.0, 0.0]) / t)).sum()
    assert O.swav_loss(s1, s2, c1, c2, t).item() == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_ema_update_and_momentum_schedule():
    target, online = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(0.0)
        for p in online.parameters():
            p.fill_(1.0)
    O.ema_update(target, online, 0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.1)) for p in target.parameters())
    assert O.cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert O.cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert O.cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_moco_queue_is_a_ring_buffer():
    moco = O.MoCoV2(build_backbone(0), 2, queue_size=5, proj_dim=2)
    moco.enqueue(T([[1.0, 0.0]] * 3))
    moco.enqueue(T([[0.0, 1.0]] * 3))
    assert moco.queue[3:].tolist() == [[0.0, 1.0]] * 2
    assert moco.queue[0].tolist() == [0.0, 1.0] and moco.queue[1:3].tolist() == [[1.0, 0.0]] * 2
    assert int(moco.queue_ptr) == 1


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)


# --------------------------------------------------------------------------------------------
# Augmentations


def _images(b=6, seed=0):
    return torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", A.AUGMENTATIONS.names())
def test_augment_shape_dtype_range_and_seed(name):
    spec, x = A.AUGMENTATIONS.get(name), _images()
    out1 = A.augment(x, spec, torch.Generator().manual_seed(3))
    out2 = A.augment(x, spec, torch.Generator().manual_seed(3))
    out3 = A.augment(x, spec, torch.Generator().manual_seed(4))
    assert out1.shape == x.shape and out1.dtype == torch.float32
    assert out1.min() >= 0 and out1.max() <= 1
    assert torch.equal(out1, out2)
    assert not torch.equal(out1, out3)


def test_per_sample_parameters_differ_within_a_batch():
    x = _images(1).expand(8, -1, -1, -1).contiguous()  # eight copies of one image
    out = A.augment(x, A.AUGMENTATIONS.get("simclr"), torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten()[:64].tolist()) for o in out}) == 8


def test_identity_box_reproduces_the_image():
    x = _images(2)
    boxes = T([[0.0, 0.0, 32.0, 32.0]] * 2)
    assert torch.allclose(A.resize_crops(x, boxes), x, atol=1e-6)


def test_crop_only_changes_geometry_not_colour():
    x = _images(4)
    spec = A.AUGMENTATIONS.get("crop-only")
    out = A.augment(x, spec, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)  # replay the same draws by hand: box, then flip
    boxes = A.crop_boxes(4, 32, 32, spec.crop_scale, spec.crop_ratio, g)
    assert torch.equal(out, A.random_flip(A.resize_crops(x, boxes), spec.flip_p, g))
    flat = torch.rand(4, 3, 1, 1).expand(4, 3, 32, 32).contiguous()  # one colour per image
    assert torch.allclose(A.augment(flat, spec, torch.Generator().manual_seed(1)), flat, atol=1e-6)


def test_colour_only_changes_colour_not_geometry():
    # With no spatial op, the augmentation commutes with any permutation of pixel positions.
    x = _images(4)
    perm = torch.randperm(32 * 32, generator=torch.Generator().manual_seed(0))
    shuffle = lambda t: t.flatten(2)[:, :, perm].view_as(t)  # noqa: E731
    spec = A.AUGMENTATIONS.get("colour-only")
    a = shuffle(A.augment(x, spec, torch.Generator().manual_seed(2)))
    b = A.augment(shuffle(x), spec, torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(A.augment(x, spec, torch.Generator().manual_seed(2)), x)


@pytest.mark.parametrize(
    "op, reference, factor",
    [(A._brightness, TF.adjust_brightness, 1.3), (A._contrast, TF.adjust_contrast, 0.7),
     (A._saturation, TF.adjust_saturation, 1.4), (A._hue, TF.adjust_hue, 0.08),
     (A._hue, TF.adjust_hue, -0.1)],
)
def test_jitter_ops_match_torchvision(op, reference, factor):
    x = _images(3)
    expected = torch.stack([reference(img, factor) for img in x])
    assert torch.allclose(op(x, torch.full((3,), factor)), expected, atol=1e-4)


def test_blur_keeps_constant_images_and_smooths_noise():
    flat = torch.full((2, 3, 8, 8), 0.3)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(A.random_blur(flat, 1.0, (0.5, 1.0), g), flat, atol=1e-6)
    x = _images(2)
    assert A.random_blur(x, 1.0, (0.8, 1.0), g).std() < x.std()


# --------------------------------------------------------------------------------------------
# Training steps, recipes, checkpoints


def _toy_batch(n=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8), torch.arange(n) % 3


def _two_steps(name):
    images, labels = _toy_batch()
    recipe = Recipe(name, "simclr", epochs=1, batch_size=8, seed=5)
    objective = build_objective(recipe, num_classes=3)
    optimizer = build_optimizer(recipe, objective)
    g = torch.Generator().manual_seed(recipe.seed)
    losses = [
        train_step(objective, optimizer, make_views(images, recipe.augmentation, objective.n_views, g), labels, p)
        for p in (0.5, 1.0)
    ]
    return losses, objective.export_backbone().state_dict()


@pytest.mark.parametrize("name", O.OBJECTIVES.names())
def test_training_step_runs_and_is_deterministic(name):
    losses_a, state_a = _two_steps(name)
    losses_b, state_b = _two_steps(name)
    assert all(math.isfinite(v) for v in losses_a)
    assert losses_a == losses_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_pretrain_does_not_touch_global_rng_and_random_is_untrained():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    backbone, losses, _ = pretrain(ZOO.get("random"), *_toy_batch(), 3, show_progress=False)
    assert torch.rand(1).item() == before.item() and losses == []
    assert torch.equal(backbone.state_dict()["conv1.weight"], build_backbone(0).state_dict()["conv1.weight"])


def test_pretrain_tiny_epoch():
    images, labels = _toy_batch(16)
    recipe = Recipe("byol", "simclr", epochs=1, batch_size=8)
    backbone, losses, seconds = pretrain(recipe, images, labels, 3, show_progress=False)
    assert len(losses) == 1 and seconds > 0 and backbone(torch.zeros(2, 3, 32, 32)).shape == (2, 256)


def test_same_seed_gives_same_checkpoint_bytes(tmp_path):
    images, labels = _toy_batch(16)
    recipe = Recipe("moco-v2", "simclr", epochs=1, batch_size=8, seed=3)
    for name in ("a", "b"):
        backbone, _, _ = pretrain(recipe, images, labels, 3, show_progress=False)
        save_checkpoint(backbone, {"recipe": recipe.to_dict()}, tmp_path / f"{name}.pth")
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()


def test_checkpoint_round_trip_weights_only(tmp_path):
    backbone = build_backbone(0).eval()
    path = save_checkpoint(backbone, {"name": "x", "recipe": {"epochs": 1}}, tmp_path / "x.pth")
    blob = torch.load(path, weights_only=True)
    assert blob["meta"]["name"] == "x" and blob["meta"]["dtype"] == "float16"
    state, meta = load_checkpoint(path)
    fresh = build_backbone(1).eval()
    fresh.load_state_dict(state)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(fresh(x), backbone(x), atol=1e-2, rtol=1e-2)
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write leaves no temp files


def test_manifest_entries_are_merged_in_zoo_order(tmp_path):
    write_manifest_entry(tmp_path, "random", {"source_top1": 1.0})
    write_manifest_entry(tmp_path, "simclr", {"source_top1": 2.0})
    assert list(read_manifest(tmp_path)) == ["simclr", "random"]
    assert json.loads((tmp_path / "manifest.json").read_text())["random"] == {"source_top1": 1.0, "ratio_to_supervised": None}


def test_zoo_names_and_recipes():
    assert ZOO.names() == [
        "supervised", "simclr", "moco-v2", "byol", "swav", "barlow-twins", "dino",
        "moco-v2-crop-only", "moco-v2-colour-only", "random",
    ]
    for name, recipe in ZOO.items():
        assert recipe.epochs == 0 or recipe.objective in O.OBJECTIVES
        assert recipe.augmentation == "none" or recipe.augmentation in A.AUGMENTATIONS


@pytest.mark.parametrize(
    "registry, name, close", [(ZOO, "byl", "byol"), (O.OBJECTIVES, "simclrr", "simclr"),
                              (A.AUGMENTATIONS, "crop_only", "crop-only")],
)
def test_unknown_names_give_one_line_with_close_matches(registry, name, close):
    with pytest.raises(UnknownNameError) as info:
        registry.get(name)
    message = str(info.value)
    assert isinstance(info.value, SSLLibError) and "\n" not in message
    assert repr(name) in message and repr(close) in message


# --------------------------------------------------------------------------------------------
# Pretraining at a smaller input size, and resuming after a kill


def test_views_are_cropped_to_the_training_size_channels_last():
    images, _ = _toy_batch(4)
    views = make_views(images, "simclr-mini", 2, torch.Generator().manual_seed(0), size=16)
    assert [v.shape for v in views] == [(4, 3, 16, 16)] * 2
    assert views[0].is_contiguous(memory_format=torch.channels_last)
    whole = A.resize_crops(A.to_float(images), T([[0.0, 0.0, 32.0, 32.0]] * 4), size=16)
    # a 2x downscale of the whole image averages each 2x2 block (no aliasing)
    blocks = A.to_float(images).unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))
    assert torch.allclose(whole, blocks, atol=1e-5)


def _interrupt_after(monkeypatch, steps: int):
    """Make the training loop die after ``steps`` steps, as a kill would."""
    import ssl_lib.pretrain.train as train_module

    calls = {"n": 0}
    real = train_module.train_step

    def dying(*args, **kwargs):
        if calls["n"] >= steps:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dying)
    return calls


@pytest.mark.parametrize("objective", ["moco-v2", "dino"])  # a queue and a shuffle generator; EMA teacher and centre
def test_a_killed_training_resumes_from_its_last_epoch_with_the_same_bytes(objective, tmp_path, monkeypatch):
    images, labels = _toy_batch(16)
    recipe = Recipe(objective, "simclr-mini", epochs=3, batch_size=8, seed=4, train_size=16)
    whole, whole_losses, _ = pretrain(recipe, images, labels, 3, show_progress=False)
    state = tmp_path / "state.pt"
    calls = _interrupt_after(monkeypatch, steps=5)  # 2 steps per epoch: dies in the third epoch
    with pytest.raises(KeyboardInterrupt):
        pretrain(recipe, images, labels, 3, show_progress=False, state_path=state)
    monkeypatch.undo()
    calls = _interrupt_after(monkeypatch, steps=10**6)
    resumed, losses, _ = pretrain(recipe, images, labels, 3, show_progress=False, state_path=state)
    assert calls["n"] == 2  # only the lost (third) epoch ran again: at most one epoch lost
    assert losses == whole_losses
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))
    other = Recipe(objective, "simclr-mini", epochs=3, batch_size=8, seed=5, train_size=16)
    from ssl_lib.pretrain.train import TrainingState

    assert TrainingState.load(state, other.identity()) is None  # another recipe never resumes this state


def test_a_killed_regeneration_of_the_zoo_skips_finished_models(tmp_path, monkeypatch):
    from ssl_lib.pretrain import zoo as Z

    tiny = {"supervised": Recipe("supervised", "supervised", epochs=1, batch_size=64, train_size=8),
            "simclr": Recipe("simclr", "simclr-mini", epochs=2, batch_size=64, train_size=8)}
    monkeypatch.setattr(Z, "ZOO", _Tiny(tiny))
    monkeypatch.setattr(Z, "load_source", lambda seed=0: _small_source())
    monkeypatch.setattr(Z, "cache_dir", lambda name: tmp_path / "cache" / name)
    out = tmp_path / "zoo"
    calls = _interrupt_after(monkeypatch, steps=4 + 4 + 2)  # supervised (4 steps), simclr's epoch 1, then dies
    with pytest.raises(KeyboardInterrupt):
        Z.build_zoo(list(tiny), out, force=True)
    first = (out / "supervised.pth").read_bytes()
    monkeypatch.undo()
    monkeypatch.setattr(Z, "ZOO", _Tiny(tiny))
    monkeypatch.setattr(Z, "load_source", lambda seed=0: _small_source())
    monkeypatch.setattr(Z, "cache_dir", lambda name: tmp_path / "cache" / name)
    calls = _interrupt_after(monkeypatch, steps=10**6)
    entries = Z.build_zoo(list(tiny), out, force=True)
    assert calls["n"] == 4  # supervised kept, simclr resumed at its second epoch (4 steps)
    assert (out / "supervised.pth").read_bytes() == first
    assert entries["simclr"]["epochs"] == 2 and len(entries["simclr"]["loss_curve"]) == 2
    manifest = read_manifest(out)
    assert manifest["simclr"]["ratio_to_supervised"] == round(
        manifest["simclr"]["source_top1"] / manifest["supervised"]["source_top1"], 3)
    assert {"device", "train_seconds", "final_loss", "recipe"} <= set(manifest["simclr"])
    assert not list((tmp_path / "cache" / "pretrain").glob("*"))  # states and the plan are cleaned up


class _Tiny(dict):
    def get(self, name):
        return self[name]


def _small_source():
    g = np.random.default_rng(0)
    split = lambda n: (g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 3)  # noqa: E731
    return {"train": split(256), "val": split(60), "test": split(60)}


def test_zoo_table_shows_each_models_ratio_and_the_papers_regime(tmp_path):
    from ssl_lib.models._mini import paper_ratios, zoo_table

    write_manifest_entry(tmp_path, "supervised", {"source_top1": 80.0, "objective": "supervised", "recipe": {"epochs": 40}})
    write_manifest_entry(tmp_path, "simclr", {"source_top1": 60.0, "objective": "simclr", "train_seconds": 600,
                                              "recipe": {"epochs": 80, "train_size": 24}})
    table = zoo_table(tmp_path)
    assert table.loc["simclr", "ratio to supervised"] == 0.75 and table.loc["simclr", "train px"] == 24
    assert table.loc["simclr", "train min"] == 10 and table.loc["supervised", "epochs"] == 40
    ratios = paper_ratios()
    assert ratios["Supervised"] == 1 and round(ratios["InsDis"], 2) == 0.77 and round(ratios["SwAV"], 2) == 0.98
