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

from .. import dwi as dp_dwi
from ..errors import DosepaintInputError
from ..geometry import Grid, resample_array
from ..io import files
from ..registration import compose

log = logging.getLogger(__name__)


def run_library(inputs: dict, outputs: dict, *, params: dict) -> dp_dwi.Library:
    """Build the library of one protocol (``params``: protocol, b_min, adc_weighting, grid)."""
    bvalues, delta_ms, Delta_ms = dp_dwi.parse_protocol_key(params["protocol"])
    grid = {k: tuple(v) for k, v in params["grid"].items()}
    lib = dp_dwi.build_library(
        bvalues,
        delta=delta_ms / 1e3,
        Delta=Delta_ms / 1e3,
        b_min=params["b_min"],
        grid=grid,
        weighting=params.get("adc_weighting", "signal"),
    )
    with files.atomic_path(outputs["library"], suffix=".npz") as tmp:
        np.savez_compressed(tmp, **lib.arrays())
    log.info("library %s: %d entries", params["protocol"], lib.signals.shape[0])
    return lib


def _library(inputs: dict, bvals: np.ndarray, *, params: dict, pid: str) -> dp_dwi.Library:
    """The protocol's library, checked against the DWI's b-values and the configured ADC fit."""
    with np.load(inputs["library"]) as d:
        lib = dp_dwi.Library.from_arrays(d)
    if not np.allclose(np.sort(lib.bvalues), bvals):
        raise DosepaintInputError(
            f"library b-values {lib.bvalues} differ from the DWI's {bvals}", patient=pid, path=inputs["library"]
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


def _fit_and_match(signals, bvals, lib: dp_dwi.Library, *, params: dict):
    """ADC fit and library match per voxel; the flags, with voxels outside the library flagged."""
    fit = dp_dwi.fit_adc(signals, bvals, b_min=params["b_min"], min_points=params["min_points"],
                         adc_max=params["adc_max"], weighting=params.get("adc_weighting", "signal"))  # fmt: skip
    flags = fit.flags.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        sn = signals[bvals >= lib.b_min] / fit.s0[None]
    if params["method"] == "adc":
        match = dp_dwi.AdcLookup(lib, adc_sigma=params["adc_sigma"])(fit.adc, sn)
    else:
        match = dp_dwi.match_signals(np.where(fit.valid[None], sn, np.nan), lib, k=params["knn_k"])
    flags[fit.valid & ~np.isfinite(match.cell_density)] |= dp_dwi.FLAG_OUT_OF_LIBRARY
    return fit, match, flags


def _on_dose_grid(match, grid: Grid, inputs: dict) -> dict:
    """ρ and RMSE on the dose grid: intensive, so resampled NaN-free with a coverage map (valid ≥ ½)."""
    ct_to_dwi = compose(files.read_transform(inputs["t2w_to_ct"]), files.read_transform(inputs["dwi_to_t2w"]))
    dgrid = Grid.from_image(files.read_image(inputs["ct_dose"]))
    ok = np.isfinite(match.cell_density)
    coverage = resample_array(ok.astype(np.float32), grid, dgrid, transform=ct_to_dwi)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = resample_array(np.where(ok, match.cell_density, 0.0), grid, dgrid, transform=ct_to_dwi) / coverage
        rmse = resample_array(np.where(ok, match.rmse, 0.0), grid, dgrid, transform=ct_to_dwi) / coverage
    valid = coverage >= 0.5
    return {"grid": dgrid, "ct_to_dwi": ct_to_dwi, "valid": valid, "rho": np.where(valid, rho, np.nan),
            "rmse": np.where(valid, rmse, np.nan)}  # fmt: skip


def _check_gtv_coverage(valid, gtv, *, params: dict, pid: str, path) -> None:
    missing = float(np.mean(~valid[gtv])) if gtv.any() else 1.0
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


def _qc_row(fit, flags, lib, dose: dict, n, gtv, grid: Grid, *, params: dict, pid: str) -> dict:
    adc_dose = resample_array(np.nan_to_num(fit.adc), grid, dose["grid"], transform=dose["ct_to_dwi"])
    valid, rho, rmse = dose["valid"], dose["rho"], dose["rmse"]
    return {
        "patient_id": pid,
        "method": params["method"],
        "library_entries": int(lib.signals.shape[0]),
        "median_adc_gtv": float(np.median(adc_dose[gtv & valid])) if (gtv & valid).any() else np.nan,
        "median_cell_density_gtv": float(np.nanmedian(rho[gtv])) if gtv.any() else np.nan,
        "total_clonogens_gtv": float(n.sum()),
        # GTV voxels on the dose grid without a matched density (flagged DWI voxels under them).
        "flagged_fraction_gtv": float(np.mean(~valid[gtv])) if gtv.any() else np.nan,
        # All flagged voxels of the native DWI volume, air included.
        "flagged_fraction_dwi": float(np.mean(flags != 0)),
        "median_rmse_gtv": float(np.nanmedian(rmse[gtv])) if gtv.any() else np.nan,
    }


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per-patient DWI analysis.

    ``params``: patient_id, b_min, min_points, adc_max, adc_weighting, method ("adc" or "signal"),
    adc_sigma, knn_k, clonogenic_fraction, max_flagged_fraction_gtv.
    """
    pid = params["patient_id"]
    signals, grid = files.read_array(inputs["dwi"])
    bvals = np.asarray(files.read_json(inputs["dwi_json"])["bvalues_s_per_mm2"], float)
    lib = _library(inputs, bvals, params=params, pid=pid)
    fit, match, flags = _fit_and_match(signals, bvals, lib, params=params)
    maps = {"adc": fit.adc, "s0": fit.s0, "cell_radius": match.radius, "vf": match.vf,
            "cell_density": match.cell_density, "rmse": match.rmse}  # fmt: skip
    for name, arr in maps.items():
        files.write_array(arr, grid, outputs[name])
    files.write_array(flags, grid, outputs["flags"], dtype=np.uint8)
    dose = _on_dose_grid(match, grid, inputs)
    gtv = files.read_array(Path(inputs["masks_dose"]) / "GTV.nii.gz")[0] > 0
    _check_gtv_coverage(dose["valid"], gtv, params=params, pid=pid, path=inputs["dwi"])
    n = dp_dwi.clonogens(np.where(gtv, dose["rho"], 0.0), voxel_volume_mm3=dose["grid"].voxel_volume,
                         clonogenic_fraction=params["clonogenic_fraction"])  # fmt: skip
    files.write_array(dose["rho"], dose["grid"], outputs["cell_density_dose"])
    files.write_array(dose["rmse"], dose["grid"], outputs["rmse_dose"])
    files.write_array(n, dose["grid"], outputs["clonogens"])
    qc = pd.DataFrame([_qc_row(fit, flags, lib, dose, n, gtv, grid, params=params, pid=pid)])
    files.write_tsv(qc, outputs["qc"])
    return qc
