"""A lean L-BFGS minimiser for smooth, unconstrained objectives with many parameters.

scipy's L-BFGS-B carries bound-constraint machinery that costs more per iteration at 68,000
parameters (133 classes x 513 weights) than the objective's two matrix products. Without bounds,
the classic two-loop recursion needs only a few dot products per iteration. Re-measured against
SciPy 1.17.1 (benchmarks/lbfgs_vs_scipy.py: the SVM objective on synthetic 6,680 x 512 features of
133 classes, C = 1e-4, 1e-3, 1e-2 from zero, one BLAS thread, same tolerances and history, shared
2-core CPU): 11.4 s here against 50.8 s for `scipy.optimize.minimize(method="L-BFGS-B")`, 4.5 times
faster (3.9 times on the first C, run alone), for the same iterations (72 vs 73) and objectives
within 0.03 % of each other. The line search backtracks from the full quasi-Newton step until the Armijo
sufficient-decrease condition holds; pairs that violate the curvature condition are not stored,
which keeps the inverse-Hessian estimate positive definite. Stopping rules match L-BFGS-B's:
largest gradient entry at most `gtol`, or a relative decrease of the objective at most `ftol`.
A line search that finds no decrease even for a step of 2**-30 of the proposed one means the
objective's rounding noise has swallowed what is left to gain: the minimiser stops there
("stalled"), at the precision the objective's arithmetic allows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Correction pairs kept (L-BFGS-B's default).
HISTORY = 10
#: L-BFGS-B's default relative-decrease tolerance (factr 1e7 times machine epsilon).
DEFAULT_FTOL = 1e7 * np.finfo(float).eps
ARMIJO = 1e-4
BACKTRACK = 0.5
MAX_BACKTRACKS = 30
_CURVATURE_FLOOR = 1e-10


@dataclass(frozen=True)
class LbfgsResult:
    x: np.ndarray
    fun: float
    iterations: int
    evaluations: int
    stop: str  # "gradient", "decrease", "stalled" (see the module docstring) or "iterations"

    @property
    def converged(self) -> bool:
        """True unless the iteration budget ran out first."""
        return self.stop != "iterations"


def minimize_lbfgs(fun_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
                   max_iterations: int, gtol: float, ftol: float = DEFAULT_FTOL) -> LbfgsResult:
    """Minimise `fun_and_grad(x) -> (value, gradient)` from `x0` (float64 vectors)."""
    x = np.asarray(x0, dtype=np.float64).copy()
    value, grad = fun_and_grad(x)
    evaluations = 1
    pairs: deque = deque(maxlen=HISTORY)
    for iteration in range(1, max_iterations + 1):
        if np.max(np.abs(grad)) <= gtol:
            return LbfgsResult(x, value, iteration - 1, evaluations, "gradient")
        direction = -_two_loop(grad, pairs)
        slope = float(direction @ grad)
        if slope >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            pairs.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0 if pairs else min(1.0, 1.0 / float(np.linalg.norm(grad)))  # L-BFGS-B's first step
        for _ in range(MAX_BACKTRACKS):
            candidate = x + step * direction
            new_value, new_grad = fun_and_grad(candidate)
            evaluations += 1
            if new_value <= value + ARMIJO * step * slope:
                break
            step *= BACKTRACK
        else:
            return LbfgsResult(x, value, iteration, evaluations, "stalled")
        s, y = candidate - x, new_grad - grad
        if float(s @ y) > _CURVATURE_FLOOR * float(y @ y):
            pairs.append((s, y, 1.0 / float(s @ y)))
        decrease = (value - new_value) / max(abs(value), abs(new_value), 1.0)
        x, value, grad = candidate, new_value, new_grad
        if decrease <= ftol:
            return LbfgsResult(x, value, iteration, evaluations, "decrease")
    return LbfgsResult(x, value, max_iterations, evaluations, "iterations")


def _two_loop(grad: np.ndarray, pairs: deque) -> np.ndarray:
    """The L-BFGS inverse-Hessian estimate applied to `grad` (identity scaled by the newest pair)."""
    q = grad.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * float(s @ q)
        q -= alpha * y
        alphas.append(alpha)
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * float(y @ q)
        q += (alpha - beta) * s
    return q
