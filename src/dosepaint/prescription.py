"""PET-driven dose-painting prescriptions handed to planning (docs/method.md §4).

Pure functions on dose-grid arrays (z, y, x); doses in Gy(RBE).  Voxels outside the target get
NaN: no prescription there (the planner's OAR and normal-tissue objectives govern them).
"""

from __future__ import annotations

import numpy as np


def by_contours(target: np.ndarray, boost_volume: np.ndarray, *, base_gy: float, boost_gy: float) -> np.ndarray:
    """Dose painting by contours: a simultaneous integrated boost (docs/method.md §4).

    Parameters
    ----------
    target : ndarray of bool, (z, y, x)
        The target the prescription covers.
    boost_volume : ndarray of bool, (z, y, x)
        The biological target volume (BTV).
    base_gy : float
        Dose in the target, Gy(RBE).
    boost_gy : float
        Dose in BTV ∩ target, Gy(RBE).

    Returns
    -------
    ndarray, (z, y, x), float64
        The prescribed dose, Gy(RBE); NaN outside the target.
    """
    t = np.asarray(target, bool)
    out = np.where(t, float(base_gy), np.nan)
    out[t & np.asarray(boost_volume, bool)] = float(boost_gy)
    return out


def by_numbers(
    intensity: np.ndarray,
    target: np.ndarray,
    *,
    d_min_gy: float,
    d_max_gy: float,
    i_min: float | None = None,
    i_max: float | None = None,
) -> np.ndarray:
    """Dose painting by numbers, Bentzen's linear mapping (docs/method.md §4).

    D_i = D_min + (D_max − D_min)·(I_i − I_min)/(I_max − I_min), clipped to [D_min, D_max], in the target.

    Parameters
    ----------
    intensity : ndarray, (z, y, x)
        The image that drives the dose (SUV).
    target : ndarray of bool, (z, y, x)
        The target.
    d_min_gy, d_max_gy : float
        Dose at the lowest and the highest intensity, Gy(RBE).
    i_min, i_max : float, optional
        Intensities mapped to D_min and D_max; default the lowest and highest in the target.

    Returns
    -------
    ndarray, (z, y, x), float64
        The prescribed dose, Gy(RBE); NaN outside the target.
    """
    t = np.asarray(target, bool)
    i = np.asarray(intensity, float)
    vals = i[t & np.isfinite(i)]
    if vals.size == 0:
        raise ValueError("no finite intensity in the target")
    lo = float(vals.min()) if i_min is None else float(i_min)
    hi = float(vals.max()) if i_max is None else float(i_max)
    if not hi > lo:
        raise ValueError(f"intensity range is empty (I_min {lo}, I_max {hi})")
    frac = np.clip((i - lo) / (hi - lo), 0.0, 1.0)
    d = d_min_gy + (d_max_gy - d_min_gy) * frac
    return np.where(t & np.isfinite(i), d, np.nan)
