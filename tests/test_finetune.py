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
