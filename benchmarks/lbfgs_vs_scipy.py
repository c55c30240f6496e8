"""The SVM head's L-BFGS (`pipeline.heads.kinds.lbfgs`) against SciPy's L-BFGS-B on the same objective.

    python benchmarks/lbfgs_vs_scipy.py [--rows 6680] [--features 512] [--classes 133]

Synthetic Gaussian-blob features of the Dog-breeds shape (6,680 training rows, 512 channels, 133
classes), standardised as the head does. For each C, `fit_squared_hinge_ovr` is solved from zero
weights with one BLAS thread (as the heads run), once with the lean minimiser and once with
`scipy.optimize.minimize(method="L-BFGS-B")` given the same gradient tolerance, relative-decrease
tolerance and history. Prints seconds, iterations and the objective reached, and the ratio.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from pipeline.heads.kinds import lbfgs, svm_solver
from pipeline.heads.kinds.base import Standardizer, single_threaded_blas

C_VALUES = (1e-4, 1e-3, 1e-2)


def scipy_lbfgs(fun_and_grad, x0, max_iterations, gtol, ftol=lbfgs.DEFAULT_FTOL) -> lbfgs.LbfgsResult:
    """SciPy's L-BFGS-B with the lean minimiser's stopping rules, as an `LbfgsResult`."""
    from scipy.optimize import minimize

    result = minimize(fun_and_grad, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iterations, "gtol": gtol, "ftol": ftol, "maxcor": lbfgs.HISTORY})
    return lbfgs.LbfgsResult(result.x, float(result.fun), int(result.nit), int(result.nfev),
                             "gradient" if result.success else "iterations")


def _features(rows: int, features: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=rows)
    x = rng.normal(size=(classes, features))[y] * 0.5 + rng.normal(size=(rows, features))
    return Standardizer.fit(x).transform(x.astype(np.float32)), y


def _timed(minimiser, x, y, classes, c):
    used = []

    def recording(*args, **kwargs):
        used.append(minimiser(*args, **kwargs))
        return used[-1]

    svm_solver.minimize_lbfgs = recording
    started = time.perf_counter()
    svm_solver.fit_squared_hinge_ovr(x, y, classes, c)
    return time.perf_counter() - started, used[-1]


@click.command()
@click.option("--rows", default=6680)
@click.option("--features", default=512)
@click.option("--classes", default=133)
def main(rows: int, features: int, classes: int):
    x, y = _features(rows, features, classes)
    lean = lbfgs.minimize_lbfgs
    totals = {"lean": 0.0, "scipy": 0.0}
    with single_threaded_blas():
        for c in C_VALUES:
            for name, minimiser in (("lean", lean), ("scipy", scipy_lbfgs)):
                seconds, result = _timed(minimiser, x, y, classes, c)
                totals[name] += seconds
                print(f"C={c:g} {name:5s}: {seconds:6.2f} s, {result.iterations} iterations, "
                      f"{result.evaluations} evaluations, objective/C {result.fun:.6g}", flush=True)
    svm_solver.minimize_lbfgs = lean
    print(f"total lean {totals['lean']:.1f} s, scipy {totals['scipy']:.1f} s: "
          f"scipy / lean = {totals['scipy'] / totals['lean']:.2f}")


if __name__ == "__main__":
    main()
