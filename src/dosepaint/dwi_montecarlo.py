"""Intracellular signal from Monte Carlo random walks in impermeable spheres (docs/method.md §3).

Units: b in s/mm², radii in mm, diffusivities in mm²/s, timing in s (dmipy-sim works in SI: the
conversions are here and nowhere else).

The analytic library uses the Gaussian-phase approximation (GPA) of the restricted-sphere signal.  This
module tabulates the same signal by random walks (dmipy-sim, JAX, CPU or GPU; an optional dependency:
``pip install dmipy-sim``, AGPL-3.0) on a grid of (R, D_in) for a protocol's b-values and ideal
rectangular PGSE pulses, and interpolates it (in ln R and D_in, scipy) at a prior sample's points; the
extracellular compartment stays the hindered Gaussian of the analytic model.  dipy and dmipy-fit only
offer the GPA, so the table and its interpolation are written here.
"""

from __future__ import annotations

import numpy as np


def _dmipy_sim():
    try:
        import dmipy_sim
    except ImportError as exc:  # an optional dependency: say how to get it
        raise ImportError(
            "dwi.library_model: monte_carlo needs dmipy-sim (pip install dmipy-sim; AGPL-3.0, JAX on CPU)"
        ) from exc
    return dmipy_sim


def sphere_table(
    bvalues, *, radii_mm, d_in, delta: float, Delta: float, n_walkers: int = 20000, n_t: int = 200, seed: int = 0
) -> np.ndarray:
    """S/S0 inside impermeable spheres by Monte Carlo, on a grid of radius × intracellular diffusivity.

    Parameters
    ----------
    bvalues : array_like, shape (nb,)
        s/mm².
    radii_mm : array_like, shape (nr,)
        Sphere radii, mm.
    d_in : array_like, shape (nd,)
        Intracellular diffusivities, mm²/s.
    delta, Delta : float
        PGSE pulse duration and separation, s (ideal rectangular pulses).
    n_walkers, n_t : int
        Walkers and time steps per walk (the MC standard error of S/S0 is about 1/sqrt(n_walkers)).
    seed : int
        Seed of every walk (the walks of one grid point share it).

    Returns
    -------
    ndarray, shape (nr, nd, nb)
        S/S0 along one gradient direction (the sphere is isotropic).
    """
    ds = _dmipy_sim()
    b = np.asarray(bvalues, float)
    wf = ds.set_b(ds.pgse(delta=delta, DELTA=Delta, G_magnitude=0.05, bvecs=[[1.0, 0.0, 0.0]] * b.size, n_t=n_t,
                          slew_rate=np.inf), b * 1e6)  # fmt: skip
    out = np.empty((len(radii_mm), len(d_in), b.size))
    for i, r in enumerate(radii_mm):
        for j, d in enumerate(d_in):
            sig = ds.simulate(n_walkers=n_walkers, diffusivity=float(d) * 1e-6, waveform=wf,
                              geometry=ds.Sphere(radius=float(r) * 1e-3), seed=seed, require_gpu=False)  # fmt: skip
            out[i, j] = np.asarray(sig, float).ravel()[: b.size]
    return out


def interpolate_table(table, *, radii_mm, d_in, radius, diffusivity) -> np.ndarray:
    """S/S0 at (radius, diffusivity) points, linear in (ln R, D_in) between the table's grid points.

    Parameters
    ----------
    table : ndarray, shape (nr, nd, nb)
        From :func:`sphere_table`.
    radii_mm, d_in : array_like
        The table's grid (mm, mm²/s), increasing.
    radius, diffusivity : array_like, shape (n,)
        Query points (mm, mm²/s), clipped to the grid.

    Returns
    -------
    ndarray, shape (n, nb)
    """
    from scipy.interpolate import RegularGridInterpolator

    lr, d = np.log(np.asarray(radii_mm, float)), np.asarray(d_in, float)
    f = RegularGridInterpolator((lr, d), np.asarray(table, float), method="linear")
    q = np.column_stack([np.clip(np.log(np.asarray(radius, float)), lr[0], lr[-1]),
                         np.clip(np.asarray(diffusivity, float), d[0], d[-1])])  # fmt: skip
    return f(q)
