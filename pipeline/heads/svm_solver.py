"""A fast one-vs-rest linear SVM for many classes: all classes solved at once with L-BFGS.

The objective is LinearSVC's default (L2 regularisation, squared hinge loss), summed over classes:

    sum_k  0.5 * ||w_k||^2 + C * sum_i max(0, 1 - t_ik (x_i . w_k + b_k))^2,   t_ik = +1 if y_i = k else -1

It is smooth, so L-BFGS solves every class jointly with two matrix products per step - seconds for
133 classes x 512 features x 6,680 rows, where liblinear's one-class-at-a-time solver took
minutes. The intercept is not regularised. Warm starts make a sweep over C cheap.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

MAX_ITERATIONS = 500
GRADIENT_TOLERANCE = 1e-4


def fit_squared_hinge_ovr(x: np.ndarray, y: np.ndarray, num_classes: int, c: float,
                          initial: tuple[np.ndarray, np.ndarray] | None = None):
    """Return (coef (features, classes), intercept (classes,), iterations) minimising the objective."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    targets = -np.ones((n, num_classes), dtype=np.float32)
    targets[np.arange(n), y] = 1.0

    def objective(theta):
        w = theta[: d * num_classes].reshape(d, num_classes).astype(np.float32)
        b = theta[d * num_classes:].astype(np.float32)
        margins = 1.0 - targets * (x @ w + b)
        active = np.maximum(margins, 0.0)
        loss = 0.5 * float(np.sum(w.astype(np.float64) ** 2)) + c * float(np.sum(active.astype(np.float64) ** 2))
        d_scores = (-2.0 * c) * targets * active
        grad_w = w + x.T @ d_scores
        grad_b = d_scores.sum(axis=0)
        return loss, np.concatenate([grad_w.ravel(), grad_b]).astype(np.float64)

    if initial is None:
        theta0 = np.zeros(d * num_classes + num_classes)
    else:
        theta0 = np.concatenate([initial[0].ravel(), initial[1]]).astype(np.float64)
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                      options={"maxiter": MAX_ITERATIONS, "gtol": GRADIENT_TOLERANCE})
    coef = result.x[: d * num_classes].reshape(d, num_classes).astype(np.float32)
    intercept = result.x[d * num_classes:].astype(np.float32)
    return coef, intercept, int(result.nit)
