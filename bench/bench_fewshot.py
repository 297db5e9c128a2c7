"""Few-shot episode throughput: the batched evaluator against a per-episode loop, in one run.

    python bench/bench_fewshot.py [--n-classes 100] [--per-class 60] [--dim 2048] [--device cuda]

Both score the same sampled episodes on the same features (the paper's 2048-d ResNet-50
features by default). The reference is the official code's shape: one episode at a time, torch
float32, prototypes and broadcast squared distances. Speeds are episodes per second; the ratio is
against that loop measured in the same run. Sampling time is reported separately (both share it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ssl_lib.evaluate.fewshot import EpisodeCfg, Episodes, episode_accuracies, sample_episodes


def per_episode_loop(features: np.ndarray, episodes: Episodes, device: str) -> np.ndarray:
    """One episode per iteration, as ``few_shot.py`` of the official code scores them."""
    feats = torch.from_numpy(features).to(device)
    accs = []
    for support, query in zip(episodes.support, episodes.query):
        prototypes = feats[support.to(device)].mean(1)  # (way, D)
        z_query = feats[query.to(device)].flatten(0, 1)  # (way * query, D)
        dists = ((z_query[:, None, :] - prototypes[None]) ** 2).sum(2)
        target = torch.arange(query.shape[0], device=device).repeat_interleave(query.shape[1])
        accs.append((dists.argmin(1) == target).float().mean().item() * 100)
    return np.array(accs)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(args.n_classes), args.per_class)
    features = (rng.normal(size=(args.n_classes, args.dim))[labels] + 2 * rng.normal(size=(len(labels), args.dim)))
    features = np.maximum(features, 0).astype(np.float32)  # non-negative, like pooled ReLU features
    print(f"{len(labels)} images x {args.dim}-d, {args.n_classes} classes, {args.episodes} episodes, "
          f"device {args.device}, {torch.get_num_threads()} threads")
    print(f"{'setting':<14} {'sampling s':>10} {'loop ep/s':>10} {'batched ep/s':>13} {'ratio':>7}  same accs")
    for shots in (5, 20, 50):
        cfg = EpisodeCfg(5, shots, 15, args.episodes)
        episodes, sample_s = _timed(lambda: sample_episodes(labels, cfg, seed=0))
        episode_accuracies(features, episodes, device=args.device)  # warm-up
        batched, batched_s = _timed(lambda: episode_accuracies(features, episodes, device=args.device))
        loop, loop_s = _timed(lambda: per_episode_loop(features, episodes, args.device))
        same = np.allclose(batched, loop)
        print(f"5-way {shots:>2}-shot {sample_s:>10.3f} {args.episodes / loop_s:>10.0f} "
              f"{args.episodes / batched_s:>13.0f} {loop_s / batched_s:>6.1f}x  {same}")


if __name__ == "__main__":
    main()
