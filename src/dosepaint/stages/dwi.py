"""DWI stage: multi-b DWI → ADC → microstructure → cell density and clonogens (SCIENCE.md §3).

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


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per-patient DWI analysis.

    ``params``: patient_id, b_min, min_points, adc_max, adc_weighting, method ("adc" or "signal"),
    adc_sigma, knn_k, clonogenic_fraction.
    """
    pid = params["patient_id"]
    signals, grid = files.read_array(inputs["dwi"])
    meta = files.read_json(inputs["dwi_json"])
    bvals = np.asarray(meta["bvalues_s_per_mm2"], float)
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
    fit = dp_dwi.fit_adc(
        signals,
        bvals,
        b_min=params["b_min"],
        min_points=params["min_points"],
        adc_max=params["adc_max"],
        weighting=weighting,
    )
    flags = fit.flags.copy()
    use = bvals >= lib.b_min
    with np.errstate(invalid="ignore", divide="ignore"):
        sn = signals[use] / fit.s0[None]
    if params["method"] == "adc":
        match = dp_dwi.AdcLookup(lib, adc_sigma=params["adc_sigma"])(fit.adc, sn)
    else:
        match = dp_dwi.match_signals(np.where(fit.valid[None], sn, np.nan), lib, k=params["knn_k"])
    flags[fit.valid & ~np.isfinite(match.cell_density)] |= dp_dwi.FLAG_OUT_OF_LIBRARY

    for name, arr in (
        ("adc", fit.adc),
        ("s0", fit.s0),
        ("cell_radius", match.radius),
        ("vf", match.vf),
        ("cell_density", match.cell_density),
        ("rmse", match.rmse),
    ):
        files.write_array(arr, grid, outputs[name])
    files.write_array(flags, grid, outputs["flags"], dtype=np.uint8)

    # ρ and RMSE are intensive: resample them (NaN-free, with a coverage map), then recompute N.
    ct_to_dwi = compose(files.read_transform(inputs["t2w_to_ct"]), files.read_transform(inputs["dwi_to_t2w"]))
    dgrid = Grid.from_image(files.read_image(inputs["ct_dose"]))
    ok = np.isfinite(match.cell_density)
    coverage = resample_array(ok.astype(np.float32), grid, dgrid, transform=ct_to_dwi)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho_dose = resample_array(np.where(ok, match.cell_density, 0.0), grid, dgrid, transform=ct_to_dwi) / coverage
        rmse_dose = resample_array(np.where(ok, match.rmse, 0.0), grid, dgrid, transform=ct_to_dwi) / coverage
    valid_dose = coverage >= 0.5
    rho_dose = np.where(valid_dose, rho_dose, np.nan)
    rmse_dose = np.where(valid_dose, rmse_dose, np.nan)
    gtv = files.read_array(Path(inputs["masks_dose"]) / "GTV.nii.gz")[0] > 0
    missing = float(np.mean(~valid_dose[gtv])) if gtv.any() else 1.0
    if missing > params.get("max_flagged_fraction_gtv", 0.5):
        # A DWI whose field of view misses the tumour, or whose signal is unusable there: the GTV's
        # clonogens would be counted on the part that is left, biasing every TCP of this patient.
        raise DosepaintInputError(
            f"{100 * missing:.0f} % of the GTV has no cell density from the DWI (flagged "
            "voxels or outside the DWI field of view); at most "
            f"{100 * params.get('max_flagged_fraction_gtv', 0.5):.0f} % allowed "
            "(dwi.max_flagged_fraction_gtv)",
            patient=pid,
            path=inputs["dwi"],
        )
    n = dp_dwi.clonogens(
        np.where(gtv, rho_dose, 0.0),
        voxel_volume_mm3=dgrid.voxel_volume,
        clonogenic_fraction=params["clonogenic_fraction"],
    )
    files.write_array(rho_dose, dgrid, outputs["cell_density_dose"])
    files.write_array(rmse_dose, dgrid, outputs["rmse_dose"])
    files.write_array(n, dgrid, outputs["clonogens"])

    adc_dose = resample_array(np.nan_to_num(fit.adc), grid, dgrid, transform=ct_to_dwi)
    qc = pd.DataFrame(
        [
            {
                "patient_id": pid,
                "method": params["method"],
                "library_entries": int(lib.signals.shape[0]),
                "median_adc_gtv": float(np.median(adc_dose[gtv & valid_dose])) if (gtv & valid_dose).any() else np.nan,
                "median_cell_density_gtv": float(np.nanmedian(rho_dose[gtv])) if gtv.any() else np.nan,
                "total_clonogens_gtv": float(n.sum()),
                # GTV voxels on the dose grid without a matched density (flagged DWI voxels under them).
                "flagged_fraction_gtv": float(np.mean(~valid_dose[gtv])) if gtv.any() else np.nan,
                # All flagged voxels of the native DWI volume, air included.
                "flagged_fraction_dwi": float(np.mean(flags != 0)),
                "median_rmse_gtv": float(np.nanmedian(rmse_dose[gtv])) if gtv.any() else np.nan,
            }
        ]
    )
    files.write_tsv(qc, outputs["qc"])
    return qc
