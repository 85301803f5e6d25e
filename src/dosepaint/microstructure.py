"""Diffusion signal models of tumour microstructure (docs/method.md §3).

Units: b in s/mm², diffusivities in mm²/s, radii in mm, gradient timings
δ (small delta) and Δ (big delta) in s.

The restricted-sphere signal uses the Gaussian-phase approximation of
Murday & Cotts (J Chem Phys 1968; 48:4938) for a pulsed-gradient spin echo.
Neither dipy nor SimpleITK ships this model for arbitrary (R, D, δ, Δ) arrays,
so it is written here and validated against its free-diffusion and
motional-narrowing limits in the tests.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import spherical_jn

#: Gyromagnetic ratio of ¹H in rad s⁻¹ T⁻¹ (only the product γG enters through b).
GAMMA = 2.6752218744e8


@lru_cache(maxsize=8)
def sphere_roots(n_roots: int = 20) -> np.ndarray:
    """First positive roots μ_m of μ J'_{3/2}(μ) − ½ J_{3/2}(μ) = 0 (docs/method.md §3).

    With J_{3/2}(μ) = sqrt(2μ/π) j_1(μ) the condition is d/dμ [j_1(μ)] = 0 for the spherical Bessel
    function j_1 (the Neumann boundary condition on a sphere). Found by bracketing sign changes of
    j_1' and refining with Brent's method (scipy has no root table for it).

    Parameters
    ----------
    n_roots : int
        How many roots.

    Returns
    -------
    ndarray, shape (n_roots,)
        μ_1 < μ_2 < …, dimensionless.

    Examples
    --------
    >>> sphere_roots(3).round(4)
    array([2.0816, 5.9404, 9.2058])
    """

    def f(mu):
        return spherical_jn(1, mu, derivative=True)

    roots = []
    grid = np.linspace(0.5, 4.0 * n_roots + 10, 40 * n_roots + 400)
    vals = f(grid)
    for a, b, fa, fb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:]):
        if fa * fb < 0:
            roots.append(brentq(f, a, b, xtol=1e-12))
            if len(roots) == n_roots:
                break
    return np.asarray(roots)


def sphere_signal(bvalues, radius, diffusivity, *, delta: float, Delta: float, n_roots: int = 20) -> np.ndarray:
    """Normalised PGSE signal E = S/S0 inside an impermeable sphere (GPA).

    Parameters
    ----------
    bvalues : array_like, shape (nb,)
        b-values (s/mm²).
    radius : array_like
        Sphere radius R (mm); broadcasts with ``diffusivity``.  Valid for
        cells (R ≲ 0.5 mm): for much larger spheres the series loses
        precision to cancellation (and the signal is free diffusion anyway).
    diffusivity : array_like
        Intracellular free diffusivity D_in (mm²/s).
    delta, Delta : float
        Gradient pulse duration δ and separation Δ (s), Δ > δ.
    n_roots : int
        Number of terms of the series.

    Returns
    -------
    ndarray, shape broadcast(radius, diffusivity) + (nb,)
    """
    b = np.asarray(bvalues, float)
    R, D = np.broadcast_arrays(np.asarray(radius, float), np.asarray(diffusivity, float))
    if Delta <= delta:
        raise ValueError("Delta must exceed delta")
    # γ²G² from b = γ²G²δ²(Δ − δ/3)
    g2 = b / (delta**2 * (Delta - delta / 3.0))
    mu = sphere_roots(n_roots)
    a2 = (mu[None, :] / R.reshape(-1, 1)) ** 2  # α_m², (n, m)
    a2d = a2 * D.reshape(-1, 1)
    num = (
        2.0
        + np.exp(-a2d * (Delta - delta))
        - 2.0 * np.exp(-a2d * delta)
        - 2.0 * np.exp(-a2d * Delta)
        + np.exp(-a2d * (Delta + delta))
    )
    series = (1.0 / (a2 * (a2 * R.reshape(-1, 1) ** 2 - 2.0))) * (2.0 * delta / a2d - num / a2d**2)
    s = series.sum(axis=1)  # (n,)
    log_e = -2.0 * s[:, None] * g2[None, :]
    return np.exp(log_e).reshape(R.shape + b.shape)


def extracellular_diffusivity(vf, d_free):
    """Tortuosity-hindered extracellular diffusivity D_ex = D_free / (1 + vf/2) (docs/method.md §3).

    Parameters
    ----------
    vf : array_like
        Intracellular volume fraction, 0–1.
    d_free : array_like
        Free diffusivity, mm²/s (broadcast against ``vf``).

    Returns
    -------
    ndarray
        D_ex, mm²/s.

    Examples
    --------
    >>> round(float(extracellular_diffusivity(0.5, 3e-3)), 6)
    0.0024
    """
    return np.asarray(d_free, float) / (1.0 + 0.5 * np.asarray(vf, float))


def two_compartment_signal(bvalues, *, radius, vf, d_in, d_free, delta: float, Delta: float) -> np.ndarray:
    """S/S0 = vf·E_sphere(R, D_in) + (1 − vf)·exp(−b·D_ex) (docs/method.md §3).

    Parameters
    ----------
    bvalues : array_like, shape (nb,)
        b-values (s/mm²).
    radius, vf, d_in, d_free : array_like, broadcastable
        Cell radius (mm), intracellular volume fraction (1), intracellular and
        free diffusivities (mm²/s).
    delta, Delta : float
        PGSE timing (s).

    Returns
    -------
    ndarray, shape broadcast(...) + (nb,)
    """
    R, v, di, df = np.broadcast_arrays(*(np.asarray(a, float) for a in (radius, vf, d_in, d_free)))
    b = np.asarray(bvalues, float)
    e_in = sphere_signal(b, R, di, delta=delta, Delta=Delta)
    d_ex = extracellular_diffusivity(v, df)
    e_ex = np.exp(-d_ex[..., None] * b)
    return v[..., None] * e_in + (1.0 - v[..., None]) * e_ex


def cell_density(*, radius, vf):
    """Cell density of packed spheres, ρ = vf / (4/3 π R³) (docs/method.md §3).

    Parameters
    ----------
    radius : array_like
        Cell radius R, mm.
    vf : array_like
        Intracellular volume fraction, 0–1 (broadcast against ``radius``).

    Returns
    -------
    ndarray
        ρ, cells/mm³.

    Examples
    --------
    >>> round(float(cell_density(radius=0.01, vf=0.5)))
    119366
    """
    return np.asarray(vf, float) / (4.0 / 3.0 * np.pi * np.asarray(radius, float) ** 3)
