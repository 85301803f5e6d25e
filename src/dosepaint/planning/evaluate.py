"""Plan evaluation: DVH metrics, LETd metrics, clinical goals, TCP (docs/method.md §1–2).

Dose-volume metrics follow ICRU 83: D_x% is the minimum dose to the hottest x % of the volume
(the (100−x)th percentile of voxel doses, linear interpolation between voxels), L_x% likewise
for LETd.  Voxels have equal volume on the dose grid.
"""

from __future__ import annotations

import numpy as np

from ..radiobiology import log_surviving_clonogens


def d_at(values, percent: float) -> float:
    """D_x%: the dose exceeded by ``percent`` % of the voxels (NaN for an empty set)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(np.percentile(v, 100.0 - percent))


def dvh_metrics(dose, mask, *, prefix: str = "D") -> dict[str, float]:
    """D95, D50, D2, D1 and Dmean (Gy(RBE)) in ``mask``; ``prefix`` L for LETd (keV/µm)."""
    v = np.asarray(dose, float)[np.asarray(mask, bool)]
    out = {f"{prefix}{p}": d_at(v, p) for p in (98, 95, 50, 2, 1)}
    out[f"{prefix}mean"] = float(np.nanmean(v)) if v.size else float("nan")
    return out


def dvh_bins(*, prescription_gy: float, bin_gy: float) -> np.ndarray:
    """Dose bins of a cumulative DVH, Gy(RBE): 0, ``bin_gy``, … up to below 1.3 × the prescription.

    >>> dvh_bins(prescription_gy=1.0, bin_gy=0.25)
    array([0.  , 0.25, 0.5 , 0.75, 1.  , 1.25])
    """
    return np.arange(0.0, 1.3 * float(prescription_gy), float(bin_gy))


def dvh_curve(dose, mask, *, bins) -> np.ndarray:
    """Cumulative DVH: fraction of the volume receiving ≥ each bin dose."""
    v = np.asarray(dose, float)[np.asarray(mask, bool)]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.full(len(bins), np.nan)
    s = np.sort(v)
    return 1.0 - np.searchsorted(s, np.asarray(bins, float), side="left") / s.size


def tcp_metrics(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> dict[str, float]:
    """TCP = exp(−e^L) and S_ROI = e^L/ΣN for a total dose (Gy(RBE)) in ``n_fractions``."""
    n = np.asarray(clonogens, float).ravel()
    d = np.asarray(dose, float).ravel()
    keep = n > 0
    L = log_surviving_clonogens(n[keep], d[keep], alpha=alpha, beta=beta, n_fractions=n_fractions)
    return {"tcp": float(np.exp(-np.exp(L))), "log_s_roi": float(L - np.log(np.sum(n[keep]))), "ln_surviving": float(L)}


def clinical_goals(metrics: dict, *, prescription_gy: float, oar_limits: dict, escalated: bool) -> dict[str, bool]:
    """Clinical goals of docs/method.md §1 on a metrics dict keyed ``{structure}_{metric}``.

    target D95 > 0.95 D_P (CTV_HD); GTV D1 < 1.15 D_P; non-escalated regions D1 < 1.05 D_P
    (CTV_HD−GTV, and the GTV itself when the plan does not escalate it); OAR near-max
    (D2 %, ICRU 83) ≤ its limit.
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
