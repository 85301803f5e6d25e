"""Validation of pipeline outputs against the synthetic cohort's ground truth.

Used by benchmarks and tests only; pipeline stages never read truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.stats import spearmanr

from .geometry import resample
from .io import files
from .radiobiology import poisson_tcp
from .registration import compose, rigid_error


def ingest_errors(ingest: str | Path, truth_dir: str | Path, *, subsample: int = 20) -> dict:
    """GTV volume and registration errors of one ingested synthetic patient.

    Parameters
    ----------
    ingest : path-like
        ``results/patients/{pid}/ingest``.
    truth_dir : path-like
        ``results/synthetic/truth/{pid}``.

    Registration errors are target registration errors over GTV voxels
    (every ``subsample``-th), comparing the estimated CT→T2w and CT→DWI point
    maps with the generator's true misalignments.

    Returns
    -------
    dict
        gtv_volume_cc, gtv_volume_truth_cc, gtv_volume_error_pct,
        t2w_tre_mean_mm, t2w_tre_max_mm, t2w_rotation_deg,
        dwi_tre_mean_mm, dwi_tre_max_mm, dwi_rotation_deg.
    """
    ingest, truth_dir = Path(ingest), Path(truth_dir)
    truth = files.read_json(truth_dir / "truth.json")
    gtv, grid = files.read_array(ingest / "masks_ct" / "GTV.nii.gz")
    vol = float(gtv.sum() * grid.voxel_volume / 1000.0)
    out = {
        "patient_id": truth["patient_id"],
        "gtv_volume_cc": vol,
        "gtv_volume_truth_cc": truth["gtv_volume_cc"],
        "gtv_volume_error_pct": 100.0 * (vol - truth["gtv_volume_cc"]) / truth["gtv_volume_cc"],
    }
    gtv_true, tgrid = files.read_array(truth_dir / "masks" / "GTV.nii.gz")
    x, y, z = tgrid.world()
    pts = np.stack([c[gtv_true > 0] for c in (x, y, z)], axis=1)[::subsample]
    mr_to_ct = files.read_transform(truth_dir / "mr_to_ct.tfm")
    dwi_to_t2 = files.read_transform(truth_dir / "dwi_to_t2w.tfm")
    true_ct_to_t2 = mr_to_ct.GetInverse()
    est_ct_to_t2 = files.read_transform(ingest / "t2w_to_ct.tfm")
    e = rigid_error(est_ct_to_t2, true_ct_to_t2, pts)
    out.update(t2w_tre_mean_mm=e["mean_mm"], t2w_tre_max_mm=e["max_mm"], t2w_rotation_deg=e["rotation_deg"])
    if (ingest / "dwi_to_t2w.tfm").exists():
        true_ct_to_dwi = compose(true_ct_to_t2, dwi_to_t2.GetInverse())
        est_ct_to_dwi = compose(est_ct_to_t2, files.read_transform(ingest / "dwi_to_t2w.tfm"))
        e = rigid_error(est_ct_to_dwi, true_ct_to_dwi, pts)
        out.update(dwi_tre_mean_mm=e["mean_mm"], dwi_tre_max_mm=e["max_mm"], dwi_rotation_deg=e["rotation_deg"])
    return out


def dwi_errors(ingest: str | Path, dwi: str | Path, truth_dir: str | Path) -> dict:
    """Cell-density and clonogen errors of one synthetic patient's DWI stage, and their TCP effect.

    Truth ρ (CT grid) is resampled onto the dose grid like the estimate; both
    clonogen maps use the GTV of the dose grid and the truth's clonogenic
    fraction, so only ρ differs.  TCPs use the truth's α, β and the ingested
    delivered dose.

    Returns
    -------
    dict
        spearman_rho_gtv, median_rel_error_rho_gtv, clonogens_est, clonogens_true,
        clonogens_error_pct, tcp_est, tcp_true, tcp_diff_pp, mean_rho_est and mean_rho_true (GTV,
        cells/mm³), coverage_90 (true ρ inside the posterior interval; NaN without one).
    """
    ingest, dwi, truth_dir = Path(ingest), Path(dwi), Path(truth_dir)
    truth = files.read_json(truth_dir / "truth.json")
    model = truth["model"]
    est, grid = files.read_array(dwi / "cell_density_dose.nii.gz")
    true = sitk.GetArrayFromImage(resample(files.read_image(truth_dir / "cell_density.nii.gz"), grid))
    gtv, _ = files.read_array(ingest / "masks_dose" / "GTV.nii.gz")
    gtv = gtv > 0
    ok = gtv & np.isfinite(est) & (true > 0)
    dose, _ = files.read_array(ingest / "rtdose.nii.gz")
    v = grid.voxel_volume
    n_est = model["clonogenic_fraction"] * np.where(gtv, np.nan_to_num(est), 0.0) * v
    n_true = model["clonogenic_fraction"] * np.where(gtv, true, 0.0) * v
    kw = dict(alpha=model["alpha"], beta=model["beta"], n_fractions=model["n_fractions"])
    tcp_est, tcp_true = poisson_tcp(n_est, dose, **kw), poisson_tcp(n_true, dose, **kw)
    return {
        "patient_id": truth["patient_id"],
        "spearman_rho_gtv": float(spearmanr(est[ok], true[ok])[0]),
        "median_rel_error_rho_gtv": float(np.median(np.abs(est[ok] / true[ok] - 1))),
        "clonogens_est": float(n_est.sum()),
        "clonogens_true": float(n_true.sum()),
        "clonogens_error_pct": float(100 * (n_est.sum() / n_true.sum() - 1)),
        "tcp_est": tcp_est,
        "tcp_true": tcp_true,
        "tcp_diff_pp": 100 * (tcp_est - tcp_true),
        "mean_rho_est": float(np.mean(est[ok])),
        "mean_rho_true": float(np.mean(true[ok])),
        "coverage_90": _coverage(dwi, grid, true, ok),
    }


def _coverage(dwi: Path, grid, true, ok) -> float:
    """Share of GTV voxels whose true ρ lies in the posterior interval (NaN without one)."""
    paths = [dwi / f"cell_density_{end}_dose.nii.gz" for end in ("lo", "hi")]
    if not all(p.exists() for p in paths):
        return float("nan")
    lo, hi = (files.read_array(p)[0] for p in paths)
    inside = ok & np.isfinite(lo) & np.isfinite(hi)
    if not inside.any():
        return float("nan")
    return float(np.mean((true[inside] >= lo[inside]) & (true[inside] <= hi[inside])))
