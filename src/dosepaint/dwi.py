"""DWI → ADC → microstructure → cell density (docs/method.md §3).

Units: b in s/mm², ADC and diffusivities in mm²/s, radii in mm, cell density
ρ in cells/mm³.  Signal arrays carry the b-value axis first: ``(nb, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import protocol_key  # noqa: F401 (re-exported: the library files' key)
from .microstructure import cell_density, two_compartment_signal

# Flags of the ADC fit (bit field).
FLAG_NONPOSITIVE = 1  # a signal used by the fit is ≤ 0 or not finite
FLAG_TOO_FEW_B = 2  # fewer than ``min_points`` usable b-values
FLAG_ADC_RANGE = 4  # ADC outside [adc_min, adc_max] (non-physical)


@dataclass
class AdcFit:
    """Result of :func:`fit_adc`; arrays have the spatial shape of the input.

    Attributes
    ----------
    adc : ndarray
        Apparent diffusion coefficient (mm²/s); NaN where flagged.
    s0 : ndarray
        Extrapolated b = 0 signal of the fit (same units as the input); NaN where flagged.
    residual_rms : ndarray
        RMS of the weighted log-signal residuals (1).
    flags : ndarray of uint8
        Bit field of FLAG_* values; 0 = valid.
    """

    adc: np.ndarray
    s0: np.ndarray
    residual_rms: np.ndarray
    flags: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.flags == 0


def fit_adc(
    signals,
    bvalues,
    *,
    b_min: float = 100.0,
    min_points: int = 2,
    adc_min: float = 0.0,
    adc_max: float = 3.5e-3,
    weighting: str = "signal",
) -> AdcFit:
    """Weighted log-linear fit of S(b) = S0·exp(−b·ADC) over b ≥ ``b_min``.

    With ``weighting="signal"`` (default) the weights are S² (the inverse variance of ln S for
    Gaussian noise on S), the standard choice for log-linear DWI fits (as in dipy's WLS tensor
    fit); ``weighting="none"`` is ordinary least squares on ln S.

    Parameters
    ----------
    signals : array_like, shape (nb, ...)
        Signals per b-value.
    bvalues : array_like, shape (nb,)
        b-values (s/mm²).
    b_min : float
        Lowest b-value used (drops the perfusion-weighted low-b points).
    min_points : int
        Fewest usable b-values for a fit.
    adc_min, adc_max : float
        Physical range (mm²/s); fits outside are flagged.
    weighting : {"signal", "none"}
        S² weights or none.

    Returns
    -------
    AdcFit
        Flagged voxels are NaN in ``adc`` and ``s0``, never filled.
    """
    s = np.asarray(signals, dtype=np.float64)
    b = np.asarray(bvalues, dtype=np.float64)
    if s.shape[0] != b.size:
        raise ValueError(f"{s.shape[0]} signal volumes for {b.size} b-values")
    if weighting not in ("signal", "none"):
        raise ValueError(f"weighting must be 'signal' or 'none', not {weighting!r}")
    use = b >= b_min
    shape = s.shape[1:]
    s = s[use].reshape(int(use.sum()), -1)
    b = b[use]
    good = np.isfinite(s) & (s > 0)
    flags = np.zeros(s.shape[1], np.uint8)
    flags[~good.all(axis=0)] |= FLAG_NONPOSITIVE
    n_good = good.sum(axis=0)
    flags[n_good < min_points] |= FLAG_TOO_FEW_B
    logs = np.log(np.where(good, s, 1.0))
    w = np.where(good, s**2 if weighting == "signal" else 1.0, 0.0)
    # Weighted least squares of y = a − b·x per voxel, in closed form.
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bm = (w * b[:, None]).sum(axis=0) / sw
        ym = (w * logs).sum(axis=0) / sw
        db = b[:, None] - bm
        slope = (w * db * (logs - ym)).sum(axis=0) / (w * db**2).sum(axis=0)
        intercept = ym - slope * bm
        resid = np.where(good, logs - (intercept + slope * b[:, None]), 0.0)
        rms = np.sqrt((w * resid**2).sum(axis=0) / sw)
    adc = -slope
    flags[(n_good >= min_points) & ~((adc >= adc_min) & (adc <= adc_max))] |= FLAG_ADC_RANGE
    bad = flags != 0
    adc = np.where(bad, np.nan, adc)
    s0 = np.where(bad, np.nan, np.exp(intercept))
    return AdcFit(
        adc.reshape(shape), s0.reshape(shape), np.where(bad, np.nan, rms).reshape(shape), flags.reshape(shape)
    )


# ---------------------------------------------------------------------------------------------
# Microstructure library
# ---------------------------------------------------------------------------------------------

#: Default library grid (documented in config/README.md): cell radius 2–15 µm, intracellular
#: volume fraction 0.02–0.9, intracellular diffusivity and free (extracellular) diffusivity.
DEFAULT_GRID = {
    "radius_um": (2.0, 15.0, 27),
    "vf": (0.02, 0.90, 45),
    "d_in": (0.6e-3, 1.6e-3, 6),
    "d_free": (1.8e-3, 3.0e-3, 5),
}


@dataclass
class Library:
    """Model signals over a parameter grid for one acquisition protocol.

    Attributes
    ----------
    bvalues : ndarray (nb,)
    delta, Delta : float
        PGSE timing (s).
    params : dict of ndarray (n,)
        radius (mm), vf, d_in, d_free (mm²/s), cell_density (cells/mm³).
    signals : ndarray (n, nb)
        S/S0 of each entry.
    adc : ndarray (n,)
        Each entry's ADC by the same fit as the measurements (b ≥ b_min).
    b_min : float
    weighting : str
        The :func:`fit_adc` weighting of that ADC.
    """

    bvalues: np.ndarray
    delta: float
    Delta: float
    params: dict
    signals: np.ndarray
    adc: np.ndarray
    b_min: float
    weighting: str = "signal"

    def arrays(self) -> dict:
        """Flat dict of arrays (for ``numpy.savez``)."""
        return {
            "bvalues": self.bvalues,
            "delta": np.array(self.delta),
            "Delta": np.array(self.Delta),
            "signals": self.signals,
            "adc": self.adc,
            "b_min": np.array(self.b_min),
            "weighting": np.array(self.weighting),
            **{f"param_{k}": v for k, v in self.params.items()},
        }

    @classmethod
    def from_arrays(cls, d) -> Library:
        params = {k[len("param_") :]: np.asarray(d[k]) for k in d if k.startswith("param_")}
        return cls(
            np.asarray(d["bvalues"]),
            float(d["delta"]),
            float(d["Delta"]),
            params,
            np.asarray(d["signals"]),
            np.asarray(d["adc"]),
            float(d["b_min"]),
            str(d["weighting"]) if "weighting" in d else "signal",
        )


def build_library(
    bvalues, *, delta: float, Delta: float, b_min: float = 100.0, grid: dict | None = None, weighting: str = "signal"
) -> Library:
    """Two-compartment signals (restricted spheres + hindered extracellular space) over a grid
    (docs/method.md §3).

    Parameters
    ----------
    bvalues : array_like (nb,)
        The protocol's b-values (s/mm²).
    delta, Delta : float
        PGSE timing (s).
    b_min : float
        Lowest b-value (s/mm²) of the entries' ADC fit (:func:`fit_adc`); the measurements must use the same.
    grid : dict, optional
        ``{"radius_um": (lo, hi, n), "vf": (lo, hi, n), "d_in": (lo, hi, n), "d_free": (lo, hi, n)}``;
        radius is spaced geometrically, the others linearly.  Default :data:`DEFAULT_GRID`.
    weighting : {"signal", "none"}
        Weights of the entries' ADC fit, as the measurements'.

    Returns
    -------
    Library
        Parameters (n entries), signals S/S0 (n, nb) and the ADC of each entry (mm²/s).
    """
    g = {**DEFAULT_GRID, **(grid or {})}
    r = np.geomspace(g["radius_um"][0], g["radius_um"][1], int(g["radius_um"][2])) * 1e-3
    vf = np.linspace(g["vf"][0], g["vf"][1], int(g["vf"][2]))
    d_in = np.linspace(g["d_in"][0], g["d_in"][1], int(g["d_in"][2]))
    d_free = np.linspace(g["d_free"][0], g["d_free"][1], int(g["d_free"][2]))
    R, V, DI, DF = (a.ravel() for a in np.meshgrid(r, vf, d_in, d_free, indexing="ij"))
    b = np.asarray(bvalues, float)
    sig = two_compartment_signal(b, radius=R, vf=V, d_in=DI, d_free=DF, delta=delta, Delta=Delta)
    adc = fit_adc(sig.T, b, b_min=b_min, adc_max=np.inf, weighting=weighting).adc
    params = {"radius": R, "vf": V, "d_in": DI, "d_free": DF, "cell_density": cell_density(radius=R, vf=V)}
    return Library(b, float(delta), float(Delta), params, sig, adc, float(b_min), weighting)


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass
class Match:
    """Per-voxel matched microstructure (spatial shape of the input; NaN where not matched)."""

    radius: np.ndarray  # mm
    vf: np.ndarray
    d_in: np.ndarray  # mm²/s
    d_free: np.ndarray  # mm²/s
    cell_density: np.ndarray  # cells/mm³
    rmse: np.ndarray  # RMS(measured − matched S/S0) over b ≥ b_min


class AdcLookup:
    """Posterior-mean lookup of microstructure given ADC, under a uniform prior over the library.

    One ADC is produced by many (R, vf, D) combinations; this averages them,
    weighted by a Gaussian likelihood of width ``adc_sigma`` (mm²/s) around
    the measured ADC, on a fine, uniform ADC table.  Each voxel then costs
    one gather and one linear interpolation (vectorised; several million
    voxels per second on one core).  Cell density is averaged in the log
    domain (geometric posterior mean).
    """

    FIELDS = ("radius", "vf", "d_in", "d_free", "log_cell_density")

    def __init__(self, library: Library, *, adc_sigma: float = 0.05e-3, n_table: int = 2048):
        self.library = library
        finite = np.isfinite(library.adc)
        lib_adc = library.adc[finite]
        self.lo, self.hi = float(lib_adc.min()), float(lib_adc.max())
        self.step = (self.hi - self.lo) / (n_table - 1)
        table_adc = self.lo + self.step * np.arange(n_table)
        w = np.exp(-0.5 * ((table_adc[:, None] - lib_adc[None, :]) / adc_sigma) ** 2)
        w /= w.sum(axis=1, keepdims=True)
        p = {k: v[finite] for k, v in library.params.items()}
        p["log_cell_density"] = np.log(p["cell_density"])
        sig = library.signals[finite][:, library.bvalues >= library.b_min]
        # One table: the posterior means of the fields, then of the normalised signals.
        self.table = np.column_stack([w @ p[k] for k in self.FIELDS] + [w @ sig])

    def __call__(self, adc, signals_norm=None) -> Match:
        """Match ADC values (any shape).  ``signals_norm`` (nb_used, ...) = S/S0 for the RMSE."""
        a = np.asarray(adc, float)
        shape = a.shape
        a = a.ravel()
        inside = np.isfinite(a) & (a >= self.lo) & (a <= self.hi)
        pos = np.where(inside, (a - self.lo) / self.step, 0.0)
        i0 = np.minimum(pos.astype(np.int64), self.table.shape[0] - 2)
        f = (pos - i0)[:, None]
        vals = self.table[i0] * (1.0 - f) + self.table[i0 + 1] * f
        vals[~inside] = np.nan
        nf = len(self.FIELDS)
        out = {k: vals[:, i].reshape(shape) for i, k in enumerate(self.FIELDS)}
        rmse = np.full(a.shape, np.nan)
        if signals_norm is not None:
            sn = np.asarray(signals_norm, float).reshape(vals.shape[1] - nf, -1).T
            rmse = np.sqrt(np.mean((sn - vals[:, nf:]) ** 2, axis=1))
        return Match(
            out["radius"], out["vf"], out["d_in"], out["d_free"], np.exp(out["log_cell_density"]), rmse.reshape(shape)
        )


def match_signals(signals_norm, library: Library, *, k: int = 16) -> Match:
    """k-nearest-neighbour match of normalised multi-b signals to the library (docs/method.md §3).

    The matched parameters are the inverse-distance-weighted mean of the k nearest entries (a
    non-negative weighted combination; ρ averaged in the log domain), found with scipy's cKDTree over
    S/S0 at b ≥ b_min.

    Parameters
    ----------
    signals_norm : array_like (nb_used, ...)
        S/S0 at the library's b ≥ b_min, per voxel; NaN voxels are skipped.
    library : Library
        The protocol's library.
    k : int
        Neighbours averaged.

    Returns
    -------
    Match
        Radius (mm), vf, d_in, d_free (mm²/s), cell density (cells/mm³) and the RMSE of S/S0 per voxel,
        in the spatial shape of ``signals_norm`` (NaN where not matched).
    """
    from scipy.spatial import cKDTree

    sn = np.asarray(signals_norm, float)
    shape = sn.shape[1:]
    x = sn.reshape(sn.shape[0], -1).T
    use = library.bvalues >= library.b_min
    lib = library.signals[:, use]
    ok = np.all(np.isfinite(x), axis=1)
    dist, idx = cKDTree(lib).query(x[ok], k=k)
    w = 1.0 / np.maximum(dist, 1e-9)
    w /= w.sum(axis=1, keepdims=True)
    out = {}
    for key in ("radius", "vf", "d_in", "d_free"):
        v = np.full(x.shape[0], np.nan)
        v[ok] = np.sum(w * library.params[key][idx], axis=1)
        out[key] = v.reshape(shape)
    rho = np.full(x.shape[0], np.nan)
    rho[ok] = np.exp(np.sum(w * np.log(library.params["cell_density"][idx]), axis=1))
    rmse = np.full(x.shape[0], np.nan)
    pred = np.einsum("vk,vkb->vb", w, lib[idx])
    rmse[ok] = np.sqrt(np.mean((x[ok] - pred) ** 2, axis=1))
    return Match(out["radius"], out["vf"], out["d_in"], out["d_free"], rho.reshape(shape), rmse.reshape(shape))


def clonogens(cell_density, *, voxel_volume_mm3: float, clonogenic_fraction: float) -> np.ndarray:
    """Clonogens per voxel, N = f_c · ρ · v (docs/method.md §2).

    ρ is intensive and must already be on the target grid (resample ρ, never N).

    Parameters
    ----------
    cell_density : array_like
        ρ, cells/mm³, any shape; NaN counts as 0.
    voxel_volume_mm3 : float
        v, mm³.
    clonogenic_fraction : float
        f_c, 0–1.

    Returns
    -------
    ndarray
        N per voxel, float64, the shape of ``cell_density``.

    Examples
    --------
    >>> clonogens([1e5, float("nan")], voxel_volume_mm3=27.0, clonogenic_fraction=0.01)
    array([27000.,     0.])
    """
    rho = np.nan_to_num(np.asarray(cell_density, float), nan=0.0)
    return clonogenic_fraction * rho * voxel_volume_mm3


FLAG_OUT_OF_LIBRARY = 8  # ADC outside the range the library can explain
FLAG_PARTIAL_VOLUME = 16  # at the GTV edge: left out of the GTV's cell density (docs/method.md §3)


def parse_protocol_key(key: str) -> tuple[np.ndarray, float, float]:
    """Inverse of :func:`protocol_key`.

    Parameters
    ----------
    key : str
        A library key such as ``b0-100-1000_d20_D40``.

    Returns
    -------
    bvalues : ndarray
        s/mm², increasing.
    delta_ms, Delta_ms : float
        PGSE timing, ms.

    Raises
    ------
    ValueError
        Not a key :func:`protocol_key` makes.
    """
    try:
        bpart, dpart, Dpart = key.split("_")
        assert bpart[0] == "b" and dpart[0] == "d" and Dpart[0] == "D"

        def val(s):
            return float(s.replace("p", "."))

        return np.array([val(v) for v in bpart[1:].split("-")]), val(dpart[1:]), val(Dpart[1:])
    except (ValueError, AssertionError, IndexError) as exc:
        raise ValueError(f"not a DWI protocol key: {key!r}") from exc
