"""Round-trip checks of a DICOM RT package by tools no one here wrote: dicom3tools' dciodvfy,
dicompyler-core (structures and DVH) and pyRadPlan (a forward calculation of the plan's spots)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pydicom.dicomio

pydicom.dicomio.read_file = pydicom.dcmread  # dicompyler-core 0.5.6 still calls the pydicom 2 name


def dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines for one file (it writes its report on stderr)."""
    exe = shutil.which("dciodvfy")
    assert exe, "dciodvfy not found: install dicom3tools (apt-get install dicom3tools; README, tests)"
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error") or "Assertion" in ln]


def dicompyler_masks(rs_path, grid, names) -> dict:
    """dicompyler-core's reading of the RTSTRUCT's ROIs ``names``, filled on an axial CT ``grid`` (its
    own point-in-polygon test per contour, holes by exclusive or, as in its DVH calculation)."""
    from dicompylercore import dicomparser, dvhcalc

    assert np.allclose(np.abs(grid.matrix), np.eye(3)), (
        "this reader check needs an axial CT (rows and columns along x, y)"
    )
    rs = dicomparser.DicomParser(str(rs_path))
    x, y, z = grid.world()
    points = np.column_stack([x[0].ravel(), y[0].ravel()])  # pixel centres (x, y), row by row
    zs = z[:, 0, 0]
    # dicompyler-core reads only the lengths of the look-up table when it reshapes the test's result
    lut = {"lut": (np.arange(grid.shape[2]), np.arange(grid.shape[1])), "rows": grid.shape[1],
           "columns": grid.shape[2], "x_lut_index": 0}  # fmt: skip
    out = {}
    for number, roi in rs.GetStructures().items():
        if roi["name"] not in names:
            continue
        mask = np.zeros(grid.shape, bool)
        for z, plane in rs.GetStructureCoordinates(number).items():
            k = int(np.argmin(np.abs(zs - float(z))))
            for contour in plane:
                mask[k] ^= dvhcalc.get_contour_mask(lut, number, points, [p[:2] for p in contour["data"]])
        out[roi["name"]] = mask
    return out


def dicompyler_dvh(rs_path, rd_path, name: str):
    """dicompyler-core's DVH of ROI ``name`` from the package's RTSTRUCT and an RTDOSE."""
    from dicompylercore import dicomparser, dvhcalc

    rois = dicomparser.DicomParser(str(rs_path)).GetStructures()
    number = next(k for k, v in rois.items() if v["name"] == name)
    return dvhcalc.get_dvh(str(rs_path), str(rd_path), number)


def dvh_differences(patient: Path) -> dict:
    """dicompyler-core's Dmean, D95 and D50 of GTV, CTV_HD and CTV_LD from the package's RTSTRUCT and each
    plan's RTDOSE, relative to ours (``plans/metrics.tsv``): (plan, structure, metric) → theirs / ours − 1."""
    import pandas as pd

    pkg = patient / "dicom_rt"
    ours = pd.read_csv(patient / "plans" / "metrics.tsv", sep="\t").set_index("plan")
    out = {}
    for plan in ("uniform", "de", "dr"):
        for s in ("GTV", "CTV_HD", "CTV_LD"):
            d = dicompyler_dvh(pkg / "RS.dcm", pkg / f"RD_{plan}.dcm", s)
            for name, theirs in (("Dmean", d.mean), ("D95", d.D95.value), ("D50", d.D50.value)):
                out[(plan, s, name)] = theirs / ours.loc[plan, f"{s}_{name}"] - 1
    return out


def region_dice(patient: Path) -> dict:
    """Dice of dicompyler-core's reading of each region of the package's RTSTRUCT against our mask of it on
    the CT grid (:func:`dosepaint.stages.export.regions`): name → Dice."""
    from dosepaint.io import files
    from dosepaint.stages.export import regions

    _, grid = files.read_array(patient / "ingest" / "ct.nii.gz")
    folders = {"masks_ct": "ingest/masks_ct", "pet_masks": "pet/masks", "clonogens": "dwi/clonogens.nii.gz",
               "masks_dose": "ingest/masks_dose"}  # fmt: skip
    ours = {n: m for n, (m, _) in regions({k: patient / v for k, v in folders.items()}, grid, pid=patient.name).items()
            if m.any()}  # fmt: skip
    back = dicompyler_masks(patient / "dicom_rt" / "RS.dcm", grid, list(ours))
    return {n: dice(back[n], ours[n]) for n in ours}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float(np.sum(a & b)) / max(float(a.sum() + b.sum()), 1.0)


def recomputed_dose(rp_path, patient: Path) -> np.ndarray:
    """The course dose (Gy(RBE)) of an exported RT Ion Plan by pyRadPlan: the plan re-read by pydicom,
    its spots matched back to pyRadPlan's, each fraction group computed forward and summed."""
    from dosepaint.io import files, rtplan
    from dosepaint.planning import iec
    from dosepaint.planning.engine import PyRadPlanEngine
    from dosepaint.planning.influence import DoseInfluence
    from dosepaint.planning.plans import course_doses

    inf = DoseInfluence.load(patient / "plans" / "influence.npz", matrices=False)
    ct = files.read_image(patient / "ingest" / "ct_dose.nii.gz")
    engine = PyRadPlanEngine.from_influence(inf)
    spots = engine.spot_map(ct, inf)
    plan = rtplan.read_rt_ion_plan(rp_path)
    weights = [iec.weights_on_spots(g["beams"], spots) for g in plan["fraction_groups"]]
    body, _ = files.read_array(patient / "ingest" / "masks_dose" / "BODY.nii.gz")
    fwd = engine.forward_many(ct, inf, weights, body=body > 0)
    return sum(
        course_doses(f, inf, n_fx=g["n_fx"], constant_rbe=1.1)["rbe_total"]
        for f, g in zip(fwd, plan["fraction_groups"], strict=True)
    )
