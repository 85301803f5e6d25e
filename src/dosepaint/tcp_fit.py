"""Fitting the Poisson TCP model to local-control outcomes (docs/method.md §2).

Per patient p, with cells per voxel m_i = ρ_i v_i (ρ in cells/mm³, v in mm³) in the GTV and the total
RBE-weighted dose D_i (Gy(RBE)) delivered in n fractions, the model with θ = (α, f_c) and α/β fixed is

    TCP_p(θ) = exp(−f_c Σ_i m_i e^{−α B_i}),   B_i = D_i (1 + D_i / (n · α/β))   (Gy),

so that ln(−ln TCP_p) = ln f_c + L_p(α) with L_p(α) = logsumexp_i(ln m_i − α B_i): a D50 that moves
with ln N. Everything is computed in the log domain, float64. α is in Gy⁻¹, f_c is dimensionless and
fitted as log10 f_c.

Two estimators: bounded least squares of TCP_p(θ) against the outcome y_p (1 = local control; the
study's choice; scipy ``least_squares``, trf) and the Bernoulli maximum likelihood (scipy
``minimize``, L-BFGS-B); both with analytic derivatives. Percentile bootstrap over patients for CIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, least_squares, minimize
from scipy.stats import mannwhitneyu

ESTIMATORS = ("least_squares", "maximum_likelihood")


@dataclass(frozen=True)
class PatientDose:
    """One patient's GTV voxels: ``log_cells`` = ln(ρ_i v_i) and ``bed_gy`` = B_i (both 1-D, same length)."""

    log_cells: np.ndarray
    bed_gy: np.ndarray

    @classmethod
    def from_arrays(cls, cells, dose, *, alpha_beta: float, n_fractions: int, bin_gy: float = 0.05) -> PatientDose:
        """From cells per voxel ρ_i v_i (any shape; voxels ≤ 0 or non-finite are skipped) and total dose
        D_i (Gy(RBE), same shape) in ``n_fractions`` fractions with the fixed ``alpha_beta`` (Gy).

        Voxels are pooled into bins of B of width ``bin_gy`` (cells summed, B cell-weighted), which
        keeps fits over many patients fast: the error in Σ m e^{−αB} is second order, below
        (α·bin_gy)²/24 relative (< 1e-4 for α ≤ 1 Gy⁻¹ at 0.05 Gy). ``bin_gy = 0`` keeps every voxel.
        """
        m = np.asarray(cells, np.float64).ravel()
        d = np.asarray(dose, np.float64).ravel()
        if m.shape != d.shape:
            raise ValueError(f"cells {m.shape} and dose {d.shape} differ in size")
        keep = np.isfinite(m) & (m > 0) & np.isfinite(d)
        if not np.any(keep):
            raise ValueError("no voxel with cells and a dose")
        m, d = m[keep], d[keep]
        b = d * (1.0 + d / (n_fractions * alpha_beta))
        if bin_gy > 0:
            _, k = np.unique(np.floor(b / bin_gy), return_inverse=True)
            w = np.bincount(k, weights=m)
            b = np.bincount(k, weights=m * b) / w
            m = w  # type: ignore[assignment]
        return cls(np.log(m), b)


class _Stack:
    """Several patients' bins in one array, so that L_p(α) of all patients is a few vector operations
    (segment max and sums by ``np.*.reduceat``; scipy's logsumexp has no segmented form).
    """

    def __init__(self, patients):
        self.lc = np.concatenate([p.log_cells for p in patients])
        self.b = np.concatenate([p.bed_gy for p in patients])
        sizes = np.array([p.log_cells.size for p in patients])
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.seg = np.repeat(np.arange(sizes.size), sizes)

    def log_survivors(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        z = self.lc - alpha * self.b
        zmax = np.maximum.reduceat(z, self.starts)
        w = np.exp(z - zmax[self.seg])
        tot = np.add.reduceat(w, self.starts)
        return zmax + np.log(tot), -np.add.reduceat(w * self.b, self.starts) / tot


def _stack(patients) -> _Stack:
    return patients if isinstance(patients, _Stack) else _Stack(patients)


def log_neg_log_tcp(patients, *, alpha: float, log10_fc: float) -> tuple[np.ndarray, np.ndarray]:
    """u_p = ln(−ln TCP_p) per patient and its Jacobian with respect to θ = (α, log10 f_c) (docs/method.md §2).

    With TCP_p = exp(−Σ_i f_c m_i e^{−α B_i}): u_p = ln f_c + logsumexp_i(ln m_i − α B_i).

    Parameters
    ----------
    patients : sequence of PatientDose, or their stacked form
        One per patient.
    alpha : float
        Gy⁻¹.
    log10_fc : float
        log10 of the clonogenic fraction.

    Returns
    -------
    u : ndarray, shape (n_patients,)
        ln(−ln TCP_p).
    jac : ndarray, shape (n_patients, 2)
        ∂u/∂α (Gy) and ∂u/∂log10 f_c (= ln 10).
    """
    lg, dlg = _stack(patients).log_survivors(alpha)
    u = lg + log10_fc * np.log(10.0)
    jac = np.column_stack([dlg, np.full(lg.size, np.log(10.0))])
    return u, jac


def predict(patients, *, alpha: float, log10_fc: float) -> np.ndarray:
    """TCP_p(θ) per patient (docs/method.md §2).

    Parameters
    ----------
    patients : sequence of PatientDose, or their stacked form
        One per patient.
    alpha : float
        Gy⁻¹.
    log10_fc : float
        log10 of the clonogenic fraction.

    Returns
    -------
    ndarray, shape (n_patients,)
        TCP in [0, 1].
    """
    u, _ = log_neg_log_tcp(patients, alpha=alpha, log10_fc=log10_fc)
    return np.exp(-np.exp(u))


def bernoulli_nll(patients, outcome, *, alpha: float, log10_fc: float) -> tuple[float, np.ndarray]:
    """Negative Bernoulli log-likelihood of local control and its gradient (docs/method.md §2).

    −Σ_p [y_p ln TCP_p + (1 − y_p) ln(1 − TCP_p)], evaluated in the log domain.

    Parameters
    ----------
    patients : sequence of PatientDose, or their stacked form
        One per patient.
    outcome : array_like, shape (n_patients,)
        y_p in [0, 1] (1 = local control).
    alpha : float
        Gy⁻¹.
    log10_fc : float
        log10 of the clonogenic fraction.

    Returns
    -------
    nll : float
        The negative log-likelihood.
    grad : ndarray, shape (2,)
        Its gradient with respect to (α, log10 f_c).
    """
    y = np.asarray(outcome, np.float64)
    u, jac = log_neg_log_tcp(patients, alpha=alpha, log10_fc=log10_fc)
    s = np.exp(u)
    # ln TCP = −s and ln(1 − TCP) = ln(−expm1(−s)), stable for any s; their derivatives in u:
    # d ln TCP/du = −s, d ln(1−TCP)/du = s·TCP/(1−TCP), written to stay finite for any s
    ltcp, lntcp = -s, np.log(-np.expm1(-s))
    dl1 = -s
    dl0 = s * np.exp(-s) / -np.expm1(-s)
    nll = -float(np.sum(y * ltcp + (1.0 - y) * lntcp))
    grad = -((y * dl1 + (1.0 - y) * dl0)[:, None] * jac).sum(axis=0)
    return nll, grad


def _starts(stack: _Stack, outcome, *, alpha_bounds, log10_fc_bounds, n_grid: int = 25):
    """A start on each of ``n_grid`` α values: the log10 f_c whose mean predicted TCP equals the
    observed control rate (clipped to the bounds).
    """
    rate = float(np.clip(np.mean(outcome), 0.02, 0.98))
    lo, hi = log10_fc_bounds
    starts = []
    for a in np.geomspace(alpha_bounds[0], alpha_bounds[1], n_grid):
        lg, _ = stack.log_survivors(a)

        def gap(lf, lg=lg):
            return float(np.mean(np.exp(-np.exp(lg + lf * np.log(10.0))))) - rate

        if gap(lo) * gap(hi) < 0:
            starts.append((a, brentq(gap, lo, hi, xtol=1e-6)))
        else:
            starts.append((a, lo if abs(gap(lo)) < abs(gap(hi)) else hi))
    return starts


@dataclass(frozen=True)
class TcpFit:
    """A fitted model: α (Gy⁻¹), log10 f_c, the objective value and the optimiser's report."""

    alpha: float
    log10_fc: float
    objective: float
    success: bool
    message: str

    @property
    def clonogenic_fraction(self) -> float:
        return float(10.0**self.log10_fc)


def fit(
    patients, outcome, *, estimator: str = "least_squares", alpha_bounds=(0.01, 1.0), log10_fc_bounds=(-6.0, 0.0)
) -> TcpFit:
    """Fit θ = (α, log10 f_c) to outcomes y_p (1 = local control, 0 = relapse) (docs/method.md §2).

    Parameters
    ----------
    patients : sequence of PatientDose
        One per patient, in the order of ``outcome``.
    outcome : array_like in [0, 1]
        Local control per patient (1 = controlled); fractional values (e.g. known TCPs) are allowed.
    estimator : {"least_squares", "maximum_likelihood"}
        Bounded least squares of TCP_p − y_p (trf), or the Bernoulli likelihood (L-BFGS-B).
    alpha_bounds : (float, float)
        Gy⁻¹.
    log10_fc_bounds : (float, float)
        Bounds of log10 f_c.

    Returns
    -------
    TcpFit
        The best of the fits from the three best starts: α (Gy⁻¹), log10 f_c, the objective and the
        optimiser's report.

    Raises
    ------
    ValueError
        An unknown estimator, fewer than two patients, or outcomes outside [0, 1].
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    y = np.asarray(outcome, np.float64)
    if len(patients) != y.size or y.size < 2:
        raise ValueError("need one outcome per patient and at least two patients")
    if not np.all((y >= 0) & (y <= 1)):
        raise ValueError("outcomes must lie in [0, 1]")
    stack = _stack(patients)
    lb = np.array([alpha_bounds[0], log10_fc_bounds[0]], float)
    ub = np.array([alpha_bounds[1], log10_fc_bounds[1]], float)

    objective = _Objective(stack, y)
    score = objective.half_sse if estimator == "least_squares" else (lambda x: objective.nll(x)[0])
    # Multi-start: (α, f_c) are strongly correlated (only the D50 is well determined by a small
    # cohort), so a single start can stop on the flat valley's edge. Run from the three best starts.
    starts = sorted(
        _starts(stack, y, alpha_bounds=alpha_bounds, log10_fc_bounds=log10_fc_bounds),
        key=lambda x: score(np.asarray(x)),
    )[:3]
    fits = [_fit_from(objective, np.clip(np.asarray(x0, float), lb, ub), lb, ub, estimator=estimator) for x0 in starts]
    best = fits[0]
    for cand in fits[1:]:
        if cand.objective < best.objective:
            best = cand
    return best


class _Objective:
    """The two estimators' objectives over a cohort (``stack``) and its outcomes ``y``."""

    def __init__(self, stack, y):
        self.stack, self.y = stack, y

    def resid(self, x):
        return predict(self.stack, alpha=x[0], log10_fc=x[1]) - self.y

    def resid_jac(self, x):
        u, jac = log_neg_log_tcp(self.stack, alpha=x[0], log10_fc=x[1])
        s = np.exp(u)
        return (-s * np.exp(-s))[:, None] * jac

    def nll(self, x):
        return bernoulli_nll(self.stack, self.y, alpha=x[0], log10_fc=x[1])

    def half_sse(self, x):
        return 0.5 * float(np.sum(self.resid(x) ** 2))


def _fit_from(objective: _Objective, x0, lb, ub, *, estimator: str) -> TcpFit:
    """One bounded fit from ``x0``: least squares (trf) or the Bernoulli likelihood (L-BFGS-B)."""
    if estimator == "least_squares":
        r = least_squares(objective.resid, x0, jac=objective.resid_jac, bounds=(lb, ub), method="trf", x_scale="jac",
                          xtol=1e-10, ftol=1e-12, gtol=1e-12)  # fmt: skip
        return TcpFit(float(r.x[0]), float(r.x[1]), float(r.cost), bool(r.success), str(r.message))
    r = minimize(objective.nll, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lb, ub)),
                 options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 1000})  # fmt: skip
    return TcpFit(float(r.x[0]), float(r.x[1]), float(r.fun), bool(r.success), str(r.message))


def bootstrap(patients, outcome, *, rng: np.random.Generator, n_boot: int, level: float = 0.95, **fit_kwargs) -> dict:
    """Percentile bootstrap over patients: confidence intervals of α and log10 f_c.

    Resamples where every patient has the same outcome are redrawn (the fit is undefined there).

    Parameters
    ----------
    patients : sequence of PatientDose
        One per patient.
    outcome : array_like, shape (n_patients,)
        y_p in [0, 1].
    rng : numpy.random.Generator
        The resampling's random stream.
    n_boot : int
        Number of resamples.
    level : float
        Confidence level of the intervals.
    **fit_kwargs
        Passed to :func:`fit` (estimator, bounds).

    Returns
    -------
    dict
        ``{"alpha": (lo, hi), "log10_fc": (lo, hi), "samples": (n_boot, 2) array}``.
    """
    y = np.asarray(outcome, np.float64)
    if y.min() == y.max():
        raise ValueError("every patient has the same outcome: nothing to bootstrap")
    n = y.size
    out: list = []
    while len(out) < n_boot:
        idx = rng.integers(0, n, n)
        if y[idx].min() == y[idx].max():
            continue
        f = fit([patients[i] for i in idx], y[idx], **fit_kwargs)
        out.append((f.alpha, f.log10_fc))
    s = np.asarray(out, float)
    q = [(1.0 - level) / 2.0 * 100.0, (1.0 + level) / 2.0 * 100.0]
    return {"alpha": tuple(np.percentile(s[:, 0], q)), "log10_fc": tuple(np.percentile(s[:, 1], q)), "samples": s}


def auc(predicted, outcome) -> float:
    """Area under the ROC curve of ``predicted`` (TCP) for ``outcome`` = 1 (control), ties counted ½.

    The Mann–Whitney U of the controlled against the relapsed predictions over n₁n₀.

    Parameters
    ----------
    predicted : array_like, shape (n,)
        Predicted TCP.
    outcome : array_like, shape (n,)
        1 = local control, 0 = relapse.

    Returns
    -------
    float
        AUC in [0, 1]; NaN without both classes.

    Examples
    --------
    >>> auc([0.9, 0.8, 0.3], [1, 0, 0])
    1.0
    """
    p = np.asarray(predicted, float)
    y = np.asarray(outcome, float)
    if y.min() == y.max():
        return float("nan")
    u = mannwhitneyu(p[y == 1], p[y == 0], alternative="two-sided").statistic
    return float(u / ((y == 1).sum() * (y == 0).sum()))


def brier(predicted, outcome) -> float:
    """Brier score, mean((TCP − y)²).

    Parameters
    ----------
    predicted : array_like, shape (n,)
        Predicted TCP.
    outcome : array_like, shape (n,)
        1 = local control, 0 = relapse.

    Returns
    -------
    float
        The mean squared error of the predictions, 0–1.

    Examples
    --------
    >>> brier([1.0, 0.5], [1, 0])
    0.125
    """
    return float(np.mean((np.asarray(predicted, float) - np.asarray(outcome, float)) ** 2))


def identifiability_flags(estimate: dict, *, alpha_bounds, log10_fc_bounds, rel_tol: float = 1e-3) -> list[str]:
    """Why a fitted TCP model is not identified by its training data (an empty list: no reason found).

    Parameters
    ----------
    estimate : dict
        ``alpha`` (Gy⁻¹), ``log10_fc``, optional ``alpha_ci95`` / ``log10_fc_ci95`` ([low, high] or
        None) and ``train_auc``.
    alpha_bounds, log10_fc_bounds : (float, float)
        The fit's box.
    rel_tol : float
        A value within this fraction of the box width of a bound counts as at the bound.

    Returns
    -------
    list of str
        A parameter at a bound, a 95 % CI spanning (≥ 95 % of) the whole bound range, a training AUC
        below 0.5 (the model ranks outcomes worse than chance).
    """
    flags = []
    for name, bounds in (("alpha", alpha_bounds), ("log10_fc", log10_fc_bounds)):
        lo, hi = (float(b) for b in bounds)
        tol = rel_tol * (hi - lo)
        value = float(estimate[name])
        if value <= lo + tol or value >= hi - tol:
            flags.append(f"{name} = {value:.4g} at its bound [{lo:g}, {hi:g}]")
        ci = estimate.get(f"{name}_ci95")
        if ci is not None and ci[1] - ci[0] >= 0.95 * (hi - lo):
            flags.append(f"{name} 95 % CI [{ci[0]:.4g}, {ci[1]:.4g}] spans its bound range [{lo:g}, {hi:g}]")
    auc = estimate.get("train_auc")
    if auc is not None and np.isfinite(auc) and auc < 0.5:
        flags.append(f"training AUC {auc:.2f} < 0.5")
    return flags


def profile_alpha(
    patients, outcome, *, alpha_bounds=(0.01, 1.0), log10_fc_bounds=(-6.0, 0.0), n_grid: int = 41, level: float = 0.95
) -> dict:
    """Profile Bernoulli likelihood of α (docs/method.md §2): min over log10 f_c of the NLL on an α grid,
    and the likelihood-ratio interval {α : 2(NLL_prof(α) − NLL_min) ≤ χ²₁(level)}.

    Parameters
    ----------
    patients : sequence of PatientDose
        One per patient.
    outcome : array_like, shape (n_patients,)
        y_p in [0, 1].
    alpha_bounds, log10_fc_bounds : (float, float)
        As :func:`fit`; the grid is geometric over ``alpha_bounds``.
    n_grid : int
        α grid points.
    level : float
        Confidence level of the interval.

    Returns
    -------
    dict
        ``alpha`` (grid, Gy⁻¹), ``nll`` (profile), ``log10_fc`` (the profiled value per α), ``alpha_hat``,
        ``ci`` (lo, hi; linear interpolation of the crossing, a bound where the curve stays under the cut:
        then ``bounded`` is False on that side), ``bounded`` (lo side, hi side) and ``closed_by_data`` (the
        side's crossing has f_c inside its bounds: with few patients the α interval is often closed only
        because f_c would have to leave [10^lo, 10^hi], which says more about the bounds than the data).
    """
    from scipy.optimize import minimize_scalar
    from scipy.stats import chi2

    stack, y = _stack(patients), np.asarray(outcome, np.float64)
    grid = np.geomspace(alpha_bounds[0], alpha_bounds[1], n_grid)
    nll, lfc = [], []
    for a in grid:
        r = minimize_scalar(lambda lf, a=a: bernoulli_nll(stack, y, alpha=a, log10_fc=lf)[0], bounds=log10_fc_bounds,
                            method="bounded", options={"xatol": 1e-6})  # fmt: skip
        nll.append(float(r.fun))
        lfc.append(float(r.x))
    nll_arr = np.asarray(nll)
    k = int(np.argmin(nll_arr))
    excess = 2.0 * (nll_arr - nll_arr[k]) - chi2.ppf(level, 1)
    lo_side, hi_side = excess[: k + 1][::-1], excess[k:]
    bounded = (bool(np.any(lo_side > 0)), bool(np.any(hi_side > 0)))
    ci, by_data = [], []
    lfc_arr = np.asarray(lfc)
    lo_fc, hi_fc = float(log10_fc_bounds[0]), float(log10_fc_bounds[1])
    for side, g, f in ((lo_side, grid[: k + 1][::-1], lfc_arr[: k + 1][::-1]), (hi_side, grid[k:], lfc_arr[k:])):
        j = int(np.argmax(side > 0)) if np.any(side > 0) else None
        # closed by the outcomes, not by f_c's bounds: f_c is inside them where the curve crosses the cut
        by_data.append(j is not None and bool(np.all((f[max(j - 1, 0) : j + 1] > lo_fc + 1e-3)
                                                     & (f[max(j - 1, 0) : j + 1] < hi_fc - 1e-3))))  # fmt: skip
        if j is None:
            ci.append(float(g[-1]))
        else:  # the crossing between g[j-1] (inside) and g[j] (outside), linear in ln α
            t = -side[j - 1] / (side[j] - side[j - 1])
            ci.append(float(np.exp(np.log(g[j - 1]) + t * (np.log(g[j]) - np.log(g[j - 1])))))
    return {"alpha": grid.tolist(), "nll": nll_arr.tolist(), "log10_fc": lfc, "alpha_hat": float(grid[k]),
            "ci": ci, "bounded": list(bounded), "closed_by_data": by_data, "level": level}  # fmt: skip
