"""Linear-quadratic effect and Poisson TCP in the log domain (SCIENCE.md §2).

Dose in Gy(RBE) (total over ``n_fractions``), α in Gy⁻¹, β in Gy⁻², cell
counts dimensionless.  Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def lq_effect(dose, *, alpha: float, beta: float, n_fractions: int) -> np.ndarray:
    """E = α D + β D² / n for total dose D (Gy(RBE)) delivered in n equal fractions."""
    d = np.asarray(dose, dtype=np.float64)
    return alpha * d + beta * d**2 / n_fractions


def log_surviving_clonogens(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> float:
    """L = ln Σ_i N_i e^{−E_i} (logsumexp over voxels with N_i > 0)."""
    n = np.asarray(clonogens, dtype=np.float64).ravel()
    e = lq_effect(np.asarray(dose, dtype=np.float64).ravel(), alpha=alpha, beta=beta,
                  n_fractions=n_fractions)
    keep = n > 0
    if not np.any(keep):
        return -np.inf
    return float(logsumexp(np.log(n[keep]) - e[keep]))


def poisson_tcp(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> float:
    """Poisson TCP = exp(−Σ_i N_i e^{−E_i}), computed as exp(−e^L).

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
    """
    return float(np.exp(-np.exp(log_surviving_clonogens(clonogens, dose, alpha=alpha, beta=beta,
                                                          n_fractions=n_fractions))))


def eqd2(dose, *, dose_per_fraction, alpha_beta: float):
    """EQD2 = D (d + α/β) / (2 + α/β) (Gy)."""
    return np.asarray(dose, float) * (np.asarray(dose_per_fraction, float) + alpha_beta) / (2.0 + alpha_beta)
