"""DICOM RT export stage (rule ``dicom_rt``): the plans handed back to the clinic's tools.

Writes ``patients/{pid}/dicom_rt/``: the planning CT (``CT/``), one RTSTRUCT (``RS.dcm``: the canonical
structures and the derived regions — BTV per PET method, the GTV's cell-count tertiles, CTV − GTV),
per plan an RT Ion Plan (``RP_{plan}.dcm``) and its RTDOSE (``RD_{plan}.dcm``), and where the
robustness stage ran the worst-case dose (``RD_{plan}_worst.dcm``); all in one study and one frame of
reference.  ``dicom_rt.json`` lists the objects, the UID mode, the structures and the plans' spots.
docs/method.md §8 "The DICOM RT package".
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..errors import DosepaintInputError
from ..geometry import Grid, resample
from ..io import dicom_rt, files, rtplan
from ..layout import PLAN_NAMES
from ..planning.engine import PyRadPlanEngine
from ..planning.influence import DoseInfluence
from ..structures import mask_to_contours

log = logging.getLogger(__name__)

#: Cell-count tertile regions of the GTV: voxels by clonogen count, lowest third first.
TERTILE_NAMES = ("CELLS_T1", "CELLS_T2", "CELLS_T3")


def tertile_labels(clonogens: np.ndarray, gtv: np.ndarray) -> np.ndarray:
    """Label 1, 2, 3 of each GTV voxel by the tertile of its clonogen count (0 outside the GTV).

    Parameters
    ----------
    clonogens : ndarray (z, y, x)
        Clonogens per voxel (dose grid).
    gtv : ndarray of bool (z, y, x)
        The GTV on the same grid.
    """
    gtv = np.asarray(gtv, bool)
    labels = np.zeros(gtv.shape, np.uint8)
    values = np.asarray(clonogens, float)[gtv]
    if values.size:
        cuts = np.quantile(values, [1 / 3, 2 / 3])
        labels[gtv] = 1 + np.searchsorted(cuts, values, side="right")
    return labels


def _on_grid(array: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """A label array moved to ``dst`` by nearest neighbour (unchanged when the grids coincide)."""
    if src.same_as(dst):
        return np.asarray(array)
    img = resample(src.image(np.asarray(array, np.float32)), dst, interpolator="nearest")
    return np.rint(sitk.GetArrayFromImage(img)).astype(np.uint8)


def regions(inputs: dict, grid: Grid, *, pid: str) -> dict[str, tuple[np.ndarray, str]]:
    """Every region of the RTSTRUCT on the CT ``grid``: name → (mask, where it comes from)."""
    out: dict[str, tuple[np.ndarray, str]] = {}
    for path in sorted(Path(inputs["masks_ct"]).glob("*.nii.gz")):
        m, g = files.read_array(path)
        out[path.name[: -len(".nii.gz")]] = (_on_grid(m > 0, g, grid) > 0, "ingest")
    for path in sorted(Path(inputs["pet_masks"]).glob("*.nii.gz")) if inputs.get("pet_masks") else []:
        m, g = files.read_array(path)
        out[f"BTV_{path.name[: -len('.nii.gz')]}"] = (_on_grid(m > 0, g, grid) > 0, "PET segmentation")
    if inputs.get("clonogens"):
        n, g = files.read_array(inputs["clonogens"])
        gtv, _ = files.read_masks(inputs["masks_dose"], ["GTV"], pid=pid, needed_by="the DICOM RT export")
        labels = _on_grid(tertile_labels(n, gtv["GTV"]), g, grid)
        for i, name in enumerate(TERTILE_NAMES, start=1):
            out[name] = (labels == i, "cell-count tertile of the GTV (dose grid, nearest on the CT)")
    return out


def _patient_position(qc: dict, notes: list) -> str:
    position = (qc.get("ct") or {}).get("patient_position")
    if not position:
        notes.append("the CT has no PatientPosition: HFS assumed for the IEC beam geometry")
        return "HFS"
    return str(position)


def _uids(inputs: dict, params: dict, qc: dict, grid: Grid) -> dict:
    pid = params["patient_id"]
    if not params.get("retain_uids"):
        return dicom_rt.package_uids(pid)
    rel = (qc.get("ct") or {}).get("files")
    if not rel or not params.get("dicom_dir"):
        raise DosepaintInputError("export.retain_uids: the ingest did not record the CT files", patient=pid)
    return dicom_rt.package_uids(
        pid, source=dicom_rt.source_ct_uids([Path(params["dicom_dir"]) / r for r in rel], grid, pid=pid)
    )


def _write_plans(folder: Path, inputs: dict, *, pid: str, uids: dict, rs_sop: str, position: str) -> dict:
    """Per plan its RT Ion Plan, its RTDOSE and (where robustness ran) the worst-case RTDOSE."""
    inf = DoseInfluence.load(inputs["influence"], matrices=False)
    spots = PyRadPlanEngine.from_influence(inf).spot_map(files.read_image(inputs["ct_dose"]), inf)
    spots["radiation"] = inf.modality
    summary = {}
    for i, plan in enumerate(PLAN_NAMES):
        w = files.read_spot_weights(inputs[f"{plan}_weights"])
        ids = dicom_rt.plan_ids(pid, uids, role=f"{plan} plan", number=10 + i)
        groups = [
            {"weights": w[ph], "n_fx": w[n], "description": d, "dose_uid": dicom_rt.dose_sop(pid, f"{plan} dose")}
            for ph, n, d in (("phase1", "n_ld", "CTV_LD"), ("phase2", "n_hd", "CTV_HD"))
        ]
        rtplan.write_rt_ion_plan(
            folder / f"RP_{plan}.dcm",
            spots,
            groups,
            label=plan.upper(),
            patient_position=position,
            ids=ids,
            structure_set_uid=rs_sop,
            finish=dicom_rt.finisher(frame=uids["frame"]),
        )
        for key, suffix, role, base in (
            (f"{plan}_dose", "", "dose", 20),
            (f"{plan}_worst_dose", "_worst", "worst-case dose", 30),
        ):
            if inputs.get(key):
                dose, dgrid = files.read_array(inputs[key])
                dicom_rt.write_dose(folder / f"RD_{plan}{suffix}.dcm", dose, dgrid, pid=pid, uids=uids,
                                    role=f"{plan} {role}", number=base + i, plan_sop=ids["sop"])  # fmt: skip
        summary[plan] = {
            "beams": int(len(spots["isocentre"])),
            "spots_weighted": [int(np.sum(g["weights"] > 0)) for g in groups],
            "particles_per_fraction": [float(np.sum(g["weights"]) * rtplan.PARTICLES_PER_WEIGHT) for g in groups],
            "fractions": [int(g["n_fx"]) for g in groups],
        }
    return summary


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Write the patient's DICOM RT package and its manifest."""
    pid = params["patient_id"]
    folder = Path(outputs["package"])
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "CT").mkdir(parents=True)
    ct, grid = files.read_array(inputs["ct"])
    qc = files.read_json(inputs["ingest_qc"])
    notes: list[str] = []
    position = _patient_position(qc, notes)
    uids = _uids(inputs, params, qc, grid)
    ct_refs = dicom_rt.write_ct(ct, grid, folder / "CT", pid=pid, uids=uids, patient_position=position)
    found = regions(inputs, grid, pid=pid)
    contours = {name: mask_to_contours(m, grid) for name, (m, _) in found.items() if m.any()}
    rs_sop = dicom_rt.write_structures(folder / "RS.dcm", contours, ct_refs, grid, pid=pid, uids=uids)
    plans = _write_plans(folder, inputs, pid=pid, uids=uids, rs_sop=rs_sop, position=position)
    manifest = {
        "patient_id": pid,
        "uids": "source CT's study, frame of reference and CT UIDs retained (export.retain_uids)"
        if uids["retained"]
        else "all generated from the pseudonym (PS3.15 Basic Profile)",
        "uids_retained": bool(uids["retained"]),
        "patient_position": position,
        "notes": notes,
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*.dcm") if p.parent == folder),
        "ct_slices": len(ct_refs),
        "structures": {
            n: {"source": s, "voxels_ct": int(m.sum()), "contours": len(contours.get(n, []))}
            for n, (m, s) in found.items()
        },
        "plans": plans,
        "meterset": "NP: ScanSpotMetersetWeights are primary particles per fraction (pyRadPlan weight × 1e6)",
    }
    files.write_json(manifest, outputs["manifest"])
    log.info("%s: DICOM RT package with %d structures and %d plans", pid, len(contours), len(plans))
    return manifest


def _summary_row(m: dict) -> dict:
    """One package's row of ``cohort/dicom_rt.tsv`` from its manifest."""
    return {
        "patient_id": m["patient_id"],
        "uids": "retained (export.retain_uids)" if m["uids_retained"] else "generated (Basic Profile)",
        "patient_position": m["patient_position"],
        "ct_slices": m["ct_slices"],
        "structures": sum(1 for s in m["structures"].values() if s["contours"]),
        "objects": len(m["files"]) + m["ct_slices"],
        "worst_case_doses": sum(1 for f in m["files"] if f.endswith("_worst.dcm")),
        **{f"{plan}_spots_ld_hd": "/".join(str(n) for n in p["spots_weighted"]) for plan, p in m["plans"].items()},
        "notes": "; ".join(m["notes"]),
    }


def run_summary(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Cohort table of the packages (``cohort/dicom_rt.tsv``): one row per patient, with the UID mode; a
    patient whose export failed has a row with the file and the problem (its manifest is a placeholder).
    """
    rows = []
    for status_path, path in zip(files.as_paths(inputs["statuses"]), files.as_paths(inputs["manifests"]), strict=True):
        status = files.read_json(status_path)
        if status["status"] == "ok":
            rows.append({**_summary_row(files.read_json(path)), "status": "ok", "problem": ""})
        else:
            problem = f"{status.get('file') or ''}: {status['problem']}".lstrip(": ")
            rows.append({"patient_id": status["patient_id"], "status": status["status"], "problem": problem})
    table = pd.DataFrame(rows)
    files.write_tsv(table, outputs["summary"])
    return table
