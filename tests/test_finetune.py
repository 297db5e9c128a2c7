"""Fine-tuning: the recipe learns, the grid resumes, and selection never looks at test."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ssl_lib.evaluate.finetune as FT
from ssl_lib.evaluate.finetune import FinetuneCfg, run_finetune


@pytest.fixture(scope="module")
def model(random_mini_model):
    return random_mini_model


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Reddish vs bluish noise images: separable, and invariant to crops and flips."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8), ("test", 16)):
        for label, colour in (("red", (170, 60, 60)), ("blue", (60, 60, 170))):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                noise = rng.normal(0, 40, (32, 32, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return f"folder:{root}"


def test_a_few_steps_beat_chance_on_a_separable_task(model, toy):
    cfg = FinetuneCfg(steps=25, batch_size=16, lrs=(0.05,), wds=(0.0,))
    result = run_finetune(model, toy, cfg, n_boot=0)
    assert result.test_score >= 80  # chance is 50%
    assert result.n_train == 48 and result.n_val == 16 and result.n_test == 32
    assert result.val_source == "official"


def test_the_optimiser_gets_nesterov_and_weight_decay_divided_by_lr(model, toy, monkeypatch):
    seen = []
    real_sgd = torch.optim.SGD

    def spy(params, **kwargs):
        seen.append(kwargs)
        return real_sgd(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    cfg = FinetuneCfg(steps=1, batch_size=8, lrs=(0.1, 0.01), wds=(1e-4,))
    run_finetune(model, toy, cfg, n_boot=0)
    assert [(k["lr"], k["weight_decay"]) for k in seen[:2]] == [(0.1, pytest.approx(1e-3)), (0.01, pytest.approx(1e-2))]
    assert all(k["momentum"] == 0.9 and k["nesterov"] for k in seen)
    assert len(seen) == 3  # two grid points and the final fit


def test_selection_takes_the_first_best_validation_point():
    points = [{"lr": 0.1, "wd": 0, "val_score": 50.0}, {"lr": 0.01, "wd": 0, "val_score": 70.0},
              {"lr": 0.001, "wd": 0, "val_score": 70.0}]
    assert FT._select(points)["lr"] == 0.01


def test_an_interrupted_grid_resumes_without_redoing_finished_points(model, toy, tmp_path, monkeypatch):
    cfg = FinetuneCfg(steps=3, batch_size=8, lrs=(0.1, 0.01), wds=(0.0, 1e-4))
    reference = run_finetune(model, toy, cfg, n_boot=0, state_path=tmp_path / "ref.json")

    state = tmp_path / "grid.json"

    def crash_after_two(point, seen=[]):
        seen.append(point)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(model, toy, cfg, n_boot=0, state_path=state, on_point=crash_after_two)
    saved = json.loads(state.read_text())
    assert len(saved["points"]) == 2 and saved["final"] is None

    calls = []
    real = FT.finetune_once
    monkeypatch.setattr(FT, "finetune_once", lambda *a, **k: calls.append(k["lr"]) or real(*a, **k))
    resumed = run_finetune(model, toy, cfg, n_boot=0, state_path=state)
    assert resumed.resumed_points == 2
    assert len(calls) == 3  # the two unfinished points and the final fit
    # deterministic: the resumed grid equals the uninterrupted one
    assert [p["val_score"] for p in resumed.grid] == [p["val_score"] for p in reference.grid]
    assert resumed.test_score == reference.test_score

    calls.clear()
    again = run_finetune(model, toy, cfg, n_boot=0, state_path=state)
    assert calls == [] and again.test_score == reference.test_score  # a finished run is read back


def test_a_state_file_for_other_settings_is_not_reused(model, toy, tmp_path):
    state = tmp_path / "grid.json"
    run_finetune(model, toy, FinetuneCfg(steps=2, batch_size=8, lrs=(0.1,), wds=(0.0,)), n_boot=0, state_path=state)
    other = run_finetune(model, toy, FinetuneCfg(steps=3, batch_size=8, lrs=(0.1,), wds=(0.0,)), n_boot=0,
                         state_path=state)
    assert other.resumed_points == 0


def test_random_crops_differ_per_image_in_a_batched_array_dataset(model):
    from ssl_lib.data import ArrayDataset

    images = np.tile(np.arange(32, dtype=np.uint8)[None, :, None, None] * 8, (6, 1, 32, 3))
    data = ArrayDataset(images, np.zeros(6, dtype=np.int64), FT.train_transform(model.cfg))
    torch.manual_seed(0)
    batch = torch.stack([x for x, _ in data.__getitems__(list(range(6)))])
    assert batch.shape == (6, 3, 32, 32)
    assert len({tuple(b[0, 0, :4].tolist()) for b in batch}) > 1  # not one crop for the whole batch


def test_bad_settings_fail_with_one_line():
    with pytest.raises(ValueError, match="lrs must be positive"):
        FinetuneCfg(lrs=(0.0,))
    with pytest.raises(ValueError, match="steps and batch_size must be positive"):
        FinetuneCfg(steps=0)


def test_unset_grid_parameters_take_the_study_setting_then_the_papers():
    from ssl_lib.notebook import resolve_params
    from ssl_lib.sections.finetune import FinetuneParams, finetune_cfg

    mini = finetune_cfg(resolve_params("finetune", {"study": "mini"}))  # as the notebook's setup resolves them
    assert (mini.steps, mini.lrs, mini.wds) == (50, (0.1, 0.01), (0.0,))
    explicit = finetune_cfg(resolve_params("finetune", {"study": "mini", "steps": 7, "lrs": "0.5", "wds": "0,1e-4"}))
    assert (explicit.steps, explicit.lrs, explicit.wds) == (7, (0.5,), (0.0, 1e-4))
    assert finetune_cfg(FinetuneParams(study="mini")).steps == 5000  # the dataclass alone: the paper's
    paper = finetune_cfg(resolve_params("finetune", {"study": "paper"}))
    assert (paper.steps, paper.lrs, paper.wds) == (5000, FT.LR_GRID, FT.WD_GRID)
    assert len(paper.grid) == 20 and paper.grid[0] == (0.1, 0.0) and paper.grid[-1] == (0.0001, 1e-3)


def test_layer_decay_gives_the_rates_timm_gives_the_model_with_its_own_head():
    import timm
    from timm.optim import param_groups_layer_decay

    from ssl_lib.models import create_model

    vit = create_model("timm:vit_tiny_patch16_224?pretrained=false&size=32").requires_grad_(True)  # as trained
    finetuner = FT.Finetuner(vit, 3)
    groups = FT.layer_decay_groups(finetuner, lr=0.1, weight_decay=1e-3, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in finetuner.parameters())  # every weight, once
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32)
    scale = {n: g["lr_scale"] for g in param_groups_layer_decay(reference, weight_decay=1e-3, layer_decay=0.5)
             for n in [m for m, p in reference.named_parameters() if any(p is q for q in g["params"])]}
    ours = {**{n: lr_of[id(p)] for n, p in vit.backbone.named_parameters()},
            **{f"head.{n}": lr_of[id(p)] for n, p in finetuner.head.named_parameters()}}
    assert ours == pytest.approx({n: 0.1 * s for n, s in scale.items()})
    depth = len(vit.backbone.blocks)
    assert ours["patch_embed.proj.weight"] == pytest.approx(0.1 * 0.5 ** (depth + 1)) and ours["head.weight"] == 0.1
    assert wd_of[id(vit.backbone.blocks[0].mlp.fc1.weight)] == 1e-3 and wd_of[id(vit.backbone.blocks[0].norm1.weight)] == 0
    assert wd_of[id(vit.backbone.pos_embed)] == 0.0  # timm's no_weight_decay() tokens
    assert FinetuneCfg().identity() == {k: v for k, v in FinetuneCfg(layer_decay=0.65).identity().items()
                                        if k != "layer_decay"}  # off leaves the paper recipe's identity alone


def test_layer_decay_reaches_the_optimiser_and_refuses_non_timm_backbones(toy, monkeypatch):
    from ssl_lib.exceptions import ConfigError
    from ssl_lib.models import create_model

    seen = []
    real_sgd = torch.optim.SGD

    def spy(params, **kwargs):
        params = list(params)
        seen.append(sorted({g["lr"] for g in params}))
        return real_sgd(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    cfg = FinetuneCfg(steps=1, batch_size=8, lrs=(0.1,), wds=(0.0,), layer_decay=0.5)
    run_finetune(create_model("timm:convnext_atto?pretrained=false&size=32"), toy, cfg, n_boot=0)
    assert len(seen) == 2 and len(seen[0]) > 3 and max(seen[0]) == 0.1  # decayed groups, head at the full lr
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        FinetuneCfg(layer_decay=1.5)
    import torchvision

    resnet = create_model("timm:resnet18?pretrained=false&size=32")
    resnet.backbone = torchvision.models.resnet18()  # a torchvision body (the paper zoo's) has no group_matcher
    with pytest.raises(ConfigError, match="layer_decay needs a timm backbone") as info:
        run_finetune(resnet, toy, cfg, n_boot=0)
    assert "\n" not in str(info.value)


def test_layer_decay_comes_from_the_parameter_then_the_study():
    from ssl_lib.sections.finetune import FinetuneParams, finetune_cfg

    assert finetune_cfg(FinetuneParams(study="mini")).layer_decay is None
    assert finetune_cfg(FinetuneParams(study="mini", layer_decay=0.75)).layer_decay == 0.75
