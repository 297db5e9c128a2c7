"""Feature-extraction throughput: the library's path against plain references, in one run.

    python bench/bench_features.py [--n 2048] [--device cuda]

Rows: (1) mini ResNet through ``extract_features`` with the batched transform vs. per-image
transforms (the DataLoader default); (2) ResNet-50 at 224 px, fp32 eager vs. channels_last
(+ bf16 autocast on CUDA), the setting of the paper study. Speeds are images per second; the
ratio is against the reference row measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_lib.data import ArrayDataset, eval_transform
from ssl_lib.features import extract_features
from ssl_lib.models import FeatureModel, ModelCfg, build_arch


class PerImage(Dataset):
    """The same data without ``__getitems__``: one transform call per image."""

    def __init__(self, base: ArrayDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


def _model(arch: str, size: int) -> FeatureModel:
    torch.manual_seed(0)
    cfg = ModelCfg(name=arch, zoo="bench", arch=arch, weights="random", input_size=size, resize_size=size)
    return FeatureModel(build_arch(arch), cfg, "bench").eval()


def _rate(fn, n: int, repeat: int = 2) -> float:
    fn()  # warm-up
    best = min(_timed(fn) for _ in range(repeat))
    return n / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_mini(n: int, device: str) -> list[tuple[str, float]]:
    model = _model("mini_resnet", 32)
    images = np.random.default_rng(0).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    data = ArrayDataset(images, np.zeros(n, dtype=np.int64), eval_transform(model.cfg))
    run = lambda d: extract_features(model, d, batch_size=256, device=device, progress=False)
    return [("mini_resnet 32px, per-image transform (reference)", _rate(lambda: run(PerImage(data)), n)),
            ("mini_resnet 32px, batched transform (ssl_lib)", _rate(lambda: run(data), n))]


@torch.inference_mode()
def bench_resnet50(n: int, device: str, batch: int) -> list[tuple[str, float]]:
    model = _model("resnet50", 224).to(device)
    x = torch.rand(batch, 3, 224, 224, device=device)
    steps = max(1, n // batch)

    def eager():
        for _ in range(steps):
            model(x)

    cl_model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def fast():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for _ in range(steps):
                cl_model(x_cl)

    label = "channels_last + bf16 autocast" if device == "cuda" else "channels_last (the CUDA path; CPU uses eager)"
    return [("resnet50 224px, fp32 eager (reference)", _rate(eager, steps * batch)),
            (f"resnet50 224px, {label} (ssl_lib)", _rate(fast, steps * batch))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="images for the mini benchmark")
    parser.add_argument("--n50", type=int, default=None, help="images for ResNet-50 (default 32 on CPU, 2048 on CUDA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    n50 = args.n50 or (2048 if args.device == "cuda" else 32)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    for group in (bench_mini(args.n, args.device), bench_resnet50(n50, args.device, 64 if args.device == "cuda" else 16)):
        ref = group[0][1]
        for name, rate in group:
            print(f"{name:<58} {rate:10.1f} img/s   x{rate / ref:5.2f}")


if __name__ == "__main__":
    main()
