"""Validation of pipeline outputs against the synthetic cohort's ground truth.

Used by benchmarks and tests only; pipeline stages never read truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import files
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
    out = {"patient_id": truth["patient_id"], "gtv_volume_cc": vol, "gtv_volume_truth_cc": truth["gtv_volume_cc"],
           "gtv_volume_error_pct": 100.0 * (vol - truth["gtv_volume_cc"]) / truth["gtv_volume_cc"]}
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
