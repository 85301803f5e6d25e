"""Our fluence optimiser on dose-influence matrices (docs/method.md §1–2).

Written here because pyRadPlan's own ``fluence_optimization`` has no TCP objective, no
equality/inequality constraints on voxel doses and is slow on large matrices (benchmark
``benchmarks/planning_speed.py``).  Method: L-BFGS-B (scipy) on non-negative spot weights with
analytic gradients; constraints by an augmented Lagrangian (Nocedal & Wright, alg. 17.4) —
the GTV mean-dose equality and the voxel bounds [lo, hi]·D_P as vector inequalities.  The spot
weights are preconditioned by the norms of their dose columns (Jacobi scaling of the least-squares
Hessian): L-BFGS-B works on x_j = c_j w_j (``benchmarks/planning_speed.py``: 7 instead of 24
evaluations to pyRadPlan's objective on carbon).

All dose objectives act on the *total* RBE-weighted dose of the treatment course,
``D = D_fixed + n_fx · d(w)`` (Gy(RBE)), where ``d(w)`` is the per-fraction dose of the phase
being optimised and ``D_fixed`` the dose of phases already planned (sequential boost).  Dose
terms are normalised by a reference dose so their weights are dimensionless.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from threadpoolctl import ThreadpoolController

from .biology import RbeModel
from .influence import column_norms

log = logging.getLogger(__name__)


@dataclass
class DoseTerm:
    """A penalty on the total dose of some rows.

    kind: ``"deviation"`` mean((D−ref)²), ``"overdose"`` mean(max(D−ref, 0)²),
    ``"underdose"`` mean(max(ref−D, 0)²), all in units of ``scale`` (Gy(RBE)) squared.
    """

    rows: np.ndarray
    kind: str
    ref: float | np.ndarray
    weight: float
    scale: float
    name: str = ""

    def __call__(self, D: np.ndarray) -> tuple[float, np.ndarray]:
        x = (D[self.rows] - self.ref) / self.scale
        if self.kind == "overdose":
            x = np.maximum(x, 0.0)
        elif self.kind == "underdose":
            x = np.minimum(x, 0.0)
        elif self.kind != "deviation":
            raise ValueError(f"unknown dose term {self.kind!r}")
        n = max(self.rows.size, 1)
        g = np.zeros_like(D)
        g[self.rows] += self.weight * 2.0 * x / (n * self.scale)  # rows are unique
        return self.weight * float(np.sum(x * x)) / n, g


@dataclass
class TcpTerm:
    """weight · ln S_ROI, S_ROI = Σ_i (N_i/ΣN) e^{−E_i}, E_i = αD_i + βD_i²/n (float64, §2)."""

    rows: np.ndarray
    clonogens: np.ndarray
    alpha: float
    beta: float
    n_fractions: int
    weight: float = 1.0
    name: str = "tcp"

    def __post_init__(self):
        keep = np.asarray(self.clonogens, float) > 0
        self.rows = np.asarray(self.rows)[keep]
        self.log_frac = np.log(np.asarray(self.clonogens, float)[keep]) - np.log(np.sum(self.clonogens[keep]))

    def __call__(self, D: np.ndarray) -> tuple[float, np.ndarray]:
        d = D[self.rows]
        z = self.log_frac - self.alpha * d - self.beta * d * d / self.n_fractions
        ls = float(logsumexp(z))
        p = np.exp(z - ls)
        g = np.zeros_like(D)
        g[self.rows] -= self.weight * p * (self.alpha + 2.0 * self.beta * d / self.n_fractions)
        return self.weight * ls, g


@dataclass
class LetTerm:
    """weight · mean(max(L_min − LETd_i, 0)²)/L_min² on rows; LETd of the total physical dose.

    LETd_i = (F_i + n·(LD w)_i) / (G_i + n·(P w)_i) with F, G the fixed phases' LET·dose and dose.
    """

    let_dose: Any  # scipy.sparse, rows already restricted
    physical: Any
    fixed_let_dose: np.ndarray
    fixed_dose: np.ndarray
    n_fx: int
    l_min: float
    weight: float
    name: str = "let"

    def value_grad_w(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        w32 = np.asarray(w, np.float32)
        num = self.fixed_let_dose + self.n_fx * (self.let_dose @ w32).astype(np.float64)
        den = self.fixed_dose + self.n_fx * (self.physical @ w32).astype(np.float64)
        den = np.maximum(den, 1e-12)
        letd = num / den
        short = np.maximum(self.l_min - letd, 0.0) / self.l_min
        n = max(letd.size, 1)
        val = self.weight * float(np.sum(short * short)) / n
        dl = -self.weight * 2.0 * short / (n * self.l_min)  # ∂val/∂LETd
        gnum = dl / den
        gden = -dl * num / den**2
        grad = self.n_fx * (
            (self.let_dose.T @ gnum.astype(np.float32)).astype(np.float64)
            + (self.physical.T @ gden.astype(np.float32)).astype(np.float64)
        )
        return val, grad


@dataclass
class Constraints:
    """GTV voxel bounds and mean-dose equality on total dose (Gy(RBE)), by augmented Lagrangian."""

    rows: np.ndarray
    reference: float  # D_P
    lower: float | None = None  # fractions of D_P
    upper: float | None = None
    mean: float | None = None
    tol_mean: float = 1e-4  # |mean/D_P − target| (0.007 Gy at 73.6 Gy)
    tol_bound: float = 5e-3  # max bound violation, fraction of D_P

    def violations(self, D) -> dict[str, float]:
        """|mean residual| and the largest bound violation (fractions of D_P, 0 when satisfied)."""
        r = self.residuals(D)
        bound = max([float(np.max(r[s], initial=0.0)) for s in ("upper", "lower") if s in r] or [0.0])
        return {"mean": abs(r.get("mean", 0.0)), "bound": bound}

    def residuals(self, D):
        x = D[self.rows] / self.reference
        out = {}
        if self.mean is not None:
            out["mean"] = float(np.mean(x) - self.mean)
        if self.upper is not None:
            out["upper"] = x - self.upper
        if self.lower is not None:
            out["lower"] = self.lower - x
        return out


@dataclass
class OptResult:
    weights: np.ndarray
    dose: np.ndarray  # total dose on the influence rows, Gy(RBE)
    objective: float
    terms: dict
    iterations: int
    evaluations: int
    seconds: float
    constraint_violation: dict = field(default_factory=dict)


class PhaseProblem:
    """Optimise one phase's spot weights for total-dose objectives.

    Parameters
    ----------
    model : RbeModel
        Per-fraction RBE-weighted dose of this phase's spots, on the influence rows.
    n_fx : int
        Fractions of this phase.
    fixed_dose : ndarray
        Total dose of the other phases on the same rows (Gy(RBE)); zeros for the first phase.
    terms : list of DoseTerm / TcpTerm
    let_term : LetTerm or None
        Its weights are those of ``cols``.
    constraints : Constraints or None
    cols : ndarray of int or None
        The spots this phase may use (default all); the others stay at 0.  :meth:`solve` takes and
        returns weights of all spots.
    """

    def __init__(
        self,
        model: RbeModel,
        *,
        n_fx: int,
        fixed_dose: np.ndarray,
        terms,
        let_term=None,
        constraints: Constraints | None = None,
        cols: np.ndarray | None = None,
    ):
        self.model, self.n_fx, self.cols = model, int(n_fx), cols
        self.fixed = np.asarray(fixed_dose, np.float64)
        self.terms, self.let_term, self.cons = list(terms), let_term, constraints
        self.n_eval = 0
        # Only the rows some term or constraint reads and the allowed spots are computed while
        # optimising (the matrix products dominate the cost), in one restricted copy of the
        # matrices; the other rows of D keep the fixed dose until the end.
        reads = [np.asarray(t.rows) for t in self.terms] + ([np.asarray(constraints.rows)] if constraints else [])
        used = np.unique(np.concatenate(reads)) if reads else np.arange(0)
        # A copy pays only where it drops entries (an influence computed on the targets alone has none to drop).
        restrict = 0 < used.size and int(np.diff(model.P.indptr)[used].sum()) < 0.9 * model.P.nnz
        self.used = used if restrict else np.arange(self.fixed.size)
        self.sub = model.subset(rows=used if restrict else None, cols=cols) if restrict or cols is not None else model
        self.scale = spot_scale(self.sub.P)

    def _all_spots(self, w):
        if self.cols is None:
            return w
        full = np.zeros(self.model.P.shape[1])
        full[self.cols] = w
        return full

    def total_dose(self, w):
        """Total dose on every influence row (Gy(RBE)) for weights of the allowed spots."""
        d, ctx = self.model.dose(self._all_spots(w))
        return self.fixed + self.n_fx * d, ctx

    def _used_dose(self, w):
        """Total dose with only the used rows computed (the others hold the fixed dose)."""
        d, ctx = self.sub.dose(w)
        D = self.fixed.copy()
        D[self.used] += self.n_fx * d
        return D, ctx

    def _objective(self, w, lam, mu):
        self.n_eval += 1
        D, ctx = self._used_dose(w)
        f, g = self._terms_on(D)
        if self.cons is not None:
            c = self.cons
            x = D[c.rows] / c.reference
            gx = np.zeros(c.rows.size)
            if c.mean is not None:
                r = float(np.mean(x) - c.mean)
                f += lam["mean"] * r + 0.5 * mu * r * r
                gx += (lam["mean"] + mu * r) / c.rows.size
            for side, sign, bound in (("upper", 1.0, c.upper), ("lower", -1.0, c.lower)):
                if bound is None:
                    continue
                r = sign * (x - bound)
                t = np.maximum(lam[side] + mu * r, 0.0)
                f += float(np.sum(t * t - lam[side] ** 2)) / (2.0 * mu)
                gx += sign * t
            g[c.rows] += gx / c.reference
        grad = self.n_fx * self.sub.vjp(g[self.used], ctx)
        if self.let_term is not None:
            v, gw = self.let_term.value_grad_w(w)
            f += v
            grad += gw
        return f, grad

    def _scaled(self, x, lam, mu):
        """:meth:`_objective` of the preconditioned variables x = scale · w."""
        f, g = self._objective(x / self.scale, lam, mu)
        return f, g / self.scale

    def _terms_on(self, D):
        """Objective terms (no constraints) on a total dose: value and gradient w.r.t. D."""
        f, g = 0.0, np.zeros_like(D)
        for t in self.terms:
            v, gt = t(D)
            f += v
            g += gt
        return f, g

    def mean_multiplier(self, w) -> float:
        """Least-squares estimate of the mean-dose constraint's Lagrange multiplier at ``w``
        (weights of the allowed spots): λ = −⟨∇f, ∇c⟩ / ⟨∇c, ∇c⟩ over the spots with non-zero
        weight (stationarity ∇f + λ∇c = 0 of the Lagrangian, c = mean(D_GTV)/D_P − m).
        """
        D, ctx = self._used_dose(w)
        _, g = self._terms_on(D)
        gf = self.n_fx * self.sub.vjp(g[self.used], ctx)
        if self.let_term is not None:
            gf = gf + self.let_term.value_grad_w(w)[1]
        gd = np.zeros_like(D)
        assert self.cons is not None  # only called with constraints
        gd[self.cons.rows] = 1.0 / (self.cons.rows.size * self.cons.reference)
        gc = self.n_fx * self.sub.vjp(gd[self.used], ctx)
        free = np.asarray(w) > 0
        den = float(gc[free] @ gc[free])
        return -float(gf[free] @ gc[free]) / den if den > 0 else 0.0

    def solve(
        self, w0, *, max_iter: int = 300, outer: int = 8, mu0: float = 10.0, ftol: float = 1e-10, gtol: float = 1e-8
    ) -> OptResult:
        """Minimise from ``w0`` (weights of all spots): L-BFGS-B rounds of at most ``max_iter``
        iterations, at most ``outer`` augmented-Lagrangian rounds (μ from ``mu0``, ×4 per round);
        ``ftol`` and ``gtol`` are L-BFGS-B's (SciPy's meaning: ftol relative to max(|f|, 1)).

        The mean-dose multiplier starts at its least-squares estimate (:meth:`mean_multiplier`),
        not 0: from 0 the first rounds barely move the mean (the TCP term's gradient is far larger
        than μ·residual) and 2–3 rounds are spent growing λ.
        """
        t0 = time.perf_counter()
        w = np.asarray(w0, np.float64)
        w = np.maximum(w if self.cols is None else w[self.cols], 0.0)
        lam: dict = {}
        if self.cons is not None:
            n = self.cons.rows.size
            lam = {"mean": 0.0, "upper": np.zeros(n), "lower": np.zeros(n)}
        mu = mu0
        if self.cons is not None and self.cons.mean is not None:
            lam["mean"] = self.mean_multiplier(w)
        iters = 0
        # OpenBLAS threads spin after L-BFGS-B's BLAS calls and take the cores the sparse products' threads
        # need (measured on 2 cores: 30 instead of 19 ms per evaluation); L-BFGS-B's vectors need no threads.
        with _blas_controller().limit(limits=1, user_api="blas"):
            for k in range(outer if self.cons is not None else 1):
                res = minimize(self._scaled, w * self.scale, args=(lam, mu), jac=True, method="L-BFGS-B",
                               bounds=[(0.0, None)] * w.size,
                               options={"maxiter": max_iter, "maxcor": 20, "ftol": ftol, "gtol": gtol})  # fmt: skip
                w, iters = res.x / self.scale, iters + int(res.nit)
                if self.cons is None or self._update_multipliers(w, lam, mu, round_=k + 1):
                    break
                mu *= 4.0
        secs = time.perf_counter() - t0
        log.info("L-BFGS-B: %d iterations, %d evaluations in %.1f s on %d rows × %d spots (%d non-zeros)", iters,
                 self.n_eval, secs, *self.sub.P.shape, self.sub.P.nnz)  # fmt: skip
        return self._result(w, iterations=iters, seconds=secs)

    def _update_multipliers(self, w, lam: dict, mu: float, *, round_: int) -> bool:
        """One augmented-Lagrangian update of ``lam`` (in place); True when the constraints hold."""
        assert self.cons is not None
        D, _ = self._used_dose(w)
        r = self.cons.residuals(D)
        v = self.cons.violations(D)
        log.info("augmented Lagrangian round %d: mean residual %.2e, max bound violation %.2e, mu %.0f", round_,
                 v["mean"], v["bound"], mu)  # fmt: skip
        if v["mean"] <= self.cons.tol_mean and v["bound"] <= self.cons.tol_bound:
            return True
        if "mean" in r:
            lam["mean"] += mu * r["mean"]
        for s in ("upper", "lower"):
            if s in r:
                lam[s] = np.maximum(lam[s] + mu * r[s], 0.0)
        return False

    def _result(self, w, *, iterations: int, seconds: float) -> OptResult:
        D, _ = self.total_dose(w)
        terms = {}
        for t in self.terms:
            terms[t.name or t.kind] = t(D)[0]
        if self.let_term is not None:
            terms["let"] = self.let_term.value_grad_w(w)[0]
        viol = self.cons.violations(D) if self.cons is not None else {}
        return OptResult(weights=self._all_spots(w), dose=D, objective=float(sum(terms.values())), terms=terms,
                         iterations=iterations, evaluations=self.n_eval, seconds=seconds,
                         constraint_violation=viol)  # fmt: skip


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The loaded BLAS libraries as threadpoolctl sees them, made once.

    ``threadpool_limits`` scans the process's libraries on every call: 10 ms with pyRadPlan loaded,
    several iterations' worth on a small problem.
    """
    return ThreadpoolController()


def spot_scale(physical) -> np.ndarray:
    """Preconditioner of the spot weights: each spot's dose-column norm over the median norm.

    Parameters
    ----------
    physical : scipy.sparse.csr_array, (n_rows, n_spots)
        Physical dose per unit weight on the rows the objective reads, Gy.

    Returns
    -------
    ndarray, (n_spots,)
        c_j = ‖P[:, j]‖ / median_k ‖P[:, k]‖ (dimensionless); 1 for a spot with no dose on the rows.
    """
    c = column_norms(physical)
    positive = c[c > 0]
    if positive.size == 0:
        return np.ones_like(c)
    return np.where(c > 0, c / np.median(positive), 1.0)


def scale_to_mean(model: RbeModel, w: np.ndarray, rows: np.ndarray, *, dose_per_fraction: float) -> np.ndarray:
    """Scale weights so the mean per-fraction RBE dose over ``rows`` is ``dose_per_fraction``.

    For a variable RBE the dose is not linear in w; three secant steps suffice from any start.

    Parameters
    ----------
    model : RbeModel
        Per-fraction RBE dose of spot weights.
    w : ndarray, (n_spots,)
        Weights to scale.
    rows : ndarray of int
        Influence rows whose mean is set.
    dose_per_fraction : float
        Gy(RBE).

    Returns
    -------
    ndarray, (n_spots,)
        The scaled weights (a copy).
    """
    w = np.asarray(w, np.float64).copy()
    for _ in range(4):
        d, _ = model.dose(w)
        m = float(np.mean(d[rows]))
        if m <= 0:
            raise ValueError("the spots deposit no dose in the target")
        w *= dose_per_fraction / m
    return w
