#!/usr/bin/env python
"""Benchmark the linear protocol: the 45-C sweep on train, selection on val, refit on train+val.

    python bench/bench_linear.py                     # shapes a, b10, b100, c (make bench)
    python bench/bench_linear.py --shapes a b10      # a subset
    python bench/bench_linear.py --quick             # smoke run on a small synthetic shape
    python bench/bench_linear.py --device cuda --shapes c c50k --solvers torch   # make bench-gpu

Shapes: (a) real features, EfficientNet-Lite0 over 7,000 offline images (``real_features.py``:
needs the ``bench`` extra once, then cached under ``bench/out/``), 5,000 train (20% carved for
val) / 2,000 test x 1,280-d, 10 classes; (b) seeded synthetic 10,000 x 512 (8k train / 2k val,
plus 2k test), 10 and 100 classes; (c) synthetic 20,000 x 2,048, 100 classes (CIFAR-100-like).

For each shape it times the default ``torch`` solver, the paper's ``sklearn-paper`` path in every
configuration (1 and 2 BLAS threads; and, where ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` are
set, the same with both unset, in a child process), and converged ``sklearn`` (the parity
reference; ``--reference`` picks the shapes, it takes ~1 h at (c)). It prints seconds for sweep +
refit, the ratio of each reference to torch, the selected C, its distance in grid steps from
converged scikit-learn's, test accuracy and its difference, iterations, and which OpenBLAS kernel
ran. The summary line per shape is the ratio against the fastest ``sklearn-paper``
configuration. Timings on a busy machine are meaningless; run on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Shape:
    name: str
    n: int = 0  # train + val
    d: int = 0
    k: int = 0
    n_test: int = 0
    real: bool = False

    def describe(self) -> str:
        if self.real:
            return "(a) EfficientNet-Lite0 features: 4,000 train / 1,000 val / 2,000 test x 1,280-d, 10 classes"
        return f"{self.n:,} x {self.d} (train {self.n - int(VAL_FRACTION * self.n):,} / val " \
               f"{int(VAL_FRACTION * self.n):,} / test {self.n_test:,}), {self.k} classes"


SHAPES = {
    "a": Shape("a", real=True),
    "b10": Shape("b10", 10_000, 512, 10, 2_000),
    "b100": Shape("b100", 10_000, 512, 100, 2_000),
    "c": Shape("c", 20_000, 2_048, 100, 4_000),
    "c50k": Shape("c50k", 50_000, 2_048, 100, 5_000),
    "quick": Shape("quick", 2_000, 64, 10, 500),
}
DEFAULT_SHAPES = ("a", "b10", "b100", "c")


@dataclass
class Row:
    label: str
    seconds: float
    sweep_seconds: float
    best: int  # grid index of the selected C
    C: float
    test_acc: float
    n_iter: int
    refit_iter: int
    kernel: str = ""


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


def load_shape(shape: Shape):
    """``(X_train, y_train, X_val, y_val, X_test, y_test)``."""
    if shape.real:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import real_features

        from ssl_lib.data import carve_validation

        Xtr, ytr, Xte, yte = real_features.load()
        tr, va = carve_validation(len(ytr))
        return Xtr[tr], ytr[tr], Xtr[va], ytr[va], Xte, yte
    X, y = make_features(shape.n + shape.n_test, shape.d, shape.k, seed=shape.k)
    n_val = int(VAL_FRACTION * shape.n)
    s = slice(n_val, shape.n)
    return X[s], y[s], X[:n_val], y[:n_val], X[shape.n:], y[shape.n:]


def blas_kernel() -> str:
    from threadpoolctl import threadpool_info

    libs = [f"{os.path.basename(i['filepath']).split('-')[0].replace('lib', '')}:{i.get('architecture')}"
            for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return " ".join(libs)


def run_protocol(label: str, solver: str, data, k: int, device: str | None = None, **opts) -> Row:
    """The paper's protocol, timed: sweep, first-best C on val (descending grid), refit, test."""
    from ssl_lib.evaluate.logreg import C_GRID, fit, fit_path

    Xtr, ytr, Xva, yva, Xte, yte = data
    dev = device if solver == "torch" else None
    t0 = time.perf_counter()
    path = fit_path(Xtr, ytr, C_GRID, solver=solver, num_classes=k, device=dev, **opts)
    t_sweep = time.perf_counter() - t0
    val = [float((m.predict(Xva) == yva).mean()) for m in path]
    best = int(np.argmax(val))  # first maximum in the grid's descending order, as the paper
    init = path[-1] if solver == "sklearn-paper" else path[best]  # as evaluate_linear
    final = fit(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]), float(C_GRID[best]),
                solver=solver, num_classes=k, init=init, device=dev, **opts)
    seconds = time.perf_counter() - t0
    acc = 100 * float((final.predict(Xte) == yte).mean())
    return Row(label, seconds, t_sweep, best, float(C_GRID[best]), acc,
               sum(m.n_iter for m in path), final.n_iter)


def sklearn_row(solver: str, threads: int, data, k: int) -> Row:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        row = run_protocol(f"{solver} {threads}t", solver, data, k)
        row.kernel = blas_kernel()
    return row


def sklearn_row_unset(shape: Shape, solver: str, threads: int) -> Row:
    """The same in a child process with the OpenBLAS tuning variables unset (they are read at load)."""
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", shape.name, solver, str(threads)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    row = Row(**json.loads(out.strip().splitlines()[-1]))
    row.label += f" ({'/'.join(OPENBLAS_VARS)} unset)"
    return row


def print_rows(rows: list[Row], torch_row: Row, ref: Row | None) -> None:
    print(f"  {'solver':<52}{'seconds':>9}{'sweep':>8}{'x torch':>9}{'best C':>10}{'dC steps':>9}"
          f"{'test %':>8}{'d test':>8}{'iters':>8}{'refit':>7}  kernel")
    for r in rows:
        steps = f"{abs(r.best - ref.best):d}" if ref else "n/a"
        dacc = f"{r.test_acc - ref.test_acc:+.2f}" if ref else "n/a"
        print(f"  {r.label:<52}{r.seconds:9.2f}{r.sweep_seconds:8.2f}{r.seconds / torch_row.seconds:9.2f}"
              f"{r.C:10.3g}{steps:>9}{r.test_acc:8.2f}{dacc:>8}{r.n_iter:8d}{r.refit_iter:7d}  {r.kernel}",
              flush=True)


def bench_shape(shape: Shape, args) -> dict:
    import torch

    data = load_shape(shape)
    k = int(max(data[1].max(), data[3].max(), data[5].max())) + 1
    print(f"\n[{shape.name}] {shape.describe()}", flush=True)
    rows: list[Row] = []
    torch_row = run_protocol(f"torch (default, {torch.get_num_threads()} threads)", "torch", data, k,
                             device=args.device)
    rows.append(torch_row)
    for strategy in args.strategies or []:
        rows.append(run_protocol(f"torch strategy={strategy}", "torch", data, k, device=args.device,
                                 strategy=strategy))
    paper: list[Row] = []
    if "sklearn-paper" in args.solvers:
        for threads in args.blas_threads:
            paper.append(sklearn_row("sklearn-paper", threads, data, k))
            print(f"  ... {paper[-1].label}: {paper[-1].seconds:.1f} s", flush=True)
            if any(v in os.environ for v in OPENBLAS_VARS):
                paper.append(sklearn_row_unset(shape, "sklearn-paper", threads))
                print(f"  ... {paper[-1].label}: {paper[-1].seconds:.1f} s", flush=True)
    rows += paper
    ref = None
    if "sklearn" in args.solvers and shape.name in args.reference:
        threads = min(paper, key=lambda r: r.seconds).label.split()[1][:-1] if paper else "1"
        ref = sklearn_row("sklearn", int(threads), data, k)
        ref.label = f"sklearn converged ({threads} BLAS thread{'s' if threads != '1' else ''})"
        rows.append(ref)
    print_rows(rows, torch_row, ref)
    out = {"shape": shape.name, "torch_s": torch_row.seconds}
    if paper:
        fastest = min(paper, key=lambda r: r.seconds)
        out["ratio"] = fastest.seconds / torch_row.seconds
        print(f"  => torch is {out['ratio']:.1f}x faster than sklearn-paper at its best "
              f"({fastest.label}: {fastest.seconds:.2f} s vs {torch_row.seconds:.2f} s)", flush=True)
    if ref:
        print(f"  => vs converged scikit-learn: {ref.seconds / torch_row.seconds:.1f}x; selected C "
              f"{torch_row.C:.3g} vs {ref.C:.3g} ({abs(torch_row.best - ref.best)} grid steps), test "
              f"{torch_row.test_acc:.2f} vs {ref.test_acc:.2f} ({torch_row.test_acc - ref.test_acc:+.2f})",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), choices=list(SHAPES))
    ap.add_argument("--quick", action="store_true", help="smoke run: shape 'quick' only")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--solvers", nargs="+", default=["torch", "sklearn-paper", "sklearn"])
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="extra torch path strategies to time (the default one always runs)")
    ap.add_argument("--blas-threads", nargs="+", type=int, default=[1, 2],
                    help="BLAS thread counts for the scikit-learn configurations")
    ap.add_argument("--reference", nargs="*", default=["a", "b10", "b100", "quick"],
                    help="shapes on which to run converged scikit-learn (parity; slow at c)")
    ap.add_argument("--worker", nargs=3, metavar=("SHAPE", "SOLVER", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        shape, solver, threads = args.worker
        data = load_shape(SHAPES[shape])
        k = int(max(data[1].max(), data[3].max(), data[5].max())) + 1
        print(json.dumps(asdict(sklearn_row(solver, int(threads), data, k))))
        return
    import torch

    if args.quick:
        args.shapes = ["quick"]
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    env = {v: os.environ.get(v) for v in OPENBLAS_VARS}
    print(f"device={args.device} torch={torch.__version__} torch_threads={torch.get_num_threads()} "
          f"cpus={os.cpu_count()} {' '.join(f'{k}={v}' for k, v in env.items())}")
    summary = []
    for name in args.shapes:
        shape = SHAPES[name]
        if shape.real:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import real_features

            if not real_features.available():
                print(f"\n[{name}] {real_features.MISSING}")
                continue
        summary.append(bench_shape(shape, args))
    if any("ratio" in s for s in summary):
        print("\nsummary: torch vs sklearn-paper at its best configuration, 45-C sweep + refit")
        for s in summary:
            if "ratio" in s:
                print(f"  {s['shape']:<6}{s['ratio']:7.1f}x  (torch {s['torch_s']:.2f} s)")


if __name__ == "__main__":
    main()
