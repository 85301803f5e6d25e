"""DWI stage: multi-b DWI → ADC → microstructure → cell density and clonogens (docs/method.md §3).

Inputs (from ingest): ``dwi.nii.gz`` (native grid, b × z × y × x), ``dwi.json``,
``t2w_to_ct.tfm``, ``dwi_to_t2w.tfm``, ``ct_dose.nii.gz`` (the dose grid),
``masks_dose/`` and the protocol's ``library`` (.npz).

Outputs (``results/patients/{pid}/dwi/``): on the native DWI grid ``adc`` (mm²/s),
``s0``, ``flags`` (bit field, see :mod:`dosepaint.dwi`), ``cell_radius`` (mm),
``vf``, ``cell_density`` (cells/mm³), ``rmse`` (RMS of measured − matched S/S0);
on the dose grid ``cell_density_dose``, ``rmse_dose`` and ``clonogens``
(N = f_c·ρ·v inside the GTV, 0 elsewhere); ``qc.tsv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import dwi as dp_dwi
from ..dwi_montecarlo import interpolate_table, sphere_table
from ..dwi_noise import background_sigma, residual_sigma
from ..dwi_posterior import build_prior_library, empirical_prior, posterior
from ..errors import DosepaintInputError
from ..geometry import Grid, resample_array
from ..io import files
from ..registration import compose

log = logging.getLogger(__name__)


def run_library(inputs: dict, outputs: dict, *, params: dict) -> dp_dwi.Library:
    """Build the library of one protocol: the prior sample (``method`` posterior) or the grid.

    ``params``: protocol, b_min, adc_weighting, method, grid, prior (with n_samples and seed).
    """
    bvalues, delta_ms, Delta_ms = dp_dwi.parse_protocol_key(params["protocol"])
    kw = {"delta": delta_ms / 1e3, "Delta": Delta_ms / 1e3, "b_min": params["b_min"],
          "weighting": params.get("adc_weighting", "signal")}  # fmt: skip
    if params.get("method", "adc") == "posterior":
        prior = {k: list(v) for k, v in params["prior"].items() if k not in ("n_samples", "seed")}
        inside = _monte_carlo(bvalues, kw, prior, params) if params.get("library_model") == "monte_carlo" else None
        lib = build_prior_library(bvalues, prior=prior, n_samples=params["prior"]["n_samples"],
                                  seed=params["prior"]["seed"], intracellular=inside, **kw)  # fmt: skip
    else:
        lib = dp_dwi.build_library(bvalues, grid={k: tuple(v) for k, v in params["grid"].items()}, **kw)
    with files.atomic_path(outputs["library"], suffix=".npz") as tmp:
        np.savez_compressed(tmp, **lib.arrays())
    log.info("library %s (%s): %d entries", params["protocol"], params.get("method", "adc"), lib.signals.shape[0])
    return lib


def _monte_carlo(bvalues, kw: dict, prior: dict, params: dict):
    """The intracellular signal by random walks, tabulated over the prior's (R, D_in) ranges."""
    mc = params["monte_carlo"]
    (r_lo, r_hi), (d_lo, d_hi) = prior["radius_um"], prior["d_in"]
    radii = np.geomspace(float(r_lo), float(r_hi), int(mc["radius_points"])) * 1e-3
    d_in = np.linspace(float(d_lo), float(d_hi), int(mc["d_in_points"]))
    table = sphere_table(bvalues, radii_mm=radii, d_in=d_in, delta=kw["delta"], Delta=kw["Delta"],
                         n_walkers=int(mc["n_walkers"]), n_t=int(mc["n_t"]), seed=int(mc["seed"]))  # fmt: skip
    log.info("Monte Carlo sphere table: %d radii x %d D_in x %d b-values", radii.size, d_in.size, len(bvalues))
    return lambda r, d: interpolate_table(table, radii_mm=radii, d_in=d_in, radius=r, diffusivity=d)


def _library(inputs: dict, bvals: np.ndarray, *, timing_ms, params: dict, pid: str) -> dp_dwi.Library:
    """The protocol's library, checked against the DWI's b-values, its PGSE timing (δ, Δ in ms) and the
    configured ADC fit (the workflow names the library by the input check's record of the protocol,
    the DWI stage reads the ingest's: they must agree).
    """
    path = inputs["library"]
    if not str(path).endswith(".npz"):  # an input the workflow did not resolve (e.g. a checkpoint pending)
        raise DosepaintInputError(f"the DWI library input is {path!r}, not a library (.npz)", patient=pid)
    with np.load(path) as d:
        lib = dp_dwi.Library.from_arrays(d)
    if lib.bvalues.shape != bvals.shape or not np.allclose(lib.bvalues, bvals):
        raise DosepaintInputError(
            f"library b-values {lib.bvalues} differ from the DWI's {bvals}", patient=pid, path=inputs["library"]
        )
    if not np.allclose([lib.delta * 1e3, lib.Delta * 1e3], timing_ms):
        raise DosepaintInputError(
            f"library PGSE timing (δ {lib.delta * 1e3:g} ms, Δ {lib.Delta * 1e3:g} ms) differs from the DWI's "
            f"(δ {timing_ms[0]:g} ms, Δ {timing_ms[1]:g} ms)",
            patient=pid,
            path=inputs["library"],
        )
    weighting = params.get("adc_weighting", "signal")
    if (lib.b_min, lib.weighting) != (params["b_min"], weighting):
        raise DosepaintInputError(
            f"library ADC fit (b_min {lib.b_min}, weighting {lib.weighting}) differs from "
            f"the configured one (b_min {params['b_min']}, weighting {weighting})",
            patient=pid,
            path=inputs["library"],
        )
    return lib


def _noise_sigma(signals, bvals, fit, *, params: dict, pid: str, path) -> tuple[np.ndarray, str]:
    """σ per b-value (docs/method.md §3): the Rayleigh background, else the fit residuals."""
    method = params.get("noise", "auto")
    sigma = background_sigma(signals) if method in ("auto", "background") else None
    source = "background"
    if sigma is None and method in ("auto", "residuals"):
        sigma, source = residual_sigma(signals, bvals, adc=fit.adc, s0=fit.s0, b_min=params["b_min"]), "residuals"
    if sigma is None or not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise DosepaintInputError(
            f"no noise level from the DWI ({method}: too little background and too few fitted voxels)",
            patient=pid, path=path,
        )  # fmt: skip
    return sigma, source


def _posterior_maps(signals, bvals, fit, lib, region, *, params: dict, pid: str, path) -> tuple[dict, dict]:
    """Posterior summaries on the native grid in ``region[0]`` (fitted voxels the GTV reaches into), under the
    prior updated from the tumour voxels ``region[1]`` (``prior_update: patient``); the noise record.
    """
    sigma, source = _noise_sigma(signals, bvals, fit, params=params, pid=pid, path=path)
    sel = region[0] & fit.valid
    weights = None
    if params.get("prior_update", "patient") == "patient":
        core = region[1] & fit.valid
        # Seeded: the voxel subset it draws when the tumour has more than 4000 voxels.
        weights = empirical_prior(signals[:, core].T, sigma=sigma[None, :], library=lib, rng=np.random.default_rng(0))
    post = posterior(signals[:, sel].T, sigma=sigma[None, :], library=lib, level=params["credible_level"],
                     prior_weights=weights)  # fmt: skip
    maps = {}
    point = "cell_density" if params.get("point_estimate", "median") == "mean" else "cell_density_median"
    for key, attr in (("radius", "radius"), ("vf", "vf"), ("cell_density", point), ("rmse", "rmse"),
                      ("cell_density_lo", "cell_density_lo"), ("cell_density_hi", "cell_density_hi"),
                      ("sd_log_cell_density", "sd_log_cell_density"), ("ess", "ess")):  # fmt: skip
        maps[key] = np.full(fit.adc.shape, np.nan)
        maps[key][sel] = getattr(post, attr)
    low_ess = sel.copy()
    low_ess[sel] = post.ess < params.get("min_ess", 20)
    noise = {"noise_source": source, "noise_sigma_b_lowest": float(sigma[0]),
             "noise_sigma_b_highest": float(sigma[-1]), "low_ess_voxels": int(low_ess.sum())}  # fmt: skip
    return maps, noise


def _fit_and_match(signals, bvals, lib: dp_dwi.Library, region, *, params: dict, pid: str, path):
    """ADC fit and cell density per voxel; the flags, with voxels outside the library flagged."""
    fit = dp_dwi.fit_adc(signals, bvals, b_min=params["b_min"], min_points=params["min_points"],
                         adc_max=params["adc_max"], weighting=params.get("adc_weighting", "signal"))  # fmt: skip
    flags = fit.flags.copy()
    noise: dict = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        sn = signals[bvals >= lib.b_min] / fit.s0[None]
    if params["method"] == "posterior":
        maps, noise = _posterior_maps(signals, bvals, fit, lib, region, params=params, pid=pid, path=path)
    else:
        if params["method"] == "adc":
            match = dp_dwi.AdcLookup(lib, adc_sigma=params["adc_sigma"])(fit.adc, sn)
        else:
            match = dp_dwi.match_signals(np.where(fit.valid[None], sn, np.nan), lib, k=params["knn_k"])
        nan = np.full(fit.adc.shape, np.nan)
        maps = {"radius": match.radius, "vf": match.vf, "cell_density": match.cell_density, "rmse": match.rmse,
                "cell_density_lo": nan, "cell_density_hi": nan, "sd_log_cell_density": nan}  # fmt: skip
        flags[fit.valid & ~np.isfinite(match.cell_density)] |= dp_dwi.FLAG_OUT_OF_LIBRARY
    return fit, maps, flags, noise


def _transforms(inputs: dict) -> tuple:
    """CT → DWI points (for resampling DWI maps onto the dose grid) and the dose grid."""
    ct_to_dwi = compose(files.read_transform(inputs["t2w_to_ct"]), files.read_transform(inputs["dwi_to_t2w"]))
    return ct_to_dwi, Grid.from_image(files.read_image(inputs["ct_dose"]))


def _gtv_fraction(gtv, dgrid: Grid, grid: Grid, ct_to_dwi) -> np.ndarray:
    """The GTV's share of each DWI voxel (linear resampling of the dose-grid mask onto the DWI grid)."""
    return resample_array(gtv.astype(np.float32), dgrid, grid, transform=ct_to_dwi.GetInverse())


_DOSE_MAPS = ("cell_density", "cell_density_lo", "cell_density_hi", "rmse")


def _on_dose_grid(maps: dict, usable, grid: Grid, dgrid: Grid, ct_to_dwi, gtv) -> dict:
    """Intensive maps on the dose grid, resampled NaN-free with a coverage map (valid ≥ ½) from the
    ``usable`` DWI voxels; GTV voxels left uncovered take the nearest covered GTV voxel's values.
    """

    def res(a):
        return resample_array(a, grid, dgrid, transform=ct_to_dwi)

    coverage = res(usable.astype(np.float32))
    valid = coverage >= 0.5
    out = {"valid": valid}
    fill = gtv & ~valid
    if fill.any() and (gtv & valid).any():
        _, near = ndimage.distance_transform_edt(~(gtv & valid), sampling=dgrid.spacing[::-1], return_indices=True)
    for key in _DOSE_MAPS:
        if not np.isfinite(maps[key]).any():  # no interval without the posterior: NaN, not zero
            out[key] = np.full(dgrid.shape, np.nan)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(valid, res(np.where(usable, np.nan_to_num(maps[key]), 0.0)) / coverage, np.nan)
        if fill.any() and (gtv & valid).any():
            v[fill] = v[tuple(i[fill] for i in near)]
        out[key] = v
    return out


def _check_gtv_coverage(missing: float, *, params: dict, pid: str, path) -> None:
    limit = params.get("max_flagged_fraction_gtv", 0.5)
    if missing > limit:
        # A DWI whose field of view misses the tumour, or whose signal is unusable there: the GTV's
        # clonogens would be counted on the part that is left, biasing every TCP of this patient.
        raise DosepaintInputError(
            f"{100 * missing:.0f} % of the GTV has no cell density from the DWI (flagged voxels or outside the DWI "
            f"field of view); at most {100 * limit:.0f} % allowed (dwi.max_flagged_fraction_gtv)",
            patient=pid,
            path=path,
        )


def _partial_volume(fraction, estimated, *, threshold: float) -> np.ndarray:
    """DWI voxels at the GTV edge (0 < GTV share < ``threshold``) whose estimate is left out of the
    GTV's ρ (docs/method.md §3); none when that would leave no GTV voxel.
    """
    pv = estimated & (fraction > 0.01) & (fraction < threshold)
    return pv if (estimated & ~pv & (fraction >= threshold)).any() else np.zeros_like(pv)


def _qc_row(fit, flags, maps, dose: dict, n, gtv, missing: float, *, params: dict, noise: dict, pid: str) -> dict:
    valid, rho, adc = dose["valid"], dose["cell_density"], dose["adc"][gtv & dose["valid"]]
    sd = maps["sd_log_cell_density"]
    return {
        "patient_id": pid,
        "method": params["method"],
        "median_adc_gtv": float(np.median(adc)) if adc.size else np.nan,
        "median_cell_density_gtv": float(np.nanmedian(rho[gtv])) if gtv.any() else np.nan,
        "total_clonogens_gtv": float(n.sum()),
        # GTV voxels on the dose grid without a density from any DWI voxel (flagged, outside the DWI).
        "flagged_fraction_gtv": missing,
        # GTV voxels on the dose grid filled from their nearest neighbour (partial-volume edge left out).
        "filled_fraction_gtv": float(np.mean(~valid[gtv])) if gtv.any() else np.nan,
        # All flagged voxels of the native DWI volume, air included.
        "flagged_fraction_dwi": float(np.mean(flags != 0)),
        "partial_volume_voxels": int(np.sum((flags & dp_dwi.FLAG_PARTIAL_VOLUME) > 0)),
        "median_rmse_gtv": float(np.nanmedian(dose["rmse"][gtv])) if gtv.any() else np.nan,
        "median_sd_log_cell_density": float(np.nanmedian(sd)) if np.isfinite(sd).any() else np.nan,
        **noise,
    }


def _write_maps(fit, maps, flags, grid: Grid, dose: dict, n, dgrid: Grid, outputs: dict) -> None:
    native = {"adc": fit.adc, "s0": fit.s0, "cell_radius": maps["radius"], "vf": maps["vf"],
              **{k: maps[k] for k in ("cell_density", "rmse", "cell_density_lo", "cell_density_hi",
                                      "sd_log_cell_density")}}  # fmt: skip
    for name, arr in native.items():
        files.write_array(arr, grid, outputs[name])
    files.write_array(flags, grid, outputs["flags"], dtype=np.uint8)
    for key in ("cell_density", "cell_density_lo", "cell_density_hi", "rmse"):
        files.write_array(dose[key], dgrid, outputs[f"{key}_dose"])
    files.write_array(n, dgrid, outputs["clonogens"])


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per-patient DWI analysis.

    ``params``: patient_id, b_min, min_points, adc_max, adc_weighting, method ("posterior", "adc" or
    "signal"), credible_level, noise, min_ess, partial_volume_threshold, adc_sigma, knn_k,
    clonogenic_fraction, max_flagged_fraction_gtv.
    """
    pid = params["patient_id"]
    signals, grid = files.read_array(inputs["dwi"])
    protocol = files.read_json(inputs["dwi_json"])
    bvals = np.asarray(protocol["bvalues_s_per_mm2"], float)
    timing_ms = (protocol["pgse_delta_ms"], protocol["pgse_Delta_ms"])
    lib = _library(inputs, bvals, timing_ms=timing_ms, params=params, pid=pid)
    ct_to_dwi, dgrid = _transforms(inputs)
    gtv = files.read_array(Path(inputs["masks_dose"]) / "GTV.nii.gz")[0] > 0
    fraction = _gtv_fraction(gtv, dgrid, grid, ct_to_dwi)
    near = fraction > 0.01  # the posterior's voxels: those the GTV reaches into
    core = fraction >= max(params.get("partial_volume_threshold", 0.0), 0.5)
    fit, maps, flags, noise = _fit_and_match(signals, bvals, lib, (near, core), params=params, pid=pid,
                                             path=inputs["dwi"])  # fmt: skip
    estimated = np.isfinite(maps["cell_density"])
    pv = _partial_volume(fraction, estimated, threshold=params.get("partial_volume_threshold", 0.0))
    flags[pv] |= dp_dwi.FLAG_PARTIAL_VOLUME
    # Missing: flagged or outside the DWI; fitted voxels the posterior did not visit do not count as missing.
    available = estimated | (fit.valid & ~near) if params["method"] == "posterior" else estimated
    missing_cov = resample_array(available.astype(np.float32), grid, dgrid, transform=ct_to_dwi) < 0.5
    missing = float(np.mean(missing_cov[gtv])) if gtv.any() else 1.0
    _check_gtv_coverage(missing, params=params, pid=pid, path=inputs["dwi"])
    dose = _on_dose_grid(maps, estimated & ~pv, grid, dgrid, ct_to_dwi, gtv & ~missing_cov)
    # The GTV's ADC on the dose grid (as the QC reported it before the posterior).
    dose["adc"] = resample_array(np.nan_to_num(fit.adc), grid, dgrid, transform=ct_to_dwi)
    n = dp_dwi.clonogens(np.where(gtv, dose["cell_density"], 0.0), voxel_volume_mm3=dgrid.voxel_volume,
                         clonogenic_fraction=params["clonogenic_fraction"])  # fmt: skip
    _write_maps(fit, maps, flags, grid, dose, n, dgrid, outputs)
    qc = pd.DataFrame([_qc_row(fit, flags, maps, dose, n, gtv, missing, params=params, noise=noise, pid=pid)])
    files.write_tsv(qc, outputs["qc"])
    return qc
