#!/usr/bin/env python
"""Benchmark the linear-probe solvers on one full C sweep (the paper's 45-value grid).

    python bench/bench_linear.py                 # 10k x 512, 10 and 100 classes (train 8k / val 2k)
    python bench/bench_linear.py --quick         # smoke run
    python bench/bench_linear.py --classes 10 --strategies ascending given batched --solvers torch

Features are seeded synthetic "frozen features" (non-negative, unnormalised, class structure in a
low-dimensional subspace); every solver sees the identical arrays. For each solver it prints the
wall time of ``fit_path`` over ``C_GRID``, the ratio to the torch time measured in the same run,
the C picked on validation (first best in the paper's descending order) and its val accuracy.
Timings on a shared machine are noisy; compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from ssl_lib.evaluate.logreg import C_GRID, fit_path

DEFAULT_N = 10_000
DEFAULT_D = 512
DEFAULT_CLASSES = (10, 100)
VAL_FRACTION = 0.2
QUICK = dict(n=2_000, d=64, classes=(10,))


@dataclass
class Row:
    solver: str
    seconds: float
    C: float
    val_acc: float
    n_iter: int
    n_unconverged: int


def make_features(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features ``relu(mu_y + A z + noise)`` with per-dimension scales, float32."""
    rng = np.random.default_rng(seed)
    rank = min(d, 32)
    basis = rng.normal(size=(rank, d)) / np.sqrt(rank)
    mu = rng.normal(size=(k, rank)) @ basis * 0.6
    y = rng.integers(0, k, n)
    latent = rng.normal(size=(n, rank)) @ basis
    X = np.maximum(mu[y] + latent + rng.normal(size=(n, d)), 0.0)
    X *= rng.uniform(0.2, 3.0, size=d)
    return X.astype(np.float32), y


def select(models, X_val: np.ndarray, y_val: np.ndarray) -> tuple[float, float]:
    """The paper's selection: scan in the grid's (descending-C) order, first best wins."""
    best_acc, best_C = -1.0, float("nan")
    for m in models:
        acc = float((m.predict(X_val) == y_val).mean())
        if acc > best_acc:
            best_acc, best_C = acc, m.C
    return best_C, best_acc


def run_one(solver: str, X_tr, y_tr, X_val, y_val, k: int, device: str | None, **opts) -> Row:
    t0 = time.perf_counter()
    models = fit_path(X_tr, y_tr, C_GRID, solver=solver, num_classes=k,
                      device=device if solver == "torch" else None, **opts)
    seconds = time.perf_counter() - t0
    C, acc = select(models, X_val, y_val)
    label = solver if not opts else f"{solver}[{','.join(f'{v}' for v in opts.values())}]"
    return Row(label, seconds, C, acc, sum(m.n_iter for m in models),
               sum(not m.converged for m in models))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="samples (train + val)")
    ap.add_argument("--d", type=int, default=DEFAULT_D, help="feature dimension")
    ap.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES))
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--solvers", nargs="+", default=["torch", "sklearn", "sklearn-paper"])
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="torch path strategies to time (default: the solver's default only)")
    ap.add_argument("--threads", type=int, default=None,
                    help="cap torch and BLAS threads for every solver (default: torch's setting)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default=None,
                    help="torch dtype (default: the solver's choice)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.d, args.classes = QUICK["n"], QUICK["d"], list(QUICK["classes"])

    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy/scipy BLAS used by scikit-learn
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device={device} torch_threads={torch.get_num_threads()} torch={torch.__version__} "
          f"n={args.n} d={args.d} grid={len(C_GRID)} C values")
    for k in args.classes:
        X, y = make_features(args.n, args.d, k, seed=k)
        n_val = int(round(VAL_FRACTION * args.n))
        X_tr, y_tr, X_val, y_val = X[n_val:], y[n_val:], X[:n_val], y[:n_val]
        print(f"\nclasses={k}  train={len(y_tr)} val={len(y_val)}")
        print(f"{'solver':<28}{'seconds':>9}{'x torch':>9}{'best C':>11}{'val acc':>9}"
              f"{'iters':>8}{'unconv':>7}", flush=True)
        ref = float("nan")
        for solver in args.solvers:
            runs = [{}]
            if solver == "torch":
                dt = {} if args.dtype is None else {"dtype": getattr(torch, args.dtype)}
                runs = [({} if s is None else {"strategy": s}) | dt for s in args.strategies or [None]]
            for opts in runs:
                r = run_one(solver, X_tr, y_tr, X_val, y_val, k, device, **opts)
                if solver == "torch" and ref != ref:
                    ref = r.seconds  # the first torch run is the reference for the ratio
                print(f"{r.solver:<28}{r.seconds:9.2f}{r.seconds / ref:9.2f}{r.C:11.3g}"
                      f"{100 * r.val_acc:9.2f}{r.n_iter:8d}{r.n_unconverged:7d}", flush=True)


if __name__ == "__main__":
    main()
