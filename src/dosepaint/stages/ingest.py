"""Ingest stage: one patient's raw DICOM export → canonical images on the planning CT and dose grids.

Outputs (``results/patients/{pid}/ingest/``), see :func:`dosepaint.layout.ingest_outputs`:

- ``ct.nii.gz`` (HU, CT grid), ``ct_dose.nii.gz`` (HU, dose grid)
- ``masks_ct/{NAME}.nii.gz`` and ``masks_dose/{NAME}.nii.gz`` (uint8)
- ``t2w.nii.gz`` (T2w resampled on the CT grid), ``t2w_to_ct.tfm``
- ``dwi.nii.gz`` (native grid, 4-D b × z × y × x), ``dwi.json`` (b-values, PGSE timing),
  ``dwi_to_t2w.tfm``, ``dwi_dose.nii.gz`` (4-D on the dose grid), ``dwi_b0_ct.nii.gz`` (QC)
- ``pet.nii.gz`` (Bq/mL, native), ``pet_ct.nii.gz``, ``pet_dose.nii.gz``, ``pet.json`` (what SUV needs, no dates)
- ``rtdose.nii.gz`` (delivered dose, Gy(RBE) on the dose grid)
- ``qc.json``

Transforms follow SimpleITK: ``t2w_to_ct.tfm`` maps CT points to T2w points
(the transform that resamples T2w onto the CT); ``dwi_to_t2w.tfm`` maps T2w
points to DWI points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import DosepaintInputError
from ..geometry import Grid, grid_covering, resample_array
from ..io import dicom as dcm
from ..io import files
from ..logs import timed
from ..pet import SuvError, suv_factor_from_metadata
from ..registration import compose
from ..structures import CANONICAL, contours_to_mask, derived_structures, map_roi_names, shell, suggest_canonical
from .register import register_export, transform_from

log = logging.getLogger(__name__)


def _select(series, kind, *, patient, folder, required, prefer=None):
    cands = [s for s in series if s.kind == kind]
    if prefer is not None and len(cands) > 1:
        preferred = [s for s in cands if prefer(s)]
        cands = preferred or cands
    if not cands:
        if required:
            found = sorted({s.kind for s in series})
            raise DosepaintInputError(
                f"no {kind} series found (found: {', '.join(found) or 'nothing'})", patient=patient, path=folder
            )
        return None
    if len(cands) > 1:
        desc = "; ".join(f"{s.description or '?'} ({len(s.files)} files)" for s in cands)
        raise DosepaintInputError(
            f"{len(cands)} candidate {kind} series, cannot choose: {desc}", patient=patient, path=folder
        )
    return cands[0]


def discover(folder, *, patient, required_modalities) -> tuple[dict, list[str], list]:
    """Find and classify the series of one patient; returns (chosen by kind, skipped files, all series)."""
    series, skipped = dcm.scan_folder(folder, patient=patient)
    req = set(required_modalities)
    # A DWI exported as one series per b-value: merge series that share a frame of reference.
    dwis = [s for s in series if s.kind == "DWI"]
    if len(dwis) > 1 and len({s.frame_of_reference for s in dwis}) == 1:
        merged = dwis[0]
        for s in dwis[1:]:
            merged.files.extend(s.files)
            merged.bvalues |= s.bvalues
        series = [s for s in series if s.kind != "DWI"] + [merged]
    if not any(s.kind == "T2W" for s in series):
        plain_mr = [s for s in series if s.kind == "MR"]
        if len(plain_mr) == 1:  # the only non-diffusion MR stands in for the T2w
            plain_mr[0].forced_kind = "T2W"
    rtstruct = _select(series, "RTSTRUCT", patient=patient, folder=folder, required="RTSTRUCT" in req)
    ct_for = None
    if rtstruct is not None:
        _, ct_for = dcm.read_rtstruct(rtstruct.files[0], patient=patient)
    chosen = {
        "RTSTRUCT": rtstruct,
        "CT": _select(
            series,
            "CT",
            patient=patient,
            folder=folder,
            required="CT" in req,
            prefer=lambda s: ct_for is not None and s.frame_of_reference == ct_for,
        ),
        "T2W": _select(series, "T2W", patient=patient, folder=folder, required="T2W" in req),
        "DWI": _select(series, "DWI", patient=patient, folder=folder, required="DWI" in req),
        "PT": _select(series, "PT", patient=patient, folder=folder, required="PT" in req),
        "RTDOSE": _select(series, "RTDOSE", patient=patient, folder=folder, required="RTDOSE" in req),
    }
    return chosen, skipped, series


def dose_grid_for(body: np.ndarray, ct_grid: Grid, *, spacing_mm: float, margin_mm: float) -> Grid:
    """Isotropic dose grid in the CT's orientation covering the BODY (plus margin), clipped to the CT."""
    idx = np.argwhere(body)
    if idx.size == 0:
        idx = np.argwhere(np.ones(ct_grid.shape, bool))
    lo, hi = idx.min(0), idx.max(0)  # (k, j, i)
    corners = np.array([[i, j, k] for i in (lo[2], hi[2]) for j in (lo[1], hi[1]) for k in (lo[0], hi[0])], float)
    pts = (corners * np.asarray(ct_grid.spacing)) @ ct_grid.matrix.T + np.asarray(ct_grid.origin)
    return grid_covering(pts, spacing=spacing_mm, direction=ct_grid.direction, margin_mm=margin_mm)


def check_oars(masks: dict, params: dict, *, patient: str, path, rois: list[str], suggestions: dict) -> list[str]:
    """The planned OARs (``planned_oars``) absent after alias mapping: an error, unless each is in
    ``optional_oars``, then returned (and logged as a warning) so the plan says it lacks the constraint.
    """
    missing = [o for o in params.get("planned_oars", []) if o not in masks]
    hint = "".join(f"; {roi!r} may be {canon}" for roi, canon in suggestions.items())
    required = [o for o in missing if o not in params.get("optional_oars", [])]
    if required:
        raise DosepaintInputError(
            f"OAR(s) {required} constrained by planning (planning.oar_limits_gy) not found among ROIs {rois}{hint}; "
            "map them in ingest.structure_aliases, or list them in planning.optional_oars to plan without "
            "their constraint",
            patient=patient,
            path=path,
        )
    if missing:
        log.warning(
            "%s: OAR(s) %s absent: the plans will have NO constraint on them (optional_oars)%s", patient, missing, hint
        )
    return missing


def export_relative(path, folder: Path) -> str:
    """``path`` relative to the patient's DICOM folder (the export's own names, no header values)."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return Path(path).name


@dataclass
class Export:
    """One patient's export as ingest reads it: every series chosen, read and checked, nothing written.

    Volumes are (z, y, x) arrays in physical units with their :class:`~dosepaint.geometry.Grid`;
    series that are not there (and not required) are ``None``.
    """

    folder: Path
    chosen: dict
    skipped: list
    all_series: list
    ct: np.ndarray
    ct_grid: Grid
    ct_hdr: Any
    mapping: dict
    unmapped_rois: list
    masks: dict
    notes: list
    rtdose: Any = None  # (dose Gy(RBE), grid, meta)
    t2w: Any = None  # (volume, grid)
    dwi: Any = None  # (signals b × z × y × x, b-values, grid, header)
    pet: Any = None  # (Bq/mL, grid, header)
    timings: dict = field(default_factory=dict)
    alias_suggestions: dict = field(default_factory=dict)  # unmapped ROI -> probable canonical name
    missing_oars: list = field(default_factory=list)  # optional planned OARs that are absent


def _require_ct_and_rtstruct(chosen: dict, *, pid: str, folder: Path) -> None:
    for kind in ("CT", "RTSTRUCT"):  # whatever required_modalities says: the dose grid is built from them
        if chosen[kind] is None:
            raise DosepaintInputError(
                f"no {kind} series found; the ingest needs the planning CT and its RTSTRUCT (BODY defines the dose "
                "grid)",
                patient=pid,
                path=folder,
            )


def _structure_masks(contours: dict, mapping: dict, ct_grid: Grid, *, pid: str, rs_path) -> dict:
    """Each mapped ROI filled on the CT grid; an ROI without contours or empty on the grid is an error."""
    masks = {}
    for canon, roi in mapping.items():
        if not contours[roi]:
            raise DosepaintInputError(f"ROI {roi!r} ({canon}) has no contours", patient=pid, path=rs_path)
        masks[canon] = contours_to_mask(contours[roi], ct_grid, patient=pid, path=rs_path, name=roi)
        if not masks[canon].any():
            raise DosepaintInputError(f"ROI {roi!r} ({canon}) is empty on the CT grid", patient=pid, path=rs_path)
    return masks


def _read_structures(rs_path, ct_series, ct_grid: Grid, *, pid: str, params: dict) -> dict:
    """The RTSTRUCT's ROIs mapped to canonical names and filled on the CT grid, with SKIN and the derived
    structures added; the ``Export`` fields about structures.
    """
    contours, rs_for = dcm.read_rtstruct(rs_path, patient=pid)
    if rs_for and ct_series.frame_of_reference and rs_for != ct_series.frame_of_reference:
        raise DosepaintInputError(
            "RTSTRUCT references another frame of reference than the planning CT", patient=pid, path=rs_path
        )
    mapping = map_roi_names(contours, params.get("structure_aliases"), patient=pid, path=rs_path)
    missing = [s for s in params["required_structures"] if s not in mapping]
    if missing:
        raise DosepaintInputError(
            f"required structure(s) {missing} not found among ROIs {sorted(contours)}; "
            "add aliases in config ingest.structure_aliases",
            patient=pid,
            path=rs_path,
        )
    masks = _structure_masks(contours, mapping, ct_grid, pid=pid, rs_path=rs_path)
    notes = []
    if "SKIN" not in masks and "BODY" in masks:
        masks["SKIN"] = shell(masks["BODY"], ct_grid, thickness_mm=3.0)
        notes.append("SKIN derived as the 3 mm inner shell of BODY")
    unmapped = sorted(set(contours) - set(mapping.values()))
    suggestions = {roi: suggest_canonical(roi) for roi in unmapped if suggest_canonical(roi)}
    missing_oars = check_oars(masks, params, patient=pid, path=rs_path, rois=sorted(contours), suggestions=suggestions)
    if missing_oars:
        notes.append(f"OAR(s) {missing_oars} absent: planned WITHOUT their constraint (planning.optional_oars)")
    masks.update(derived_structures(masks))
    return {"mapping": mapping, "unmapped_rois": unmapped, "masks": masks, "notes": notes,
            "alias_suggestions": suggestions, "missing_oars": missing_oars}  # fmt: skip


def _read_rtdose(ex: Export, *, pid: str) -> None:
    rd_path = ex.chosen["RTDOSE"].files[0]
    dose, rd_grid, rd_meta = dcm.read_rtdose(rd_path, patient=pid)
    ct_for = ex.chosen["CT"].frame_of_reference
    if ct_for and rd_meta["FrameOfReferenceUID"] not in ("", ct_for):
        raise DosepaintInputError("RTDOSE is on another frame of reference than the planning CT", patient=pid,
                                  path=rd_path)  # fmt: skip
    ex.rtdose = (dose, rd_grid, rd_meta)


def _read_dwi(ex: Export, *, pid: str, tol: float) -> None:
    dwi_notes: list[str] = []
    signals, bvals, dwi_grid, dwi_hdr = dcm.read_dwi(ex.chosen["DWI"].files, patient=pid, tolerance_mm=tol,
                                                     notes=dwi_notes)  # fmt: skip
    ex.notes.extend(f"DWI: {n}" for n in dwi_notes)
    dwi_folder = ex.chosen["DWI"].files[0].parent
    if np.any(~np.isfinite(signals)):
        raise DosepaintInputError("DWI contains non-finite values", patient=pid, path=dwi_folder)
    negative = [float(b) for b, s in zip(bvals, signals) if np.any(s < 0)]
    if negative:
        # Magnitude images are never negative: a wrong rescale (or phase data) would corrupt the ADC.
        raise DosepaintInputError(
            f"DWI has negative signal at b = {negative} s/mm² (magnitude images "
            "expected; check RescaleSlope/RescaleIntercept)",
            patient=pid,
            path=dwi_folder,
        )
    if ex.t2w is None:
        raise DosepaintInputError("DWI needs a T2w series to be registered to the CT", patient=pid, path=ex.folder)
    ex.dwi = (signals, bvals, dwi_grid, dwi_hdr)


def _read_pet(ex: Export, *, pid: str, tol: float) -> None:
    pet, pet_grid, pet_hdr = dcm.read_volume(ex.chosen["PT"].files, patient=pid, what="PET", tolerance_mm=tol)
    if ex.chosen["PT"].frame_of_reference != ex.chosen["CT"].frame_of_reference:
        raise DosepaintInputError(
            "PET is on another frame of reference than the planning CT; PET-to-CT registration is not supported",
            patient=pid,
            path=ex.chosen["PT"].files[0],
        )
    ex.pet = (pet, pet_grid, pet_hdr)


def read_export(folder, *, patient: str, params: dict) -> Export:
    """Read and check one patient's export (no registration, no resampling, nothing written).

    Every check of the input that ingest makes is made here, in the same order, so that the input check
    (:mod:`dosepaint.stages.check`) and the ingest stop on the same first problem.

    Parameters
    ----------
    folder : path
        The patient's DICOM folder (read only).
    patient : str
        Pseudonymous patient id, for the errors.
    params : dict
        As :func:`run` (``required_modalities``, ``required_structures``, ``structure_aliases``,
        ``slice_spacing_tolerance_mm``).

    Raises
    ------
    DosepaintInputError
        Naming the patient, the file or folder, and the problem.
    """
    pid, folder, tol = patient, Path(folder), params["slice_spacing_tolerance_mm"]
    timings: dict = {}
    with timed(timings, "discover_s"):
        chosen, skipped, all_series = discover(folder, patient=pid, required_modalities=params["required_modalities"])
    _require_ct_and_rtstruct(chosen, pid=pid, folder=folder)
    with timed(timings, "ct_s"):
        ct, ct_grid, ct_hdr = dcm.read_volume(chosen["CT"].files, patient=pid, what="CT", tolerance_mm=tol)
    with timed(timings, "structures_s"):
        structures = _read_structures(chosen["RTSTRUCT"].files[0], chosen["CT"], ct_grid, pid=pid, params=params)
    ex = Export(folder=folder, chosen=chosen, skipped=skipped, all_series=all_series, ct=ct, ct_grid=ct_grid,
                ct_hdr=ct_hdr, timings=timings, **structures)  # fmt: skip
    if chosen["RTDOSE"] is not None:
        _read_rtdose(ex, pid=pid)
    if chosen["T2W"] is not None:
        with timed(timings, "t2w_read_s"):
            t2, t2_grid, _ = dcm.read_volume(chosen["T2W"].files, patient=pid, what="T2w MR", tolerance_mm=tol)
            ex.t2w = (t2, t2_grid)
    if chosen["DWI"] is not None:
        with timed(timings, "dwi_read_s"):
            _read_dwi(ex, pid=pid, tol=tol)
    if chosen["PT"] is not None:
        with timed(timings, "pet_read_s"):
            _read_pet(ex, pid=pid, tol=tol)
    return ex


def _series_qc(ex: Export) -> list:
    return [
        {"kind": s.kind, "modality": s.modality, "description": s.description, "files": len(s.files),
         "used": any(s is c for c in ex.chosen.values())}
        for s in ex.all_series
    ]  # fmt: skip


def _write_ct_and_masks(ex: Export, outputs: dict) -> dict:
    """The CT (HU, int16) and the masks on its grid; the QC records ``ct`` and ``structures``."""
    ct_grid, masks = ex.ct_grid, ex.masks
    files.write_array(np.round(ex.ct).astype(np.int16), ct_grid, outputs["ct"], dtype=np.int16)
    Path(outputs["masks_ct"]).mkdir(parents=True, exist_ok=True)
    for name, m in masks.items():
        files.write_array(m.astype(np.uint8), ct_grid, Path(outputs["masks_ct"]) / f"{name}.nii.gz", dtype=np.uint8)
    ct = {
        "shape_zyx": ct_grid.shape,
        "spacing_mm": ct_grid.spacing,
        "direction": [round(v, 6) for v in ct_grid.direction],
        "patient_position": str(ex.ct_hdr.get("PatientPosition", "")) or None,
        # The CT's files, relative to the export: the DICOM RT package reads their UIDs back where
        # export.retain_uids asks for them (no UID of the source is stored here).
        "files": sorted(export_relative(f, ex.folder) for f in ex.chosen["CT"].files),
    }
    structures = {
        "roi_mapping": ex.mapping,
        "unmapped_rois": ex.unmapped_rois,
        "alias_suggestions": ex.alias_suggestions,
        "missing_oars": ex.missing_oars,
        "absent": [c for c in CANONICAL if c not in masks],
        "volumes_cc": {n: float(m.sum() * ct_grid.voxel_volume / 1000.0) for n, m in masks.items()},
        "notes": ex.notes,
    }
    return {"ct": ct, "structures": structures}


def _write_dose_grid(ex: Export, outputs: dict, *, params: dict) -> Grid:
    """The dose grid around BODY: the CT and the masks resampled onto it, and the delivered dose."""
    dgrid = dose_grid_for(ex.masks["BODY"], ex.ct_grid, spacing_mm=params["dose_grid_mm"],
                          margin_mm=params["dose_grid_margin_mm"])  # fmt: skip
    ct_dose = np.round(resample_array(ex.ct, ex.ct_grid, dgrid)).astype(np.int16)
    files.write_array(ct_dose, dgrid, outputs["ct_dose"], dtype=np.int16)
    Path(outputs["masks_dose"]).mkdir(parents=True, exist_ok=True)
    for name, m in ex.masks.items():
        md = resample_array(m.astype(np.float32), ex.ct_grid, dgrid) >= 0.5
        files.write_array(md.astype(np.uint8), dgrid, Path(outputs["masks_dose"]) / f"{name}.nii.gz", dtype=np.uint8)
    if ex.rtdose is not None:
        dose, rd_grid, _ = ex.rtdose
        files.write_array(resample_array(dose, rd_grid, dgrid), dgrid, outputs["rtdose"])
    return dgrid


def _rtdose_qc(ex: Export) -> dict:
    dose, _, rd_meta = ex.rtdose
    return {k: rd_meta[k] for k in ("DoseType", "DoseUnits", "DoseSummationType")} | {"max_gy": float(dose.max())}


def _write_t2w(ex: Export, regs: dict, outputs: dict) -> tuple[sitk.Transform, dict]:
    """T2w on the CT grid by the input check's registration; the CT → T2w transform and the QC record."""
    t2, t2_grid = ex.t2w
    ct_to_t2 = transform_from(regs["t2w_to_ct"]["transform"])
    files.write_transform(ct_to_t2, outputs["t2w_to_ct"])
    files.write_array(resample_array(t2, t2_grid, ex.ct_grid, transform=ct_to_t2), ex.ct_grid, outputs["t2w"])
    return ct_to_t2, {
        "shape_zyx": t2_grid.shape,
        "spacing_mm": t2_grid.spacing,
        "same_frame_as_ct": ex.chosen["T2W"].frame_of_reference == ex.chosen["CT"].frame_of_reference,
        "registration": {k: v for k, v in regs["t2w_to_ct"].items() if k != "transform"},
    }


def dwi_protocol(dwi: tuple, *, params: dict) -> dict:
    """The protocol of a read DWI (``Export.dwi``, :func:`dosepaint.io.dicom.read_dwi`'s tuple): b-values
    (s/mm²) and PGSE timing (ms; the header's, else the config's ``default_pgse_*``).

    The input check records it and the workflow names the patient's DWI library by it
    (:func:`dosepaint.layout.protocol_key`); the ingest writes the same record to ``dwi.json``.
    """
    _, bvals, _, dwi_hdr = dwi
    timing = dcm.pgse_timing_ms(dwi_hdr)
    source = "header (private dosepaint block)" if timing else "config defaults"
    delta, Delta = timing or (params["default_pgse_delta_ms"], params["default_pgse_Delta_ms"])
    return {"bvalues_s_per_mm2": [float(b) for b in bvals], "pgse_delta_ms": float(delta),
            "pgse_Delta_ms": float(Delta), "timing_source": source}  # fmt: skip


def _write_dwi(ex: Export, regs: dict, ct_to_t2, dgrid: Grid, outputs: dict, *, params: dict) -> dict:
    """DWI as read, its b0 on the CT grid, all b on the dose grid (DWI → T2w → CT) and its protocol record."""
    signals, bvals, dwi_grid, _ = ex.dwi
    files.write_array(signals, dwi_grid, outputs["dwi"])
    protocol = dwi_protocol(ex.dwi, params=params)
    t2_to_dwi = transform_from(regs["dwi_to_t2w"]["transform"])
    files.write_transform(t2_to_dwi, outputs["dwi_to_t2w"])
    ct_to_dwi = compose(ct_to_t2, t2_to_dwi)
    b0_ct = resample_array(signals[0], dwi_grid, ex.ct_grid, transform=ct_to_dwi)
    files.write_array(b0_ct, ex.ct_grid, outputs["dwi_b0_ct"])
    dwi_dose = np.stack([resample_array(s, dwi_grid, dgrid, transform=ct_to_dwi) for s in signals])
    files.write_array(dwi_dose, dgrid, outputs["dwi_dose"])
    files.write_json({**protocol, "shape_bzyx": signals.shape, "spacing_mm": dwi_grid.spacing}, outputs["dwi_json"])
    return {
        "bvalues": bvals,
        "shape_zyx": dwi_grid.shape,
        "spacing_mm": dwi_grid.spacing,
        "timing_source": protocol["timing_source"],
        "registration_to_t2w": {k: v for k, v in regs["dwi_to_t2w"].items() if k != "transform"},
    }


def _write_pet(ex: Export, dgrid: Grid, outputs: dict, *, pid: str) -> dict:
    """PET as read, on the CT and dose grids, and its SUV record (``pet.json``)."""
    pet, pet_grid, pet_hdr = ex.pet
    files.write_array(pet, pet_grid, outputs["pet"])
    files.write_array(resample_array(pet, pet_grid, ex.ct_grid), ex.ct_grid, outputs["pet_ct"])
    files.write_array(resample_array(pet, pet_grid, dgrid), dgrid, outputs["pet_dose"])
    # The SUV factor is settled here, where the header is; an unusable header does not stop the
    # ingest (CT, MR and dose are still good) but is kept, and the PET stage fails on it.
    pet_json = suv_record(pet_hdr)
    if pet_json["suv_error"]:
        log.warning("%s: no SUV from %s: %s", pid, ex.chosen["PT"].files[0], pet_json["suv_error"])
    # Absolute dates and times are identifying (PS3.15): only the interval is kept.
    pet_json["header_file"] = export_relative(ex.chosen["PT"].files[0], ex.folder)
    files.write_json(pet_json, outputs["pet_json"])
    return {"shape_zyx": pet_grid.shape, "spacing_mm": pet_grid.spacing, **pet_json}


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Ingest one patient.

    Parameters
    ----------
    inputs : dict
        ``dicom_dir``: the patient's DICOM folder (read only); ``check``: the input check's record, whose
        registrations are reused.
    outputs : dict
        Paths named as in :func:`dosepaint.layout.ingest_outputs` (``masks_ct`` and
        ``masks_dose`` are folders).
    params : dict
        ``patient_id``, ``required_modalities``, ``required_structures``,
        ``structure_aliases``, ``dose_grid_mm``, ``dose_grid_margin_mm``,
        ``slice_spacing_tolerance_mm``, ``default_pgse_delta_ms``,
        ``default_pgse_Delta_ms`` (the PGSE timing where the DWI header has none), ``registration`` (dict).

    Returns
    -------
    dict
        The QC record written to ``outputs["qc"]``.
    """
    pid, timings = params["patient_id"], dict[str, float]()
    with timed(timings, "total_s"):
        ex = read_export(inputs["dicom_dir"], patient=pid, params=params)
        timings.update(ex.timings)
        qc = {"patient_id": pid, "skipped_non_dicom_files": len(ex.skipped), "series": _series_qc(ex)}
        with timed(timings, "write_ct_structures_s"):
            qc.update(_write_ct_and_masks(ex, outputs))
        dgrid = _write_dose_grid(ex, outputs, params=params)
        qc["dose_grid"] = {"shape_zyx": dgrid.shape, "spacing_mm": dgrid.spacing, "origin_mm": dgrid.origin}
        if ex.rtdose is not None:
            qc["rtdose"] = _rtdose_qc(ex)
        with timed(timings, "registration_s"):  # registered by the input check, whose record has the transforms
            regs = registrations(ex, inputs, patient=pid, reg=params["registration"])
        if ex.t2w is not None:
            ct_to_t2, qc["t2w"] = _write_t2w(ex, regs, outputs)
        if ex.dwi is not None:
            with timed(timings, "dwi_s"):
                qc["dwi"] = _write_dwi(ex, regs, ct_to_t2, dgrid, outputs, params=params)
        if ex.pet is not None:
            with timed(timings, "pet_s"):
                qc["pet"] = _write_pet(ex, dgrid, outputs, pid=pid)
    qc["timings"] = timings
    files.write_json(qc, outputs["qc"])
    log.info("ingested %s in %.1f s", pid, timings["total_s"])
    return qc


def registrations(ex, inputs: dict, *, patient: str, reg: dict) -> dict:
    """The export's registrations: from the input check's record when it has them (the check registers
    with the same config), else computed here (:func:`dosepaint.stages.register.register_export`).
    """
    if inputs.get("check"):
        record = files.read_json(inputs["check"])
        if record.get("status") == "included" and record.get("registration") is not None:
            return record["registration"]
    return register_export(ex, patient=patient, reg=reg)


def suv_record(pet_hdr) -> dict:
    """The SUV factor of a PET header and what it was made of, or why there is none (``suv_error``)."""
    try:
        _, record = suv_factor_from_metadata(dcm.pet_metadata(pet_hdr))
        record["suv_error"] = None
    except SuvError as exc:
        record = {"suv_factor": None, "suv_error": str(exc), "suv_error_attribute": exc.attribute}
    return record
