"""Batched full-batch L-BFGS for L2-regularised logistic regression, in torch.

Every problem in a batch is solved independently (its own curvature history, step length and
stopping test), so one call can hold several classes of a one-vs-rest problem and/or several
``C`` values of a regularisation path. The objectives are scikit-learn's, scaled as scikit-learn
scales them before handing them to L-BFGS (so ``gtol`` means the same thing)::

    softmax:  f(W) = mean_i CE(softmax(W [x_i; 1]), y_i) + lam/2 ||W[:, :d]||_F^2
    binary:   f(w) = mean_i BCE(sigmoid(w . [x_i; 1]), y_i) + lam/2 ||w[:d]||^2

with ``lam = 1 / (C n)``; this is ``C * sum_i loss_i + 1/2 ||W||^2`` divided by ``C n``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Affine", "LBFGSResult", "lbfgs", "SoftmaxObjective", "BinaryObjective"]

HISTORY = 10  # curvature pairs kept, as scipy's L-BFGS-B default (maxcor)
ARMIJO_C1 = 1e-4
MAX_LINE_SEARCH = 40
#: relative-decrease stop, scipy's ``ftol = factr * eps`` as scikit-learn sets it (64 * eps)
FTOL_FACTOR = 64.0

# fun(x, idx) -> (f, g): per-problem objective (m,) and gradient (m, v) for the problems ``idx``
Closure = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LBFGSResult:
    x: torch.Tensor  # (m, v) solutions
    n_iter: torch.Tensor  # (m,) iterations used per problem
    converged: torch.Tensor  # (m,) bool: gradient or relative-decrease test met


class Affine:
    """Solve in standardised coordinates: ``x = mu + sigma * z`` (an exact reparametrisation).

    Weights ``W`` on ``x`` and ``V = W * sigma`` on ``z`` give the same logits with intercepts
    ``b`` and ``c = b + W @ mu``; the penalty ``1/2 ||W||^2`` becomes ``1/2 sum_j V_j^2 / sigma_j^2``.
    The minimiser is unchanged, but L-BFGS sees far better conditioning on raw (uncentred,
    unscaled) features. Parameter rows are ``(r, d+1)``, intercept last.
    """

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor) -> None:
        self.mu, self.sigma, self.d = mu, sigma, mu.shape[0]
        self.pen = torch.cat([sigma.pow(-2), sigma.new_zeros(1)])

    @classmethod
    def from_data(cls, X: torch.Tensor, center: bool = True, scale: bool = True,
                  ridge: float = 0.0) -> Affine:
        """``mu`` = feature means (or 0); ``sigma = sqrt(std^2 + ridge)`` (or 1).

        ``ridge`` blends towards isotropic scaling where the penalty dominates the curvature
        (small ``C``): the data term's diagonal curvature is ~``a * std_j^2`` and the penalty's is
        ``lam``, so ``ridge = lam / a`` balances the two.
        """
        n, d = X.shape
        mu = X.mean(0) if center else X.new_zeros(d)
        if scale and n > 1:
            sd = X.std(0)
            sigma = torch.sqrt(sd.square() + ridge)
            sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        else:
            sigma = X.new_ones(d)
        return cls(mu, sigma)

    def design(self, X: torch.Tensor) -> torch.Tensor:
        """``[(X - mu) / sigma, 1]``, ``(n, d+1)``."""
        Xa = torch.ones(X.shape[0], self.d + 1, dtype=X.dtype, device=X.device)
        torch.div(X - self.mu, self.sigma, out=Xa[:, : self.d])
        return Xa

    def to_internal(self, Wb: torch.Tensor) -> torch.Tensor:
        W, b = Wb[..., : self.d], Wb[..., self.d :]
        return torch.cat([W * self.sigma, b + W @ self.mu.unsqueeze(1)], dim=-1)

    def to_external(self, Vc: torch.Tensor) -> torch.Tensor:
        W = Vc[..., : self.d] / self.sigma
        return torch.cat([W, Vc[..., self.d :] - W @ self.mu.unsqueeze(1)], dim=-1)

    def grad_inf_norm(self, g: torch.Tensor) -> torch.Tensor:
        """``max|grad|`` in the original coordinates (the quantity scikit-learn's ``tol`` bounds)."""
        g3 = g.view(g.shape[0], -1, self.d + 1)
        gc = g3[..., self.d :]
        gW = g3[..., : self.d] * self.sigma + gc * self.mu
        return torch.maximum(gW.abs().amax((1, 2)), gc.abs().amax((1, 2)))


class SoftmaxObjective:
    """Multinomial CE, one ``(k, d+1)`` weight matrix per problem; problem ``j`` has ``lam[j]``."""

    def __init__(self, Xa: torch.Tensor, pen: torch.Tensor, y: torch.Tensor, k: int,
                 lam: torch.Tensor) -> None:
        self.Xa, self.pen, self.y, self.k, self.lam = Xa, pen, y, k, lam  # Xa: (n, d+1), ones last
        self.n, self.v1 = Xa.shape
        self.rows = torch.arange(self.n, device=Xa.device)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = x.shape[0]
        W = x.view(m * self.k, self.v1)
        Z = (self.Xa @ W.T).view(self.n, m, self.k)
        lse = torch.logsumexp(Z, dim=2)  # (n, m)
        z_true = Z[self.rows, :, self.y]  # (n, m)
        Wp = x.view(m, self.k, self.v1) * self.pen
        lam = self.lam[idx]
        f = (lse - z_true).mean(0) + 0.5 * lam * (Wp * x.view(m, self.k, self.v1)).sum((1, 2))
        P = torch.exp(Z - lse.unsqueeze(2))
        P[self.rows, :, self.y] -= 1.0
        P /= self.n
        G = (P.view(self.n, m * self.k).T @ self.Xa).view(m, self.k, self.v1)
        G += lam.view(m, 1, 1) * Wp
        return f, G.view(m, -1)


class BinaryObjective:
    """Logistic loss, one ``(d+1,)`` vector per problem; problem ``j`` fits column ``cols[j]``."""

    def __init__(self, Xa: torch.Tensor, pen: torch.Tensor, Y: torch.Tensor, cols: torch.Tensor,
                 lam: torch.Tensor) -> None:
        self.Xa, self.pen, self.Y, self.cols, self.lam = Xa, pen, Y, cols, lam  # Y: (n, c) 0/1
        self.n, self.v1 = Xa.shape

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Z = self.Xa @ x.T  # (n, m)
        Yb = self.Y[:, self.cols[idx]]
        lam = self.lam[idx]
        Wp = x * self.pen
        f = (torch.nn.functional.softplus(Z) - Yb * Z).mean(0) + 0.5 * lam * (Wp * x).sum(1)
        G = (torch.sigmoid(Z) - Yb) / self.n
        g = G.T @ self.Xa + lam.unsqueeze(1) * Wp
        return f, g


def _two_loop(g: torch.Tensor, S: list[torch.Tensor], Y: list[torch.Tensor],
              rho: list[torch.Tensor], gamma: torch.Tensor) -> torch.Tensor:
    """``-H g`` for each problem (rows), newest pair first in ``S``/``Y``/``rho``."""
    q = g.clone()
    alphas = []
    for s, y, r in zip(S, Y, rho):
        a = (r * torch.linalg.vecdot(s, q)).unsqueeze(1)
        q.addcmul_(a, y, value=-1.0)
        alphas.append(a)
    q *= gamma.unsqueeze(1)
    for s, y, r, a in zip(reversed(S), reversed(Y), reversed(rho), reversed(alphas)):
        b = (r * torch.linalg.vecdot(y, q)).unsqueeze(1)
        q.addcmul_(a - b, s)
    return q.neg_()


def _line_search(fun: Closure, xa: torch.Tensor, fa: torch.Tensor, d: torch.Tensor,
                 gd: torch.Tensor, t: torch.Tensor, idx: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking Armijo search from steps ``t``; returns ``(t, f, g, failed)`` per problem.

    Rejected steps shrink by safeguarded quadratic interpolation (to ``[0.1, 0.5] * t``).
    """
    ft, gt = fun(torch.addcmul(xa, t.unsqueeze(1), d), idx)
    ok = torch.isfinite(ft) & (ft <= fa + ARMIJO_C1 * t * gd)
    if bool(ok.all()):  # the usual case: one evaluation, no bookkeeping
        return t, ft, gt, torch.zeros_like(ok)
    f_new, g_new, t = ft.clone(), gt.clone(), t.clone()
    pending = ~ok
    pi = pending.nonzero().squeeze(1)
    fr = ft[pi]
    for _ in range(MAX_LINE_SEARCH):
        tr = t[pi]
        denom = 2.0 * (fr - fa[pi] - gd[pi] * tr)
        t_q = torch.where(torch.isfinite(fr) & (denom > 0), -gd[pi] * tr * tr / denom, 0.5 * tr)
        t[pi] = torch.minimum(torch.maximum(t_q, 0.1 * tr), 0.5 * tr)
        fr, gr = fun(torch.addcmul(xa[pi], t[pi].unsqueeze(1), d[pi]), idx[pi])
        ok = torch.isfinite(fr) & (fr <= fa[pi] + ARMIJO_C1 * t[pi] * gd[pi])
        acc = pi[ok]
        f_new[acc], g_new[acc] = fr[ok], gr[ok]
        pending[acc] = False
        pi, fr = pi[~ok], fr[~ok]
        if pi.numel() == 0:
            break
    t = torch.where(pending, torch.zeros_like(t), t)
    f_new = torch.where(pending, fa, f_new)
    return t, f_new, g_new, pending


def lbfgs(fun: Closure, x0: torch.Tensor, *, gtol: float, max_iter: int,
          history: int = HISTORY,
          grad_norm: Callable[[torch.Tensor], torch.Tensor] | None = None) -> LBFGSResult:
    """Minimise ``m`` independent smooth problems (rows of ``x0``) with L-BFGS.

    Backtracking Armijo line search per problem. A problem stops when ``max|grad| <= gtol``
    (scipy's ``gtol``), when its relative decrease ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1)``
    drops below ``64 eps`` (scipy's ``ftol`` as scikit-learn sets it), both counted as
    converged, or when it reaches ``max_iter`` iterations or its line search fails (not converged).
    """
    m, v = x0.shape
    dev, dt = x0.device, x0.dtype
    ftol = FTOL_FACTOR * torch.finfo(dt).eps
    x = x0.clone()
    all_idx = torch.arange(m, device=dev)
    f, g = fun(x, all_idx)
    n_iter = torch.zeros(m, dtype=torch.long, device=dev)
    converged = grad_norm(g) <= gtol
    active = ~converged
    S_hist = torch.zeros(history, m, v, dtype=dt, device=dev)
    Y_hist = torch.zeros(history, m, v, dtype=dt, device=dev)
    rho_hist = torch.zeros(history, m, dtype=dt, device=dev)
    gamma = torch.ones(m, dtype=dt, device=dev)
    k = 0
    while k < max_iter and bool(active.any()):
        full = bool(active.all())
        idx = all_idx if full else active.nonzero().squeeze(1)
        xa, fa, ga = (x, f, g) if full else (x[idx], f[idx], g[idx])
        order = [(k - 1 - j) % history for j in range(min(k, history))]
        if full:
            S, Y, R = [S_hist[p] for p in order], [Y_hist[p] for p in order], [rho_hist[p] for p in order]
        else:
            S = [S_hist[p, idx] for p in order]
            Y = [Y_hist[p, idx] for p in order]
            R = [rho_hist[p, idx] for p in order]
        d = _two_loop(ga, S, Y, R, gamma[idx])
        gd = torch.linalg.vecdot(ga, d)
        bad = gd >= 0  # not a descent direction: fall back to steepest descent
        if k == 0 or bool(bad.any()):
            first = torch.clamp(1.0 / ga.norm(dim=1), max=1.0)  # scipy-like first step 1/||g||
            d = torch.where(bad.unsqueeze(1), -ga, d)
            gd = torch.linalg.vecdot(ga, d)
            t = first if k == 0 else torch.where(bad, first, torch.ones_like(fa))
        else:
            t = torch.ones_like(fa)
        t, f_new, g_new, failed = _line_search(fun, xa, fa, d, gd, t, idx)
        if bool(failed.any()):
            g_new = torch.where(failed.unsqueeze(1), ga, g_new)
        s = t.unsqueeze(1) * d
        yv = g_new - ga
        sy = torch.linalg.vecdot(s, yv)
        yy = torch.linalg.vecdot(yv, yv)
        valid = (sy > torch.finfo(dt).eps * yy) & ~failed
        one = torch.ones_like(sy)
        p = k % history
        if full:
            S_hist[p], Y_hist[p] = s, yv
        else:
            rho_hist[p].zero_()
            S_hist[p, idx], Y_hist[p, idx] = s, yv
        rho_hist[p, idx] = torch.where(valid, one / torch.where(valid, sy, one), 0.0 * one)
        gamma[idx] = torch.where(valid, sy / torch.where(valid, yy, one), gamma[idx])

        x_new = xa + s
        rel = (fa - f_new) / torch.clamp(torch.maximum(fa.abs(), f_new.abs()), min=1.0)
        conv_now = ((grad_norm(g_new) <= gtol) | (rel <= ftol)) & ~failed
        if full:
            x, f, g = x_new, f_new, g_new
        else:
            x[idx], f[idx], g[idx] = x_new, f_new, g_new
        n_iter[idx] += (~failed).long()
        converged[idx] = conv_now
        active[idx] = ~(conv_now | failed)
        k += 1
    return LBFGSResult(x=x, n_iter=n_iter, converged=converged)
