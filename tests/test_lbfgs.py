"""The lean L-BFGS used by the SVM head finds the same minima as scipy's L-BFGS-B."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from pipeline.heads.kinds.lbfgs import minimize_lbfgs
from pipeline.heads.kinds.svm_solver import fit_squared_hinge_ovr


def test_ill_conditioned_quadratic_is_solved():
    rng = np.random.default_rng(0)
    scales, target = rng.uniform(0.01, 100.0, 200), rng.standard_normal(200)

    def quadratic(x):
        residual = x - target
        return 0.5 * float(scales @ residual ** 2), scales * residual

    result = minimize_lbfgs(quadratic, np.zeros(200), max_iterations=1000, gtol=1e-8, ftol=0.0)
    assert result.converged and result.stop == "gradient"
    np.testing.assert_allclose(result.x, target, atol=1e-6)

    budget = minimize_lbfgs(quadratic, np.zeros(200), max_iterations=3, gtol=1e-8, ftol=0.0)
    assert budget.stop == "iterations" and not budget.converged and budget.iterations == 3


def test_noise_in_the_objective_stops_the_search_as_stalled_not_as_unconverged():
    scales = np.random.default_rng(0).uniform(0.01, 100.0, 50)

    def noisy(x):  # an ill-conditioned quadratic plus up to 1e-3 of deterministic noise
        return float(0.5 * scales @ (x - 1) ** 2 + 1e-3 * np.sin(1e6 * x.sum()) ** 2), scales * (x - 1)

    result = minimize_lbfgs(noisy, np.zeros(50), max_iterations=1000, gtol=1e-12, ftol=0.0)
    assert result.stop == "stalled" and result.converged and result.iterations < 1000
    assert result.fun <= 2e-3, "it stalls only where the noise swamps what is left to gain"


@pytest.mark.parametrize("c", [1e-6, 1e-3, 0.1, 10.0])
def test_svm_objective_matches_scipy_lbfgsb(c):
    """Every C of the search grid is solved to the minimum, the tiny ones included."""
    rng = np.random.default_rng(1)
    classes, features = 5, 20
    centres = rng.standard_normal((classes, features))
    y = rng.integers(classes, size=300)
    x = (centres[y] + rng.standard_normal((300, features))).astype(np.float32)
    coef, intercept, _ = fit_squared_hinge_ovr(x, y, classes, c)

    targets = np.where(np.arange(classes)[None, :] == y[:, None], 1.0, -1.0)

    def objective(theta):
        w, b = theta[:-classes].reshape(features, classes), theta[-classes:]
        active = np.maximum(1.0 - targets * (x @ w + b), 0.0)
        d_scores = -2.0 * c * targets * active
        return (0.5 * np.sum(w ** 2) + c * np.sum(active ** 2),
                np.concatenate([(w + x.T @ d_scores).ravel(), d_scores.sum(0)]))

    reference = minimize(objective, np.zeros(features * classes + classes), jac=True, method="L-BFGS-B",
                         options={"maxiter": 5000, "gtol": 1e-12 * c, "ftol": 1e-15})
    ours = objective(np.concatenate([coef.ravel(), intercept]).astype(np.float64))[0]
    assert abs(ours - reference.fun) <= 1e-4 * reference.fun
