"""L2-regularised logistic regression on frozen features: the many-shot linear-probe solvers.

Every solver minimises scikit-learn's objective (intercept not penalised)::

    multiclass:  min_{W, b}  C * sum_i CE(softmax(W x_i + b), y_i) + 1/2 ||W||_F^2
    multilabel:  for each class k independently,
                 min_{w, b}  C * sum_i BCE(sigmoid(w . x_i + b), y_ik) + 1/2 ||w||^2

and returns :class:`LinearClassifier` objects laid out over all ``num_classes`` classes.
As in scikit-learn, a multiclass problem with exactly two classes present is the *binary*
problem above (one weight vector ``w``), stored in softmax-equivalent form
``coef = [-w/2, +w/2]``; a class absent from the training labels gets a zero row and intercept
``-inf`` (never predicted), and a multilabel column with no positives (all positives) gets
intercept ``-inf`` (``+inf``) without fitting.

Solvers (``SOLVERS``):

``"torch"`` (default)
    Batched full-batch L-BFGS in torch (:mod:`._logreg_torch`): data terms in float32 GEMMs,
    everything else float64, stopped at ``max|grad| <= tol`` (default 1e-4 as scikit-learn's,
    capped at 1000 iterations) on scikit-learn's scaled objective, the gradient taken in the
    original coordinates (the same test as its ``tol``). It works in centred coordinates with a
    C-dependent diagonal metric (``precondition="auto"``) and, on CPU, walks ``C`` from small to
    large (``strategy="auto"``: :mod:`._logreg_path`), each fit from the previous solution when
    that already passes the test (free: no pass over the data) and else from the secant
    extrapolation of the last two; on CUDA it solves the whole grid as one batch. Results come
    back in the order of ``Cs``.
``"sklearn"``
    The reference: ``LogisticRegression(lbfgs, tol=1e-6, max_iter=5000)`` on float64, warm-started
    along increasing ``C`` (same optimum as cold starts wherever it converges, far cheaper).
``"sklearn-paper"``
    The paper's exact code path: one ``LogisticRegression(solver='lbfgs', warm_start=True)`` with
    the defaults ``max_iter=100, tol=1e-4``, refit along ``Cs`` in the given order (the paper's is
    descending), convergence warnings suppressed; multilabel fits each class in turn with the same
    estimator, as the paper's per-class loop does. ``X`` keeps its dtype (the paper's were float32).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._registry import Registry
from ..exceptions import SSLLibError
from . import _logreg_path as _lp
from ._logreg_path import PRECONDITIONERS, STRATEGIES

__all__ = [
    "C_GRID",
    "LinearClassifier",
    "SOLVERS",
    "STRATEGIES",
    "PRECONDITIONERS",
    "fit_path",
    "fit",
]

#: The paper's grid: ``C = 1 / torch.logspace(-6, 5, 45)``, descending from 1e6 to 1e-5.
C_GRID: np.ndarray = 1.0 / np.logspace(-6, 5, 45)

# reference ("sklearn") stopping rule: run to convergence
REF_TOL = 1e-6
REF_MAX_ITER = 5000
# the paper's ("sklearn-paper") settings: scikit-learn's defaults
PAPER_TOL = 1e-4
PAPER_MAX_ITER = 100
# torch solver: scikit-learn's default tol on the same gradient test. On the mini suite's
# features 1e-6 took 4-6x the iterations and chose the same C on every dataset measured.
TORCH_TOL = 1e-4
TORCH_MAX_ITER = 1000
#: dtype of the torch solver's data terms (the GEMMs over the features); the rest is float64
DATA_DTYPE = torch.float32
#: elements of one batched logits matrix (n * n_C * k) above which the C batch is split; a few
#: float64 copies of it are live at once (2**28: ~2 GB each, so the whole grid at 50k x 100 fits)
BATCH_ELEMENTS = {"cpu": 2**25, "cuda": 2**28}


# ---------------------------------------------------------------------------- result type


@dataclass
class LinearClassifier:
    """A fitted linear classifier over ``k`` classes; logits are ``X @ coef.T + intercept``."""

    coef: np.ndarray  # (k, d)
    intercept: np.ndarray  # (k,); -inf/+inf for classes that are never/always predicted
    C: float
    multilabel: bool
    n_iter: int  # iterations used (summed over the per-class problems when there are several)
    converged: bool
    solver: str = field(default="", compare=False)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, ``(n, k)``."""
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.coef.shape[1]:
            raise SSLLibError(
                f"X has {X.shape[1]} features but the classifier was fit on {self.coef.shape[1]}; "
                "pass features from the same backbone."
            )
        return X @ self.coef.T + self.intercept

    def predict(self, X: Any) -> np.ndarray:
        """Class index ``(n,)``; multilabel: ``(n, k)`` 0/1 where the logit is positive."""
        z = self.decision_function(X)
        if self.multilabel:
            return (z > 0).astype(np.int64)
        return z.argmax(1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax over classes (multiclass) or per-class sigmoid (multilabel)."""
        z = self.decision_function(X)
        if self.multilabel:
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


# ---------------------------------------------------------------------------- input checks


@dataclass
class _Problem:
    """Validated training data plus the layout that maps a fit back to ``num_classes`` rows."""

    X: np.ndarray  # (n, d), the caller's float dtype
    y: np.ndarray  # (n,) int64 or (n, k) int8
    num_classes: int
    multilabel: bool
    present: np.ndarray  # multiclass: sorted classes present; multilabel: columns to fit

    @property
    def binary(self) -> bool:
        """Multiclass with exactly two classes present: scikit-learn fits one binary problem."""
        return not self.multilabel and len(self.present) == 2


def _as_2d_float(X: Any, name: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise SSLLibError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}; "
                          "flatten or stack the features first.")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise SSLLibError(f"{name} must be numeric, got dtype {X.dtype}.")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    return X


def _check_problem(X: Any, y: Any, multilabel: bool, num_classes: int | None) -> _Problem:
    X = _as_2d_float(X, "X")
    n = X.shape[0]
    if n == 0 or X.shape[1] == 0:
        raise SSLLibError(f"X is empty (shape {X.shape}); extract features for at least one sample.")
    if not np.isfinite(X).all():
        raise SSLLibError("X contains NaN or inf; check the feature extraction (e.g. fp16 overflow).")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.shape[:1] != (n,):
        raise SSLLibError(f"y has {y.shape[0] if y.ndim else 0} rows but X has {n}; "
                          "pass one label (row) per feature row.")
    if multilabel:
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise SSLLibError(f"multilabel y must be an (n, k) array of 0/1, got shape {y.shape}"
                              f"{'' if y.ndim != 2 else ' with other values'}; "
                              "map targets to 1 for positives and 0 otherwise.")
        if num_classes is not None and num_classes != y.shape[1]:
            raise SSLLibError(f"num_classes={num_classes} but multilabel y has {y.shape[1]} columns.")
        y = y.astype(np.int8)
        pos = y.sum(0)
        present = np.flatnonzero((pos > 0) & (pos < n))
        return _Problem(X, y, y.shape[1], True, present)
    if y.ndim != 1:
        raise SSLLibError(f"y must be 1-D integer labels, got shape {y.shape}; "
                          "pass multilabel=True for (n, k) 0/1 targets.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise SSLLibError(f"y must hold integer class labels, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.min() < 0 or y.max() >= k:
        raise SSLLibError(f"labels out of range: y spans [{y.min()}, {y.max()}] but "
                          f"num_classes={k}; labels must be 0..num_classes-1.")
    present = np.unique(y)
    if len(present) < 2:
        raise SSLLibError(f"y holds a single class ({present[0]}); a classifier needs at least two.")
    return _Problem(X, y, k, False, present)


def _check_Cs(Cs: Any) -> np.ndarray:
    Cs = np.atleast_1d(np.asarray(Cs, dtype=np.float64))
    if Cs.ndim != 1 or Cs.size == 0:
        raise SSLLibError(f"Cs must be a non-empty 1-D sequence of floats, got shape {Cs.shape}.")
    if not (np.isfinite(Cs).all() and (Cs > 0).all()):
        raise SSLLibError(f"C must be positive and finite, got {Cs[~(np.isfinite(Cs) & (Cs > 0))][0]!r}; "
                          "C is the inverse regularisation strength (e.g. C_GRID).")
    return Cs


# ---------------------------------------------------------------------------- layouts


def _to_classifier(p: _Problem, W: np.ndarray, C: float, n_iter: int, converged: bool,
                   solver: str) -> LinearClassifier:
    """Full ``num_classes`` layout from fitted rows ``W`` ((r, d+1), bias last column).

    ``W`` rows: multiclass, one per present class; binary, the one positive-class row;
    multilabel, one per fitted column.
    """
    d, k = p.X.shape[1], p.num_classes
    coef = np.zeros((k, d))
    intercept = np.full(k, -np.inf)
    if p.multilabel:
        always = p.y.sum(0) == p.y.shape[0]
        intercept[always] = np.inf
        rows = p.present
    elif p.binary:
        W = np.concatenate([-0.5 * W, 0.5 * W])
        rows = p.present
    else:
        rows = p.present
    coef[rows] = W[:, :d]
    intercept[rows] = W[:, d]
    return LinearClassifier(coef=coef, intercept=intercept, C=float(C), multilabel=p.multilabel,
                            n_iter=int(n_iter), converged=bool(converged), solver=solver)


def _from_classifier(p: _Problem, init: LinearClassifier) -> np.ndarray:
    """Starting rows for problem ``p`` (layout of :func:`_to_classifier`) from ``init``."""
    d = p.X.shape[1]
    if init.coef.shape != (p.num_classes, d) or init.multilabel != p.multilabel:
        raise SSLLibError(
            f"init has coef shape {init.coef.shape} (multilabel={init.multilabel}) but this problem "
            f"needs ({p.num_classes}, {d}) (multilabel={p.multilabel}); warm-start from a fit on "
            "the same features and classes."
        )
    Wb = np.concatenate([init.coef, init.intercept[:, None]], axis=1)
    if p.binary:
        a, b = p.present
        W = (Wb[b] - Wb[a])[None]
    else:
        W = Wb[p.present]
    W = W.astype(np.float64, copy=True)
    W[~np.isfinite(W)] = 0.0  # rows that were never/always predicted restart at zero
    return W


# ---------------------------------------------------------------------------- solvers

SolverFn = Callable[..., list[LinearClassifier]]
SOLVERS: Registry[SolverFn] = Registry("solver", hint="Use one of ssl_lib.evaluate.logreg.SOLVERS.")


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@SOLVERS.register("torch")
def _solve_torch(p: _Problem, Cs: np.ndarray, init: LinearClassifier | None, *,
                 tol: float | None, max_iter: int | None, device: Any = None,
                 strategy: str = "auto", dtype: torch.dtype | None = None,
                 precondition: str = "auto") -> list[LinearClassifier]:
    """Batched L-BFGS (:mod:`._logreg_path`); ``strategy`` walks the path (:data:`STRATEGIES`),
    ``precondition`` picks its initial metric (:data:`PRECONDITIONERS`; the minimiser is the
    same), ``dtype`` the data terms' dtype (float32 by default; the rest is float64)."""
    if strategy not in STRATEGIES:
        raise SSLLibError(f"Unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if precondition not in PRECONDITIONERS:
        raise SSLLibError(f"Unknown precondition {precondition!r}; use one of "
                          f"{', '.join(PRECONDITIONERS)}.")
    dev = _default_device(device)
    tol = TORCH_TOL if tol is None else tol
    max_iter = TORCH_MAX_ITER if max_iter is None else max_iter
    n, d = p.X.shape
    X = torch.as_tensor(p.X, device=dev)
    r = len(p.present)
    if p.multilabel:
        if r == 0:
            return [_to_classifier(p, np.zeros((0, d + 1)), C, 0, True, "torch") for C in Cs]
        Y = torch.as_tensor(p.y[:, p.present], dtype=torch.float64, device=dev)
        tp = _lp.TorchProblem(X, softmax=False, r=r, Y=Y)
    elif p.binary:
        Y = torch.as_tensor(p.y == p.present[1], dtype=torch.float64, device=dev)[:, None]
        tp = _lp.TorchProblem(X, softmax=False, r=1, Y=Y)
    else:
        ylab = torch.as_tensor(np.searchsorted(p.present, p.y), dtype=torch.long, device=dev)
        tp = _lp.TorchProblem(X, softmax=True, r=r, y=ylab)
    W_start = torch.zeros(tp.r, d + 1, dtype=torch.float64, device=dev)
    if init is not None:
        W_start = torch.as_tensor(_from_classifier(p, init), dtype=torch.float64, device=dev)
    fits = _lp.solve_path(tp, Cs, W_start, tol=tol, max_iter=max_iter, strategy=strategy,
                          dtype=DATA_DTYPE if dtype is None else dtype,
                          precondition=precondition,
                          batch_elements=BATCH_ELEMENTS.get(dev.type, BATCH_ELEMENTS["cpu"]))
    return [_to_classifier(p, f.W.cpu().numpy(), C, f.n_iter, f.converged, "torch")
            for f, C in zip(fits, Cs)]


def _sk_estimator(C: float, tol: float, max_iter: int, warm_start: bool):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, solver="lbfgs", tol=tol, max_iter=max_iter, warm_start=warm_start)


def _sk_fit(clf, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Fit ``clf``; return its rows ``(r, d+1)`` (bias last), iterations, converged."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    W = np.concatenate([clf.coef_, clf.intercept_[:, None]], axis=1).astype(np.float64)
    return W, int(np.asarray(clf.n_iter_).sum()), converged


def _sk_set_state(clf, W: np.ndarray) -> None:
    clf.coef_ = np.ascontiguousarray(W[:, :-1])
    clf.intercept_ = np.ascontiguousarray(W[:, -1])


def _sk_targets(p: _Problem) -> list[np.ndarray]:
    """Per-problem targets: one per fitted multilabel column, else the labels themselves."""
    if p.multilabel:
        return [p.y[:, c] for c in p.present]
    return [p.y]


@SOLVERS.register("sklearn")
def _solve_sklearn(p: _Problem, Cs: np.ndarray, init: LinearClassifier | None, *,
                   tol: float | None, max_iter: int | None, device: Any = None
                   ) -> list[LinearClassifier]:
    """scikit-learn to convergence, float64, warm-started along increasing ``C``."""
    tol = REF_TOL if tol is None else tol
    max_iter = REF_MAX_ITER if max_iter is None else max_iter
    X = p.X.astype(np.float64)
    targets = _sk_targets(p)
    clfs = [_sk_estimator(1.0, tol, max_iter, warm_start=True) for _ in targets]
    if init is not None:
        W0 = _from_classifier(p, init)
        for j, clf in enumerate(clfs):
            _sk_set_state(clf, W0[j:j + 1] if p.multilabel else W0)
    out: list[LinearClassifier | None] = [None] * len(Cs)
    for i in np.argsort(Cs, kind="stable"):
        rows, its, conv = [], 0, True
        for clf, t in zip(clfs, targets):
            clf.set_params(C=float(Cs[i]))
            W, it, c = _sk_fit(clf, X, t)
            rows.append(W)
            its, conv = its + it, conv and c
        W = np.concatenate(rows) if rows else np.zeros((0, X.shape[1] + 1))
        out[i] = _to_classifier(p, W, Cs[i], its, conv, "sklearn")
    return out  # type: ignore[return-value]


@SOLVERS.register("sklearn-paper")
def _solve_sklearn_paper(p: _Problem, Cs: np.ndarray, init: LinearClassifier | None, *,
                         tol: float | None, max_iter: int | None, device: Any = None
                         ) -> list[LinearClassifier]:
    """The paper's loop: one warm-started estimator refit along ``Cs`` as given (and per class)."""
    tol = PAPER_TOL if tol is None else tol
    max_iter = PAPER_MAX_ITER if max_iter is None else max_iter
    clf = _sk_estimator(1.0, tol, max_iter, warm_start=True)
    if init is not None:
        W0 = _from_classifier(p, init)
        # the estimator's state after the paper's last fit: the last class of the per-class loop
        _sk_set_state(clf, W0[-1:] if p.multilabel else W0)
    out = []
    targets = _sk_targets(p)
    for C in Cs:
        clf.set_params(C=float(C))
        rows, its, conv = [], 0, True
        for t in targets:
            W, it, c = _sk_fit(clf, p.X, t)
            rows.append(W)
            its, conv = its + it, conv and c
        W = np.concatenate(rows) if rows else np.zeros((0, p.X.shape[1] + 1))
        out.append(_to_classifier(p, W, C, its, conv, "sklearn-paper"))
    return out


# ---------------------------------------------------------------------------- public API


def fit_path(X: Any, y: Any, Cs: Sequence[float] | np.ndarray = C_GRID, *, solver: str = "torch",
             multilabel: bool = False, num_classes: int | None = None, device: Any = None,
             tol: float | None = None, max_iter: int | None = None,
             **solver_options: Any) -> list[LinearClassifier]:
    """Fit one classifier per ``C`` in ``Cs`` on ``(X, y)``; returned in the order of ``Cs``.

    ``tol``/``max_iter`` override the solver's stopping rule (torch: ``max|grad|`` on the
    objective divided by ``C n``, as scikit-learn's ``tol``). ``solver_options`` go to the
    solver (torch: ``strategy`` in :data:`STRATEGIES`, ``precondition`` in
    :data:`PRECONDITIONERS`, ``dtype`` of the data terms, float32 by default).
    """
    fn = SOLVERS.get(solver)
    p = _check_problem(X, y, multilabel, num_classes)
    return fn(p, _check_Cs(Cs), None, tol=tol, max_iter=max_iter, device=device, **solver_options)


def fit(X: Any, y: Any, C: float, *, solver: str = "torch", multilabel: bool = False,
        num_classes: int | None = None, init: LinearClassifier | None = None, device: Any = None,
        tol: float | None = None, max_iter: int | None = None,
        **solver_options: Any) -> LinearClassifier:
    """One fit at one ``C``, warm-started from ``init``'s coefficients when given.

    This is the model whose test score is reported, so the torch solver runs it to the
    reference tolerance (``REF_TOL``): at the sweep's looser ``TORCH_TOL`` a warm-started refit
    stopped 2 points of test accuracy away from the optimum on mini-source features.
    """
    fn = SOLVERS.get(solver)
    if tol is None and solver == "torch":
        tol = REF_TOL
    p = _check_problem(X, y, multilabel, num_classes)
    Cs = _check_Cs([C])
    if Cs.size != 1:
        raise SSLLibError(f"fit takes one C, got {Cs.size}; use fit_path for a grid.")
    return fn(p, Cs, init, tol=tol, max_iter=max_iter, device=device, **solver_options)[0]
