"""Few-shot: the episode sampler, the prototype classifier and the interval."""

import numpy as np
import pytest
import torch

from ssl_lib.evaluate.fewshot import (
    EpisodeCfg,
    episode_accuracies,
    episode_accuracies_loop,
    evaluate_fewshot,
    prototype_logits,
    sample_episodes,
    shortfall,
)
from ssl_lib.stats import normal_ci


def _labels(counts):
    """Shuffled labels with ``counts[c]`` images of class ``10 + c`` (labels need not be 0..C-1)."""
    labels = np.concatenate([np.full(n, 10 + c) for c, n in enumerate(counts)])
    return np.random.default_rng(0).permutation(labels)


CFG = EpisodeCfg(n_way=5, n_shot=3, n_query=4, n_episodes=200)


def test_episodes_have_the_right_shapes_classes_and_counts():
    labels = _labels([30, 7, 12, 9, 40, 8, 10])
    ep = sample_episodes(labels, CFG, seed=0)
    assert ep.classes.shape == (200, 5) and ep.support.shape == (200, 5, 3) and ep.query.shape == (200, 5, 4)
    for e in range(200):
        assert len(set(ep.classes[e].tolist())) == 5  # distinct classes
        for w in range(5):
            rows = np.concatenate([ep.support[e, w].numpy(), ep.query[e, w].numpy()])
            assert len(set(rows.tolist())) == 7  # support and query disjoint, no repeats
            assert (labels[rows] == int(ep.classes[e, w])).all()  # every image is of its class


def test_sampling_covers_classes_and_images_uniformly():
    labels = _labels([8] * 6)
    ep = sample_episodes(labels, EpisodeCfg(n_way=3, n_shot=2, n_query=2, n_episodes=3000), seed=1)
    class_freq = np.bincount(ep.classes.flatten().numpy() - 10, minlength=6) / ep.classes.numel()
    np.testing.assert_allclose(class_freq, 1 / 6, atol=0.02)
    picked = np.bincount(np.concatenate([ep.support.flatten().numpy(), ep.query.flatten().numpy()]), minlength=48)
    # each class is drawn in half the episodes and then 4 of its 8 images: 3000 * 0.5 * 0.5 = 750
    assert picked.min() > 650 and picked.max() < 850


def test_sampling_is_deterministic_per_seed():
    labels = _labels([20] * 8)
    a, b, c = (sample_episodes(labels, CFG, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert not torch.equal(a.support, c.support)


def test_a_class_with_too_few_images_is_a_stated_shortfall():
    assert shortfall(_labels([7] * 5), CFG) is None
    reason = shortfall(_labels([7, 7, 6, 7, 7]), CFG)
    assert "1 of 5 classes have fewer than 7 images" in reason and "smallest class 6" in reason
    assert "fewer than the 5 ways" in shortfall(_labels([9] * 4), CFG)
    with pytest.raises(ValueError, match="Cannot sample 5-way 3-shot"):
        sample_episodes(_labels([7, 7, 6, 7, 7]), CFG)


def test_prototype_logits_match_a_hand_computation():
    # two classes with prototypes (0, 0) and (2, 2); one query at (1, 0)
    support = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [3.0, 3.0]]]])  # (1, 2 ways, 2 shots, 2)
    query = torch.tensor([[[1.0, 0.0]]])
    logits = prototype_logits(support, query)
    torch.testing.assert_close(logits, torch.tensor([[[-1.0, -5.0]]]))  # -(1² + 0²), -(1² + 2²)


def test_batched_accuracies_equal_the_per_episode_loop():
    rng = np.random.default_rng(0)
    labels = _labels([25] * 10)
    centres = rng.normal(size=(10, 16)) * 1.5
    features = (centres[labels - 10] + rng.normal(size=(len(labels), 16))).astype(np.float32)
    episodes = sample_episodes(labels, EpisodeCfg(5, 5, 15, 150), seed=0)
    batched = episode_accuracies(features, episodes, chunk=40)
    np.testing.assert_allclose(batched, episode_accuracies_loop(features, episodes), atol=1e-9)
    assert 30 < batched.mean() < 100  # informative features: well above the 20% chance


def test_result_interval_is_the_official_formula():
    labels = _labels([30] * 6)
    features = np.random.default_rng(1).normal(size=(len(labels), 8)).astype(np.float32)
    result = evaluate_fewshot(features, labels, EpisodeCfg(5, 5, 15, 100), seed=0)
    acc = result.episode_accuracies
    assert result.accuracy == pytest.approx(acc.mean())
    assert result.ci95 == pytest.approx(1.96 * np.std(acc) / np.sqrt(100))
    mean, low, high = normal_ci(acc)
    assert (mean - low) == pytest.approx(result.ci95) and (high - mean) == pytest.approx(result.ci95)
    assert 5 < result.accuracy < 40  # random features: near 20% chance
