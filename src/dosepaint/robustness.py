"""Robustness of plans to cell-count uncertainty and to setup and range errors (docs/method.md §3, §5).

Pure functions: arrays in, arrays out.  Doses are total course doses in Gy(RBE); cell counts are
clonogens per voxel (or cells per voxel, where stated); RMSE maps are those of the DWI matching.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

# -- the physical scenario grid ---------------------------------------------------------------------

_NAME = re.compile(r"^s([+-]\d+(?:\.\d+)?)_([+-]\d+(?:\.\d+)?)_([+-]\d+(?:\.\d+)?)_r([+-]\d+(?:\.\d+)?)$")
SCENARIO_PATTERN = r"s[+-][0-9.]+_[+-][0-9.]+_[+-][0-9.]+_r[+-][0-9.]+"
"""Regular expression of a scenario name (a Snakemake wildcard constraint)."""


def _fmt(v: float) -> str:
    return f"{v:+g}" if v != 0 else "+0"


@dataclass(frozen=True)
class Scenario:
    """One physical scenario: an isocentre shift (mm, patient LPS) and a range error (%)."""

    shift_mm: tuple[float, ...]
    range_pct: float

    @property
    def name(self) -> str:
        return "s{}_{}_{}_r{}".format(*(_fmt(float(v)) for v in (*self.shift_mm, self.range_pct)))

    @property
    def range_scale(self) -> float:
        """Factor on the stopping-power ratio (1.03 for +3 %)."""
        return 1.0 + self.range_pct / 100.0

    @property
    def nominal(self) -> bool:
        return not any(self.shift_mm) and self.range_pct == 0

    @property
    def shifted(self) -> bool:
        return any(self.shift_mm)

    @classmethod
    def from_name(cls, name: str) -> Scenario:
        m = _NAME.match(name)
        if m is None:
            raise ValueError(f"not a scenario name: {name!r} (expected e.g. s+3_+0_+0_r-3)")
        x, y, z, r = (float(g) for g in m.groups())
        return cls((x, y, z), r)

    def base(self) -> Scenario:
        """The same range error without the shift (what a rigid-shift approximation shifts)."""
        return Scenario((0.0, 0.0, 0.0), self.range_pct)


def scenario_grid(setup_shifts_mm, range_errors_pct) -> list[Scenario]:
    """Every setup shift × every range error, the nominal scenario first, names unique (docs/method.md §5).

    Parameters
    ----------
    setup_shifts_mm : sequence of (float, float, float)
        Isocentre shifts, mm, patient LPS.
    range_errors_pct : sequence of float
        Stopping-power errors, %.

    Returns
    -------
    list of Scenario
        The study's 7 shifts (0, ±3 mm on each axis) × 3 range errors (0, ±3 %) give 21.

    Raises
    ------
    ValueError
        A repeated scenario, or no nominal one (shift 0, range 0).
    """
    scen = [
        Scenario(tuple(float(v) for v in s), float(r)) for s, r in itertools.product(setup_shifts_mm, range_errors_pct)
    ]
    names = [s.name for s in scen]
    if len(set(names)) != len(names):
        raise ValueError("the scenario grid repeats a scenario")
    if not any(s.nominal for s in scen):
        raise ValueError("the scenario grid must contain the nominal scenario (shift 0, range 0)")
    return sorted(scen, key=lambda s: (not s.nominal, names.index(s.name)))


def shift_to_voxels(shift_mm, *, direction: np.ndarray, spacing_zyx) -> np.ndarray:
    """A patient-LPS shift (mm) as a shift of the ``(z, y, x)`` array (voxels).

    Parameters
    ----------
    shift_mm : sequence of 3 float
        The shift, mm, LPS.
    direction : ndarray, shape (3, 3)
        The grid's direction matrix (columns = LPS directions of the x, y, z index axes).
    spacing_zyx : sequence of 3 float
        Voxel size along the array axes, mm.

    Returns
    -------
    ndarray, shape (3,)
        The shift in voxels along (z, y, x).

    Examples
    --------
    >>> shift_to_voxels((3.0, 0.0, 0.0), direction=np.eye(3), spacing_zyx=(3.0, 3.0, 1.5))
    array([0., 0., 2.])
    """
    ijk_mm = np.linalg.solve(np.asarray(direction, float).reshape(3, 3), np.asarray(shift_mm, float))  # x, y, z
    return ijk_mm[::-1] / np.asarray(spacing_zyx, float)


def rigid_shift(dose: np.ndarray, shift_vox) -> np.ndarray:
    """Dose moved rigidly by ``shift_vox`` voxels along the array axes (docs/method.md §5).

    Linear interpolation, edge values repeated: the labelled fast approximation of a setup error, exact
    for a dose that moves with the beams (it ignores the change of the radiological path through the
    patient).

    Parameters
    ----------
    dose : ndarray, (z, y, x)
        Dose, Gy(RBE).
    shift_vox : sequence of 3 float
        Shift along (z, y, x), voxels (:func:`shift_to_voxels`).

    Returns
    -------
    ndarray, (z, y, x), float64
        The shifted dose.
    """
    # SciPy's ndimage.shift: what we would otherwise write by hand.
    import scipy.ndimage as ndi  # here: the workflow imports this module at parse time

    return ndi.shift(np.asarray(dose, np.float64), np.asarray(shift_vox, float), order=1, mode="nearest")


# -- cell-count scenarios (docs/method.md §3) ------------------------------------------------------------


def rmse_spread(rmse_values, *, centring: str = "zero") -> tuple[float, float]:
    """Centre and σ of the cell-count scenario weights from RMSE values of the fitting population
    (docs/method.md §3).

    Parameters
    ----------
    rmse_values : array_like
        Voxel RMSE values of the population (S/S0 units); non-finite values are ignored.
    centring : {"zero", "mean"}
        Weights of r_i (centre 0) or of r_i − the population mean.

    Returns
    -------
    centre : float
        0, or the mean RMSE.
    sigma : float
        SD of the RMSE values (ddof = 1).
    """
    r = np.asarray(rmse_values, float)
    r = r[np.isfinite(r)]
    if r.size < 2:
        raise ValueError("at least two finite RMSE values are needed for σ")
    if centring not in ("zero", "mean"):
        raise ValueError(f"centring must be 'zero' or 'mean', not {centring!r}")
    return (0.0 if centring == "zero" else float(r.mean())), float(r.std(ddof=1))


def cell_count_weights(rmse: np.ndarray, *, sigma: float, centre: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Best- and worst-case weights of voxel cell counts from their RMSE (docs/method.md §3).

    w_best = 1 − ½(1 − exp(−(r−c)²/(2σ²))) ∈ [0.5, 1], w_worst = 1 + ½(1 − exp(−(r−c)²/(2σ²))) ∈ [1, 1.5].
    Non-finite RMSE counts as no uncertainty (weight 1).

    Parameters
    ----------
    rmse : ndarray
        Voxel RMSE r_i, any shape.
    sigma : float
        σ of the population (:func:`rmse_spread`), RMSE units.
    centre : float
        c, RMSE units.

    Returns
    -------
    best, worst : ndarray
        The weights, the shape of ``rmse``.

    Examples
    --------
    >>> best, worst = cell_count_weights(np.array([0.0, 1e9]), sigma=1.0)
    >>> best.tolist(), worst.tolist()
    ([1.0, 0.5], [1.0, 1.5])
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    r = np.asarray(rmse, float) - float(centre)
    g = 0.5 * (1.0 - np.exp(-(r**2) / (2.0 * sigma**2)))
    g = np.where(np.isfinite(g), g, 0.0)
    return 1.0 - g, 1.0 + g


# -- ΔTCP (docs/method.md §2, Eq. 5) --------------------------------------------------------------------


def voxel_survivors(clonogens, dose, *, alpha: float, beta: float, n_fractions: int) -> np.ndarray:
    """Expected surviving clonogens per voxel, s_i = N_i·exp(−αD_i − βD_i²/n) (float64; docs/method.md §2).

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
    ndarray
        s_i, the shape of ``clonogens``.
    """
    d = np.asarray(dose, np.float64)
    return np.asarray(clonogens, np.float64) * np.exp(-(alpha * d + beta * d * d / n_fractions))


def delta_tcp_voxels(
    clonogens, dose_painted, dose_uniform, *, alpha: float, beta: float, n_fractions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-wise ΔTCP of a painted plan against the uniform one, in both forms of docs/method.md §2.

    Parameters
    ----------
    clonogens : array_like
        N_i, any shape.
    dose_painted, dose_uniform : array_like
        Total doses of the two plans, Gy(RBE), the shape of ``clonogens``.
    alpha, beta : float
        Gy⁻¹, Gy⁻².
    n_fractions : int
        Number of fractions.

    Returns
    -------
    dtcp : ndarray
        ΔTCP_i = exp(−s_i^P) − exp(−s_i^U) with s_i = N_i e^{−E_i}.
    dlntcp : ndarray
        The additive Δln TCP_i = −(s_i^P − s_i^U), whose sum over the ROI is Δ ln TCP.
    """
    kw: dict = {"alpha": alpha, "beta": beta, "n_fractions": n_fractions}
    sp_, su = voxel_survivors(clonogens, dose_painted, **kw), voxel_survivors(clonogens, dose_uniform, **kw)
    return np.exp(-sp_) - np.exp(-su), -(sp_ - su)


def tertile_thresholds(counts, *, percentiles=(100.0 / 3.0, 200.0 / 3.0)) -> tuple[float, float]:
    """Low/medium/high cut-offs of voxel cell counts (docs/method.md §3).

    Parameters
    ----------
    counts : array_like
        Cells per voxel of the pooled held-out GTV voxels; non-finite values are ignored.
    percentiles : (float, float)
        The two cut-offs, percent.

    Returns
    -------
    (float, float)
        The cut-offs, cells per voxel.
    """
    c = np.asarray(counts, float)
    c = c[np.isfinite(c) & (c > 0)]
    lo, hi = np.percentile(c, percentiles)
    return float(lo), float(hi)


def tertile_of(counts, thresholds) -> np.ndarray:
    """Tertile index of each voxel's cell count.

    Parameters
    ----------
    counts : array_like
        Cells per voxel.
    thresholds : (float, float)
        From :func:`tertile_thresholds`.

    Returns
    -------
    ndarray of int8
        0 (low, < first cut), 1 (medium), 2 (high, ≥ second cut), the shape of ``counts``.

    Examples
    --------
    >>> tertile_of([1.0, 5.0, 9.0], (3.0, 6.0)).tolist()
    [0, 1, 2]
    """
    lo, hi = thresholds
    c = np.asarray(counts, float)
    return (c >= lo).astype(np.int8) + (c >= hi).astype(np.int8)


def delta_tcp_by_tertile(survivors_painted, survivors_uniform, tertile) -> dict[str, np.ndarray]:
    """ΔTCP aggregated by tertile (index 0, 1, 2), three ways (docs/method.md §3).

    Parameters
    ----------
    survivors_painted, survivors_uniform : ndarray, (n_voxel,)
        s_i of the two plans (:func:`voxel_survivors`).
    tertile : ndarray of int, (n_voxel,)
        From :func:`tertile_of`.

    Returns
    -------
    dict of ndarray, shape (3,)
        ``subvolume``: TCP of the tertile's voxels as one ROI, painted − uniform (exp(−Σ s_i));
        ``voxel_mean``: mean of the voxel ΔTCP_i; ``dlntcp``: Σ Δln TCP_i over the tertile.
    """
    sp_, su = np.asarray(survivors_painted, float), np.asarray(survivors_uniform, float)
    t = np.asarray(tertile)
    out = {k: np.full(3, np.nan) for k in ("subvolume", "voxel_mean", "dlntcp")}
    for k in range(3):
        m = t == k
        if not np.any(m):
            continue
        out["subvolume"][k] = np.exp(-sp_[m].sum()) - np.exp(-su[m].sum())
        out["voxel_mean"][k] = np.mean(np.exp(-sp_[m]) - np.exp(-su[m]))
        out["dlntcp"][k] = -(sp_[m].sum() - su[m].sum())
    return out


# -- DVH bands and worst case -----------------------------------------------------------------------


def dvh_band(doses_by_scenario: np.ndarray, *, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative DVH (volume ≥ each bin, %) minimum and maximum over scenarios (docs/method.md §5).

    Parameters
    ----------
    doses_by_scenario : ndarray, (n_scenario, n_voxel)
        Doses of one structure, Gy(RBE).
    bins : ndarray, (n_bin,)
        Dose bins, Gy(RBE).

    Returns
    -------
    lower, upper : ndarray, (n_bin,)
        The band, % of the volume.
    """
    d = np.asarray(doses_by_scenario, float)
    curves = 100.0 * (d[:, :, None] >= np.asarray(bins, float)[None, None, :]).mean(axis=1)
    return curves.min(axis=0), curves.max(axis=0)


def worst_case_dose(doses_by_scenario: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Voxel-wise worst case over scenarios: the minimum in target voxels, the maximum elsewhere
    (docs/method.md §5).

    Parameters
    ----------
    doses_by_scenario : ndarray, (n_scenario, ...)
        Doses, Gy(RBE).
    target : ndarray of bool
        Target voxels, the trailing shape of ``doses_by_scenario``.

    Returns
    -------
    ndarray
        The worst-case dose, the trailing shape.

    Examples
    --------
    >>> worst_case_dose(np.array([[1.0, 4.0], [2.0, 3.0]]), np.array([True, False]))
    array([1., 4.])
    """
    d = np.asarray(doses_by_scenario, float)
    return np.where(np.asarray(target, bool), d.min(axis=0), d.max(axis=0))


def scenario_folder(scenario: Scenario, *, setup_method: str) -> str:
    """Where a scenario's doses come from.

    Parameters
    ----------
    scenario : Scenario
        The scenario.
    setup_method : {"recalculate", "rigid_shift"}
        ``robustness.setup_method``.

    Returns
    -------
    str
        ``"scenarios"`` (nominal or recalculated) or ``"shifted"`` (a setup shift by the rigid-shift
        approximation).
    """
    if setup_method not in ("recalculate", "rigid_shift"):
        raise ValueError(f"setup_method must be 'recalculate' or 'rigid_shift', not {setup_method!r}")
    return "shifted" if scenario.shifted and setup_method == "rigid_shift" else "scenarios"
