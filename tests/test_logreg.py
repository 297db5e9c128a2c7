"""Parity of the linear-probe solvers with scikit-learn run to convergence.

Each feature set is split train/val/test; the selection is the paper's (scan ``C_GRID`` in its
descending order, first best val score wins), then a warm-started refit on train+val is scored
on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from ssl_lib.evaluate.logreg import C_GRID, SOLVERS, LinearClassifier, fit, fit_path
from ssl_lib.exceptions import SSLLibError, UnknownNameError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    X: np.ndarray
    y: np.ndarray
    n_tr: int
    n_val: int
    num_classes: int
    multilabel: bool = False

    @property
    def train(self):
        return self.X[: self.n_tr], self.y[: self.n_tr]

    @property
    def val(self):
        s = slice(self.n_tr, self.n_tr + self.n_val)
        return self.X[s], self.y[s]

    @property
    def trainval(self):
        s = slice(0, self.n_tr + self.n_val)
        return self.X[s], self.y[s]

    @property
    def test(self):
        s = slice(self.n_tr + self.n_val, None)
        return self.X[s], self.y[s]


def _blobs(n, d, k, sep, seed, offset=0.0, priors=None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(k, d)) * sep
    y = rng.choice(k, size=n, p=priors)
    scale = rng.uniform(0.5, 2.0, size=d)  # unnormalised features, like frozen backbones
    X = (mu[y] + rng.normal(size=(n, d))) * scale + offset
    return X, y


def _cnnlike(n, d, k, sep, seed) -> tuple[np.ndarray, np.ndarray]:
    """Like pooled CNN features: non-negative, clipped, float32, a power-law spectrum (condition
    number ~3e4) with the class signal in its leading directions. scikit-learn's cost, and the
    torch solver's, depend on this conditioning; isotropic blobs hide it."""
    rng = np.random.default_rng(seed)
    r = 48
    basis = np.linalg.qr(rng.normal(size=(d, r)))[0].T
    spec = 2.0 * np.arange(1, r + 1) ** -1.5
    mu = rng.normal(size=(k, r)) * spec * sep
    y = rng.integers(0, k, n)
    Z = mu[y] + rng.normal(size=(n, r)) * spec
    X = np.clip(Z @ basis * np.sqrt(d) + 0.3 + 0.01 * rng.normal(size=(n, d)), 0, 6)
    return X.astype(np.float32), y


# name -> (features and labels, n_train, n_val, n_classes)
_PLAIN = {
    "cnnlike": (lambda: _cnnlike(1000, 96, 10, 0.6, seed=0), 500, 200, 10),
    "blobs": (lambda: _blobs(900, 8, 4, 0.6, seed=0, offset=1.0), 500, 200, 4),
    "overlap": (lambda: _blobs(900, 12, 3, 0.25, seed=1), 500, 200, 3),
    "highdim": (lambda: _blobs(1000, 64, 10, 0.45, seed=2, offset=0.5), 400, 300, 10),
}


def _make(name: str) -> Split:
    if name in _PLAIN:
        data, n_train, n_val, k = _PLAIN[name]
        return Split(*data(), n_train, n_val, k)
    if name == "missing":  # class 5 never in train; class 0 dominant
        X, y = _blobs(800, 12, 6, 0.5, seed=3, priors=[0.5, 0.15, 0.15, 0.1, 0.05, 0.05])
        keep = np.ones(len(y), bool)
        keep[:500] = y[:500] != 5
        X, y = X[keep], y[keep]
        n_tr = int(keep[:500].sum())
        return Split(X, y, n_tr - 200, 200, 6)
    if name == "multilabel":
        rng = np.random.default_rng(4)
        n, d, k = 700, 12, 4
        X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
        W = rng.normal(size=(k, d)) * 0.3
        logits = X @ W.T + rng.normal(size=(n, k)) * 1.5 - 0.5
        return Split(X, (logits > 0).astype(np.int64), 400, 150, k, multilabel=True)
    raise KeyError(name)


PARITY_SETS = ["blobs", "overlap", "highdim", "missing", "multilabel", "cnnlike"]


def _score(model: LinearClassifier, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (multiclass) or mean average precision of the logits (multilabel), in %."""
    if model.multilabel:
        z = model.decision_function(X)
        return 100 * float(np.mean([average_precision_score(y[:, c], z[:, c]) for c in range(y.shape[1])]))
    return 100 * float((model.predict(X) == y).mean())


@cache
def _protocol(name: str, solver: str, tol: float | None = None) -> tuple[int, float, list[LinearClassifier]]:
    """(selected grid index, test score after the warm-started refit, the train path)."""
    s = _make(name)
    kw = dict(multilabel=s.multilabel, num_classes=s.num_classes, tol=tol)
    path = fit_path(*s.train, C_GRID, solver=solver, **kw)
    val = [_score(m, *s.val) for m in path]
    best = int(np.argmax(val))  # first maximum in the grid's descending order, as the paper
    refit = fit(*s.trainval, C_GRID[best], solver=solver, init=path[best], **kw)
    return best, _score(refit, *s.test), path


# ---------------------------------------------------------------------------- parity


def test_grid_is_the_papers():
    assert C_GRID.shape == (45,) and C_GRID.dtype == np.float64
    assert C_GRID[0] == pytest.approx(1e6) and C_GRID[-1] == pytest.approx(1e-5)
    assert np.all(np.diff(C_GRID) < 0)
    assert set(SOLVERS) == {"torch", "sklearn", "sklearn-paper"}


@pytest.mark.parametrize("name", PARITY_SETS)
def test_selection_and_test_score_match_sklearn(name):
    i_t, acc_t, _ = _protocol(name, "torch")
    i_s, acc_s, _ = _protocol(name, "sklearn")
    assert abs(i_t - i_s) <= 1, (C_GRID[i_t], C_GRID[i_s])
    assert abs(acc_t - acc_s) <= 0.5, (acc_t, acc_s)


@pytest.mark.parametrize("name", ["blobs", "highdim", "missing", "multilabel", "cnnlike"])
def test_coefficients_match_sklearn_at_moderate_C(name):
    # the optimum itself: both solvers at the reference tolerance
    _, _, path_t = _protocol(name, "torch", tol=1e-6)
    _, _, path_s = _protocol(name, "sklearn")
    for i in np.flatnonzero((C_GRID >= 1e-3) & (C_GRID <= 1.0))[::3]:
        t, s = path_t[i], path_s[i]
        assert t.converged and s.converged
        np.testing.assert_allclose(t.coef, s.coef, rtol=0, atol=1e-3 * np.abs(s.coef).max())
        fin = np.isfinite(s.intercept)
        np.testing.assert_array_equal(fin, np.isfinite(t.intercept))
        # intercepts are compared through the logits (softmax ones are defined up to a shift)
        X = _make(name).test[0]
        zt, zs = t.decision_function(X)[:, fin], s.decision_function(X)[:, fin]
        if not s.multilabel:
            zt, zs = zt - zt.mean(1, keepdims=True), zs - zs.mean(1, keepdims=True)
        np.testing.assert_allclose(zt, zs, rtol=0, atol=1e-3 * max(1.0, np.abs(zs).max()))


def _sk_gradient_inf_norm(m: LinearClassifier, X: np.ndarray, y: np.ndarray) -> float:
    """``max|grad|`` of scikit-learn's scaled objective at ``m`` (what its ``tol`` bounds), float64."""
    X = X.astype(np.float64)
    n = len(X)
    if m.multilabel:
        out = 0.0
        for c in np.flatnonzero(np.isfinite(m.intercept)):
            z = X @ m.coef[c] + m.intercept[c]
            r = (1.0 / (1.0 + np.exp(-z)) - y[:, c]) / n
            out = max(out, np.abs(X.T @ r + m.coef[c] / (m.C * n)).max(), abs(r.sum()))
        return out
    live = np.flatnonzero(np.isfinite(m.intercept))
    Z = X @ m.coef[live].T + m.intercept[live]
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(n), np.searchsorted(live, y)] -= 1.0
    gW = P.T @ X / n + m.coef[live] / (m.C * n)
    return max(np.abs(gW).max(), np.abs(P.sum(0) / n).max())


@pytest.mark.parametrize("name", ["blobs", "highdim", "missing", "multilabel", "cnnlike"])
def test_every_path_fit_passes_sklearns_gradient_test(name):
    # the path skips fits whose warm start already passes (the free test) and starts the others
    # from an extrapolation: every fit it reports converged must meet the test itself
    s = _make(name)
    X, y = s.train
    for tol in (1e-4, 1e-6):
        path = fit_path(X, y, C_GRID, multilabel=s.multilabel, num_classes=s.num_classes, tol=tol)
        assert all(m.converged for m in path)
        skipped = [m for m in path if m.n_iter == 0]
        assert skipped, "the free warm-start test never fired"
        for m in path:
            # float32 data terms: the test holds up to float32 rounding of the features
            assert _sk_gradient_inf_norm(m, X, y) <= tol * 1.05 + 1e-7, (m.C, m.n_iter)


@pytest.mark.parametrize("name", ["cnnlike", "highdim"])
def test_carried_curvature_saves_iterations(name, monkeypatch):
    # the data term is the same function at every C, so pairs corrected by (lam' - lam) s are
    # exact curvature information about it; a wrong correction would cost iterations instead
    from ssl_lib.evaluate import _logreg_path

    s = _make(name)
    runs = {}
    for carry in (False, True):
        monkeypatch.setattr(_logreg_path, "CARRY_MEMORY", carry)
        runs[carry] = fit_path(*s.train, num_classes=s.num_classes)
    assert all(m.converged for m in runs[True])
    its = {c: sum(m.n_iter for m in p) for c, p in runs.items()}
    assert its[True] < its[False], its


def test_float32_data_terms_reach_the_float64_optimum():
    # logits are kept in float64 along each search direction, so float32 GEMMs neither stall the
    # line search near a tight tolerance nor move the optimum beyond the data's own rounding
    s = _make("cnnlike")
    for C in (1e-3, 1e-1, 10.0):
        a = fit(*s.train, C, tol=1e-6, dtype=torch.float32)
        b = fit(*s.train, C, tol=1e-6, dtype=torch.float64)
        assert a.converged and b.converged
        np.testing.assert_allclose(a.coef, b.coef, rtol=0, atol=1e-3 * np.abs(b.coef).max())


def test_binary_problem_uses_sklearns_objective():
    X, y = _blobs(400, 6, 2, 0.5, seed=5, offset=1.0)
    for C in (1e-2, 1.0):
        t, s = fit(X, y, C, tol=1e-6), fit(X, y, C, solver="sklearn")
        np.testing.assert_allclose(t.coef, s.coef, atol=1e-4 * np.abs(s.coef).max())
        np.testing.assert_allclose(t.coef[0], -t.coef[1])  # softmax-equivalent of one w
        np.testing.assert_allclose(t.intercept, s.intercept, atol=1e-4)


def test_missing_class_keeps_its_row_and_is_never_predicted():
    s = _make("missing")
    m = fit(*s.train, 1.0, num_classes=6)
    assert m.coef.shape == (6, 12) and np.all(m.coef[5] == 0) and m.intercept[5] == -np.inf
    assert not np.any(m.predict(s.test[0]) == 5)
    p = m.predict_proba(s.test[0])
    assert np.all(p[:, 5] == 0) and np.allclose(p.sum(1), 1)


# ---------------------------------------------------------------------------- API behaviour


def test_shapes_and_probabilities():
    s = _make("blobs")
    m = fit(*s.train, 0.1, num_classes=4)
    X = s.test[0]
    assert m.decision_function(X).shape == (len(X), 4) and m.predict(X).shape == (len(X),)
    np.testing.assert_allclose(m.predict_proba(X).sum(1), 1.0)
    ml = _make("multilabel")
    m = fit(*ml.train, 0.1, multilabel=True)
    X = ml.test[0]
    assert m.decision_function(X).shape == (len(X), 4) and m.predict(X).shape == (len(X), 4)
    p = m.predict_proba(X)
    assert np.all((p > 0) & (p < 1)) and set(np.unique(m.predict(X))) <= {0, 1}


@pytest.mark.parametrize("solver", ["torch", "sklearn"])
def test_warm_start_reaches_the_same_optimum(solver):
    s = _make("blobs")
    cold = fit(*s.trainval, 0.05, solver=solver)
    start = fit(*s.train, 1.0, solver=solver)  # a different problem's optimum
    warm = fit(*s.trainval, 0.05, solver=solver, init=start)
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-3 * np.abs(cold.coef).max())


def test_sklearn_paper_path_runs_in_order():
    s = _make("blobs")
    path = fit_path(*s.train, solver="sklearn-paper")
    assert len(path) == 45 and [m.C for m in path] == list(C_GRID)
    assert all(m.n_iter <= 100 for m in path)
    ml = _make("multilabel")
    path = fit_path(*ml.train, C_GRID[::11], solver="sklearn-paper", multilabel=True)
    assert [m.C for m in path] == list(C_GRID[::11]) and path[0].coef.shape == (4, 12)
    refit = fit(*ml.trainval, C_GRID[11], solver="sklearn-paper", multilabel=True, init=path[-1])
    assert refit.coef.shape == (4, 12)


def test_torch_strategies_agree():
    s = _make("overlap")
    Cs = C_GRID[20:40:4]
    paths = {st: fit_path(*s.train, Cs, strategy=st, tol=1e-6)
             for st in ("ascending", "given", "batched", "auto")}
    for st in ("given", "batched", "auto"):
        for a, b in zip(paths["ascending"], paths[st]):
            assert a.C == b.C
            np.testing.assert_allclose(a.coef, b.coef, atol=1e-3 * np.abs(a.coef).max())


def test_batched_grid_split_into_chunks_agrees(monkeypatch):
    # the CUDA default solves the grid as batches of C values; the split must not change answers
    from ssl_lib.evaluate import logreg

    s = _make("highdim")
    Cs = C_GRID[16:32:3]
    whole = fit_path(*s.train, Cs, strategy="batched", tol=1e-6)
    monkeypatch.setattr(logreg, "BATCH_ELEMENTS", {"cpu": s.n_tr * 10 * 2})  # 2 C values a batch
    split = fit_path(*s.train, Cs, strategy="batched", tol=1e-6)
    for a, b in zip(whole, split):
        assert a.C == b.C and b.converged
        np.testing.assert_allclose(a.coef, b.coef, atol=1e-6 * np.abs(a.coef).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu():
    s = _make("cnnlike")
    gpu = fit_path(*s.train, C_GRID[10:30], tol=1e-6, device="cuda")  # "auto": batched over C
    cpu = fit_path(*s.train, C_GRID[10:30], tol=1e-6, device="cpu")
    for a, b in zip(gpu, cpu):
        assert a.converged
        np.testing.assert_allclose(a.coef, b.coef, atol=2e-3 * np.abs(b.coef).max())


def test_iteration_cap_reports_unconverged():
    s = _make("highdim")
    m = fit(*s.train, 1e6, max_iter=5)
    assert not m.converged and m.n_iter <= 5 and np.all(np.isfinite(m.coef))


def test_deterministic():
    s = _make("overlap")
    a, b = fit(*s.train, 0.3), fit(*s.train, 0.3)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.intercept, b.intercept)


# ---------------------------------------------------------------------------- bad input

X_OK = np.random.default_rng(0).normal(size=(20, 3))
Y_OK = np.arange(20) % 3


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "match"),
    [
        (X_OK[:, 0], Y_OK, {}, "X must be 2-D"),
        (X_OK, Y_OK[:-1], {}, "y has 19 rows but X has 20"),
        (np.where(np.eye(20, 3) > 0, np.nan, X_OK), Y_OK, {}, "NaN or inf"),
        (np.where(np.eye(20, 3) > 0, np.inf, X_OK), Y_OK, {}, "NaN or inf"),
        (X_OK, Y_OK, {"C": 0.0}, "C must be positive"),
        (X_OK, Y_OK, {"C": -1.0}, "C must be positive"),
        (X_OK, Y_OK - 1, {}, "labels out of range"),
        (X_OK, Y_OK, {"num_classes": 2}, "labels out of range"),
        (X_OK, np.zeros(20, int), {}, "single class"),
        (X_OK, Y_OK, {"multilabel": True}, "multilabel y must be an \\(n, k\\) array of 0/1"),
        (X_OK, np.full((20, 2), 2), {"multilabel": True}, "multilabel y must be"),
    ],
)
def test_bad_input(X, y, kwargs, match):
    C = kwargs.pop("C", 1.0)
    with pytest.raises(SSLLibError, match=match):
        fit(X, y, C, **kwargs)


def test_unknown_solver_and_init_mismatch():
    with pytest.raises(UnknownNameError, match="Unknown solver 'skleran'. Did you mean 'sklearn'"):
        fit(X_OK, Y_OK, 1.0, solver="skleran")
    other = fit(X_OK[:, :2], Y_OK, 1.0)
    with pytest.raises(SSLLibError, match="init has coef shape"):
        fit(X_OK, Y_OK, 1.0, init=other)
    with pytest.raises(SSLLibError, match="C must be positive"):
        fit_path(X_OK, Y_OK, [1.0, np.nan])
