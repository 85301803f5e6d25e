"""Linear-quadratic effect and Poisson TCP in the log domain (docs/method.md §2).

Dose in Gy(RBE) (total over ``n_fractions``), α in Gy⁻¹, β in Gy⁻², cell
counts dimensionless.  Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def lq_effect(dose, *, alpha: float, beta: float, n_fractions: int) -> np.ndarray:
    """Linear-quadratic effect of a total dose delivered in equal fractions (docs/method.md §2).

    E = α D + β D² / n.

    Parameters
    ----------
    dose : array_like
        Total RBE-weighted dose per voxel, Gy(RBE), any shape.
    alpha : float
        Gy⁻¹.
    beta : float
        Gy⁻².
    n_fractions : int
        Number of equal fractions.

    Returns
    -------
    ndarray
        E per voxel (dimensionless), float64, the shape of ``dose``.

    Examples
    --------
    >>> float(lq_effect(2.0, alpha=0.1, beta=0.05, n_fractions=1))
    0.4
    """
    d = np.asarray(dose, dtype=np.float64)
    return alpha * d + beta * d**2 / n_fractions


def log_surviving_clonogens(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> float:
    """Logarithm of the expected number of surviving clonogens, in the log domain (docs/method.md §2).

    L = ln Σ_i N_i e^{−E_i}, by logsumexp over the voxels with N_i > 0.

    Parameters
    ----------
    clonogens : array_like
        Clonogens N_i per voxel, any shape.
    dose : array_like
        Total dose per voxel, Gy(RBE), the shape of ``clonogens``.
    alpha, beta : float
        LQ parameters, Gy⁻¹ and Gy⁻².
    n_fractions : int
        Number of fractions.

    Returns
    -------
    float
        L; −inf when no voxel has clonogens.
    """
    n = np.asarray(clonogens, dtype=np.float64).ravel()
    e = lq_effect(np.asarray(dose, dtype=np.float64).ravel(), alpha=alpha, beta=beta, n_fractions=n_fractions)
    keep = n > 0
    if not np.any(keep):
        return -np.inf
    return float(logsumexp(np.log(n[keep]) - e[keep]))


def poisson_tcp(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> float:
    """Poisson TCP = exp(−Σ_i N_i e^{−E_i}), computed as exp(−e^L) (docs/method.md §2).

    Parameters
    ----------
    clonogens : array_like
        Clonogen count per voxel (any shape; voxels with N = 0 are skipped).
    dose : array_like
        Total RBE-weighted dose per voxel, Gy(RBE), same shape.
    alpha, beta : float
        LQ parameters (Gy⁻¹, Gy⁻²).
    n_fractions : int
        Number of fractions.

    Returns
    -------
    float
        TCP in [0, 1].

    Examples
    --------
    >>> round(poisson_tcp([1e3], [70.0], alpha=0.1, beta=0.0, n_fractions=16), 4)
    0.4018
    """
    return float(
        np.exp(-np.exp(log_surviving_clonogens(clonogens, dose, alpha=alpha, beta=beta, n_fractions=n_fractions)))
    )


def eqd2(dose, *, dose_per_fraction, alpha_beta: float):
    """Equivalent dose in 2 Gy fractions, EQD2 = D (d + α/β) / (2 + α/β) (docs/method.md §2).

    Parameters
    ----------
    dose : array_like
        Total dose D, Gy.
    dose_per_fraction : array_like
        Dose per fraction d, Gy (broadcast against ``dose``).
    alpha_beta : float
        α/β, Gy.

    Returns
    -------
    ndarray or float
        EQD2, Gy.

    Examples
    --------
    >>> round(float(eqd2(73.6, dose_per_fraction=4.6, alpha_beta=2.0)), 2)
    121.44
    """
    return np.asarray(dose, float) * (np.asarray(dose_per_fraction, float) + alpha_beta) / (2.0 + alpha_beta)


def tcp_optimal_dose(
    clonogens,
    *,
    mean_dose: float,
    alpha: float,
    beta: float,
    n_fractions: int,
    lower: float | None = None,
    upper: float | None = None,
    volumes=None,
    tol: float = 1e-9,
) -> np.ndarray:
    """The TCP-optimal dose distribution at a fixed (volume-weighted) mean dose: water-filling.

    Minimises Σ_i N_i e^{−E_i} subject to Σ v_i D_i / Σ v_i = ``mean_dose`` and
    ``lower ≤ D_i ≤ upper`` (docs/method.md §2).  Stationarity gives, per voxel,
    ln N_i − αD_i − βD_i²/n + ln(α + 2βD_i/n) = ln(λ v_i); each voxel equation is solved by
    Newton's method for a trial λ, clipped to the bounds, and λ by bisection on the mean.
    For β = 0 and no bounds this is D_i = D̄ + (ln ρ_i − ⟨ln ρ⟩_v)/α.  No beams: an upper
    bound on what any plan can reach.

    Parameters
    ----------
    clonogens : array_like, (n_vox,)
        N_i ≥ 0; voxels with N_i = 0 go to ``lower`` (which must then be given).
    mean_dose : float
        Prescribed mean dose, Gy(RBE).
    alpha, beta : float
        LQ parameters (Gy⁻¹, Gy⁻²).
    n_fractions : int
    lower, upper : float, optional
        Voxel dose bounds, Gy(RBE).
    volumes : array_like, optional
        Voxel volumes v_i (any unit; default equal).

    Returns
    -------
    ndarray, (n_vox,)
        Dose per voxel, Gy(RBE), float64.
    """
    n = np.asarray(clonogens, dtype=np.float64).ravel()
    v = np.ones_like(n) if volumes is None else np.asarray(volumes, dtype=np.float64).ravel()
    lo = -np.inf if lower is None else float(lower)
    hi = np.inf if upper is None else float(upper)
    if not lo <= mean_dose <= hi:
        raise ValueError(f"mean dose {mean_dose} is outside the bounds [{lo}, {hi}]")
    pos = n > 0
    if not np.all(pos) and lower is None:
        raise ValueError("voxels without clonogens need a lower dose bound")
    k = beta / n_fractions
    ln_n = np.log(np.where(pos, n, 1.0))
    ln_v = np.log(v)

    def doses(ln_lam: float) -> np.ndarray:
        rhs = ln_n - ln_v - ln_lam
        d = (rhs + np.log(alpha)) / alpha  # exact for β = 0; Newton start otherwise
        if k > 0:
            d = np.maximum(d, -alpha / (2 * k) + 1e-6)
            for _ in range(60):
                h = rhs - alpha * d - k * d * d + np.log(alpha + 2 * k * d)
                dh = -alpha - 2 * k * d + 2 * k / (alpha + 2 * k * d)
                step = h / dh
                d = np.maximum(d - step, -alpha / (2 * k) + 1e-6)
                if np.max(np.abs(step)) < 1e-10:
                    break
        return np.where(pos, np.clip(d, lo, hi), lo)

    def mean_of(ln_lam):
        return float(np.sum(v * doses(ln_lam)) / np.sum(v))

    # Bracket ln λ: larger λ → lower dose.
    a, b = -50.0, 50.0
    while mean_of(a) < mean_dose:
        a -= 50.0
    while mean_of(b) > mean_dose:
        b += 50.0
    for _ in range(200):
        m = 0.5 * (a + b)
        if mean_of(m) > mean_dose:
            a = m
        else:
            b = m
        if b - a < tol:
            break
    return doses(0.5 * (a + b))
