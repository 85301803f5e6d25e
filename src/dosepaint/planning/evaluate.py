"""Plan evaluation: DVH metrics, LETd metrics, clinical goals, TCP (docs/method.md §1–2).

Dose-volume metrics follow ICRU 83: D_x% is the minimum dose to the hottest x % of the volume
(the (100−x)th percentile of voxel doses, linear interpolation between voxels), L_x% likewise
for LETd.  Voxels have equal volume on the dose grid.
"""

from __future__ import annotations

import numpy as np

from ..radiobiology import log_surviving_clonogens


def d_at(values, percent: float) -> float:
    """D_x%: the dose exceeded by ``percent`` % of the voxels (docs/method.md §1).

    Parameters
    ----------
    values : array_like
        Doses (Gy(RBE)) or LETd (keV/µm) of a structure's voxels; non-finite values are ignored.
    percent : float
        x, %.

    Returns
    -------
    float
        The (100 − x)th percentile (linear interpolation); NaN for an empty set.

    Examples
    --------
    >>> d_at([1.0, 2.0, 3.0, 4.0, 5.0], 50)
    3.0
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(np.percentile(v, 100.0 - percent))


def dvh_metrics(dose, mask, *, prefix: str = "D") -> dict[str, float]:
    """D95, D50, D2, D1 and Dmean of a structure (docs/method.md §1).

    Parameters
    ----------
    dose : ndarray, (z, y, x)
        Gy(RBE), or LETd in keV/µm.
    mask : ndarray of bool, (z, y, x)
        The structure.
    prefix : str
        ``D`` for dose, ``L`` for LETd.

    Returns
    -------
    dict
        ``{prefix}95``, ``{prefix}50``, ``{prefix}2``, ``{prefix}1``, ``{prefix}mean``.
    """
    v = np.asarray(dose, float)[np.asarray(mask, bool)]
    out = {f"{prefix}{p}": d_at(v, p) for p in (98, 95, 50, 2, 1)}
    out[f"{prefix}mean"] = float(np.nanmean(v)) if v.size else float("nan")
    return out


def dvh_bins(*, prescription_gy: float, bin_gy: float) -> np.ndarray:
    """Dose bins of a cumulative DVH, Gy(RBE): 0, ``bin_gy``, … up to below 1.3 × the prescription.

    Parameters
    ----------
    prescription_gy : float
        D_P, Gy(RBE).
    bin_gy : float
        Bin width, Gy(RBE) (``planning.dvh_bin_gy``, ``robustness.dvh_bin_gy``).

    Returns
    -------
    ndarray
        The bins' lower edges, Gy(RBE).

    Examples
    --------
    >>> dvh_bins(prescription_gy=1.0, bin_gy=0.25)
    array([0.  , 0.25, 0.5 , 0.75, 1.  , 1.25])
    """
    return np.arange(0.0, 1.3 * float(prescription_gy), float(bin_gy))


def dvh_curve(dose, mask, *, bins) -> np.ndarray:
    """Cumulative DVH: the fraction of the structure's volume receiving at least each bin's dose.

    Parameters
    ----------
    dose : ndarray, (z, y, x)
        Gy(RBE).
    mask : ndarray of bool, (z, y, x)
        The structure.
    bins : array_like
        Gy(RBE) (:func:`dvh_bins`).

    Returns
    -------
    ndarray, (n_bins,)
        Volume fractions 0–1; NaN for an empty structure.
    """
    v = np.asarray(dose, float)[np.asarray(mask, bool)]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.full(len(bins), np.nan)
    s = np.sort(v)
    return 1.0 - np.searchsorted(s, np.asarray(bins, float), side="left") / s.size


def tcp_metrics(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> dict[str, float]:
    """TCP and the surviving fraction of a total dose (docs/method.md §2).

    Parameters
    ----------
    clonogens : array_like
        N_i, any shape.
    dose : array_like
        Total dose, Gy(RBE), the shape of ``clonogens``.
    alpha, beta : float
        Gy⁻¹, Gy⁻².
    n_fractions : int
        Number of fractions.

    Returns
    -------
    dict
        ``tcp`` = exp(−e^L), ``log_s_roi`` = ln S_ROI = L − ln ΣN and ``ln_surviving`` = L.
    """
    n = np.asarray(clonogens, float).ravel()
    d = np.asarray(dose, float).ravel()
    keep = n > 0
    L = log_surviving_clonogens(n[keep], d[keep], alpha=alpha, beta=beta, n_fractions=n_fractions)
    return {"tcp": float(np.exp(-np.exp(L))), "log_s_roi": float(L - np.log(np.sum(n[keep]))), "ln_surviving": float(L)}


def clinical_goals(metrics: dict, *, prescription_gy: float, oar_limits: dict, escalated: bool) -> dict[str, bool]:
    """Clinical goals of docs/method.md §1 on a metrics dict keyed ``{structure}_{metric}``.

    Target D95 > 0.95 D_P (CTV_HD); GTV D1 < 1.15 D_P; non-escalated regions D1 < 1.05 D_P (CTV_HD−GTV,
    and the GTV itself when the plan does not escalate it); OAR near-max (D2 %, ICRU 83) ≤ its limit.

    Parameters
    ----------
    metrics : dict
        From :func:`dvh_metrics`, keyed ``{structure}_{metric}``, Gy(RBE).
    prescription_gy : float
        D_P, Gy(RBE).
    oar_limits : dict
        OAR → near-max limit, Gy(RBE) (``planning.oar_limits_gy``); OARs without metrics are skipped.
    escalated : bool
        Whether the plan escalates the GTV (DE, DR).

    Returns
    -------
    dict of bool
        Goal name → met.
    """
    dp = float(prescription_gy)
    goals = {
        "CTV_HD_D95": metrics.get("CTV_HD_D95", np.nan) > 0.95 * dp,
        "GTV_D1": metrics.get("GTV_D1", np.nan) < 1.15 * dp,
        "CTV_HD_minus_GTV_D1": metrics.get("CTV_HD_minus_GTV_D1", np.nan) < 1.05 * dp,
    }
    if not escalated:
        goals["GTV_D1_uniform"] = metrics.get("GTV_D1", np.nan) < 1.05 * dp
    for oar, limit in oar_limits.items():
        key = f"{oar}_D2"
        if key in metrics and np.isfinite(metrics[key]):
            goals[f"{oar}_D2"] = metrics[key] <= float(limit)
    return {k: bool(v) for k, v in goals.items()}
