"""Parity of the torch solver with converged scikit-learn on real pretrained CNN features.

Synthetic features understate how ill-conditioned pooled CNN features are (and scikit-learn's
cost, and ours, depend on it). These are the linear bench's shape (a) features, EfficientNet-Lite0
over offline images; the test runs where they are cached (``python bench/real_features.py``,
with the ``bench`` extra) and skips elsewhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ssl_lib.evaluate.logreg import C_GRID, fit, fit_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

_SPEC = importlib.util.spec_from_file_location(
    "real_features", Path(__file__).resolve().parents[1] / "bench" / "real_features.py")
real_features = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(real_features)


@pytest.fixture(scope="module")
def real():
    if not real_features.cache_path().exists():
        pytest.skip("real CNN features not cached: run `python bench/real_features.py` "
                    "(needs the bench extra: pip install -e '.[bench]')")
    Xtr, ytr, Xte, yte = real_features.load()
    # a subsample keeps converged scikit-learn to seconds
    return Xtr[:1500], ytr[:1500], Xtr[1500:2000], ytr[1500:2000], Xte[:1000], yte[:1000]


def _protocol(data, solver):
    """(selected index, test accuracy %, val correct counts per C, the path)."""
    Xtr, ytr, Xva, yva, Xte, yte = data
    path = fit_path(Xtr, ytr, C_GRID, solver=solver, num_classes=10)
    val = np.array([int((m.predict(Xva) == yva).sum()) for m in path])
    best = int(np.argmax(val))
    refit = fit(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]), C_GRID[best],
                solver=solver, num_classes=10, init=path[best])
    return best, 100 * float((refit.predict(Xte) == yte).mean()), val, path


def _train_errors(data, path) -> np.ndarray:
    Xtr, ytr = data[:2]
    return np.array([int((m.predict(Xtr) != ytr).sum()) for m in path])


def test_selection_and_test_score_match_sklearn_on_real_features(real):
    i_t, acc_t, val_t, path_t = _protocol(real, "torch")
    i_s, acc_s, val_s, path_s = _protocol(real, "sklearn")
    assert all(m.converged for m in path_t)
    assert abs(acc_t - acc_s) <= 0.5, (acc_t, acc_s)
    # Where the training data are not separated the validation curves are the same, sample for
    # sample. Above C ~ 0.05 these 1,280-d features separate the 1,500 training images, the loss
    # is flat along the separating directions, and the gradient test admits solutions a
    # validation sample or two apart depending on how far a solver walks (converged
    # scikit-learn walks further at C >= 3e4); the first-best rule can then jump across the
    # whole plateau. So the grid-step distance is not asserted on these features; the choice
    # must be near-optimal on the reference's own curve (within one validation sample).
    well_posed = _train_errors(real, path_s) > 0
    assert well_posed.sum() >= 10
    np.testing.assert_allclose(val_t[well_posed], val_s[well_posed], atol=1)
    assert val_s[i_t] >= val_s.max() - 1, (C_GRID[i_t], val_s[i_t], val_s.max())
