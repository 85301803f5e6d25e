"""The de-identified DICOM RT package of a patient: planning CT, RTSTRUCT, RTDOSE per plan, one study and
one frame of reference (docs/method.md §8 "The DICOM RT package").

UIDs (PS3.15 Basic Profile, action U): every UID of the package is generated from the pseudonym and
the object's role (pydicom's hashing generator), the same on every run; none is copied from the
source export.  With ``export.retain_uids`` the source CT's StudyInstanceUID, FrameOfReferenceUID,
SeriesInstanceUID and SOPInstanceUIDs are kept instead, so that the structures, plans and doses can
be imported next to the original CT in the clinic's TPS.

Attributes the IODs require but the Basic Profile empties (dates, names, accession number: Type 2,
action Z) are present with zero length, so the objects validate (dciodvfy) and identify nobody.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..errors import DosepaintInputError
from ..geometry import Grid
from ..structures import CANONICAL
from .deidentify import deidentification_attributes
from .dicom_write import (
    CT_IMAGE,
    referenced,
    rtdose_sop,
    slice_refs,
    uid,
    write_image_series,
    write_rtdose,
    write_rtstruct,
)
from .rtplan import RT_ION_PLAN

#: Type 2 attributes of the modules every object of the package has (Patient, General Study, series
#: modules, Frame of Reference, General Equipment), empty by the Basic Profile.
_TYPE2_EMPTY = (
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "OperatorsName",
)

#: RT ROI Interpreted Type of the targets and the body; the other canonical structures are ORGAN, every
#: region the analysis derived (CTV − GTV, BTVs, cell-count tertiles) CONTROL (not for planning).
INTERPRETED_TYPES = {"GTV": "GTV", "CTV_HD": "CTV", "CTV_LD": "CTV", "BODY": "EXTERNAL"}


def interpreted_type(name: str) -> str:
    """RTROIInterpretedType of the ROI ``name`` (:data:`INTERPRETED_TYPES`)."""
    return INTERPRETED_TYPES.get(name, "ORGAN" if name in CANONICAL else "CONTROL")


def _package_uid(pid: str, role: str) -> str:
    """A UID of the package, from the pseudonym and the role of what it names (the same on every run)."""
    return uid("dosepaint", pid, "rt package", role)


def package_uids(pid: str, *, source: dict | None = None) -> dict:
    """UIDs of the package: generated from ``pid``, or the source CT's where ``source`` is given.

    ``source`` is :func:`source_ct_uids`' record (``retain_uids``).
    """
    if source is not None:
        return {
            "study": source["study"],
            "frame": source["frame"],
            "ct_series": source["series"],
            "ct_sops": source["sops"],
            "retained": True,
        }
    return {
        "study": _package_uid(pid, "study"),
        "frame": _package_uid(pid, "frame"),
        "ct_series": _package_uid(pid, "ct"),
        "ct_sops": None,
        "retained": False,
    }


def source_ct_uids(paths, grid: Grid, *, pid: str) -> dict:
    """The source CT's study, frame of reference, series and per-slice SOP UIDs (slice order of ``grid``).

    Raises
    ------
    DosepaintInputError
        When the files do not form one series with one slice per slice of ``grid``.
    """
    tags = ["StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "SOPInstanceUID", "ImagePositionPatient"]
    heads = [pydicom.dcmread(p, stop_before_pixels=True, specific_tags=tags) for p in paths]
    normal = grid.matrix[:, 2]
    origin = np.asarray(grid.origin, float)
    k = [
        int(round(float(np.dot(np.asarray(h.ImagePositionPatient, float) - origin, normal)) / grid.spacing[2]))
        for h in heads
    ]
    if sorted(k) != list(range(grid.shape[0])) or len({h.SeriesInstanceUID for h in heads}) != 1:
        raise DosepaintInputError(
            "export.retain_uids: the CT files found do not match the ingested CT slice for slice", patient=pid
        )
    order = np.argsort(k)
    return {
        "study": str(heads[0].StudyInstanceUID),
        "frame": str(heads[0].FrameOfReferenceUID),
        "series": str(heads[0].SeriesInstanceUID),
        "sops": [str(heads[i].SOPInstanceUID) for i in order],
    }


def identity(pid: str, uids: dict) -> dict:
    """Patient and study attributes shared by every object: the pseudonym only."""
    patient = {"PatientID": pid, "PatientName": pid, **deidentification_attributes()}
    study = {"StudyInstanceUID": uids["study"], "StudyID": "dosepaint"}
    return {"patient": patient, "study": study}


def finisher(*, frame: str | None, extra=None):
    """The function that gives an object the package's common attributes before it is saved."""

    def finish(ds: Dataset) -> None:
        for key in _TYPE2_EMPTY:
            if key not in ds:
                setattr(ds, key, None)
        ds.Manufacturer = "dosepaint"
        ds.InstanceNumber = ds.get("InstanceNumber", 1)
        if frame is not None:
            ds.FrameOfReferenceUID = frame
            ds.PositionReferenceIndicator = None
        if extra is not None:
            extra(ds)

    return finish


def write_ct(
    ct: np.ndarray, grid: Grid, folder, *, pid: str, uids: dict, patient_position: str
) -> list[tuple[str, float]]:
    """The planning CT (HU) as CT Image slices; returns (SOPInstanceUID, position along the normal)."""
    ident = identity(pid, uids)
    sops = uids["ct_sops"]

    def per_slice(ds: Dataset, k: int) -> None:
        if sops is not None:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sops[k]
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.PatientPosition = patient_position
        ds.Laterality = ds.AcquisitionNumber = ds.KVP = None
        finisher(frame=uids["frame"])(ds)

    series = {"SeriesInstanceUID": uids["ct_series"], "SeriesNumber": 1, "SeriesDescription": "planning CT"}
    return slice_refs(
        write_image_series(
            ct,
            grid,
            Path(folder),
            modality="CT",
            sop_class=CT_IMAGE,
            rescale="hu",
            file_pattern="CT_{index:04d}.dcm",
            extra_per_slice=per_slice,
            series=series,
            **ident,
        ),
        grid,
    )


def write_structures(path, contours: dict, ct_refs, grid: Grid, *, pid: str, uids: dict) -> str:
    """RTSTRUCT of ``contours`` (ROI name → list of (n, 3) LPS arrays) on the package's CT."""

    def extra(ds: Dataset) -> None:
        ds.StructureSetDate = ds.StructureSetTime = None
        ds.StructureSetLabel = "dosepaint"
        for roi, obs in zip(ds.StructureSetROISequence, ds.RTROIObservationsSequence, strict=True):
            obs.RTROIInterpretedType = interpreted_type(roi.ROIName)
            obs.ROIInterpreter = None
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; as TPSs write)
        study.ReferencedSOPInstanceUID = uids["study"]
        series = Dataset()
        series.SeriesInstanceUID = uids["ct_series"]
        series.ContourImageSequence = Sequence([referenced(CT_IMAGE, sop) for sop, _ in ct_refs])
        study.RTReferencedSeriesSequence = Sequence([series])
        ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence = Sequence([study])

    return write_rtstruct(
        path,
        structures=contours,
        ct_refs=list(ct_refs),
        ct_normal=grid.matrix[:, 2],
        frame_of_reference=uids["frame"],
        series=_series(pid, "structures", 2, "dosepaint structures"),
        finish=finisher(frame=uids["frame"], extra=extra),
        **identity(pid, uids),
    )


def _series(pid: str, role: str, number: int, description: str) -> dict:
    return {"SeriesInstanceUID": _package_uid(pid, role), "SeriesNumber": number, "SeriesDescription": description[:64]}


def write_dose(
    path, dose: np.ndarray, grid: Grid, *, pid: str, uids: dict, role: str, number: int, plan_sop: str
) -> str:
    """RTDOSE (Gy(RBE), 16-bit) of ``dose`` referencing the RT Ion Plan ``plan_sop``."""

    def extra(ds: Dataset) -> None:
        ds.ReferencedRTPlanSequence = Sequence([referenced(RT_ION_PLAN, plan_sop)])

    return write_rtdose(
        path,
        np.nan_to_num(np.asarray(dose, float)),  # RTDOSE holds no NaN: 0 where nothing was computed
        grid,
        frame_of_reference=uids["frame"],
        series=_series(pid, role, number, role),
        bits=16,
        finish=finisher(frame=uids["frame"], extra=extra),
        **identity(pid, uids),
    )


def plan_ids(pid: str, uids: dict, *, role: str, number: int) -> dict:
    """``ids`` of :func:`~dosepaint.io.rtplan.write_rt_ion_plan` for the plan ``role``."""
    series = _series(pid, role, number, role)
    return {**identity(pid, uids), "series": series, "sop": uid(series["SeriesInstanceUID"], "rtplan")}


def dose_sop(pid: str, role: str) -> str:
    """The SOPInstanceUID :func:`write_dose` gives the dose ``role`` (known before it is written)."""
    return rtdose_sop(_package_uid(pid, role))
