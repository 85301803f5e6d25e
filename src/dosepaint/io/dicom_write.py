"""DICOM writing: image series, RTSTRUCT and RTDOSE (the synthetic cohort's exports and the plans'
RT Dose). Reading is :mod:`dosepaint.io.dicom`, de-identification :mod:`dosepaint.io.deidentify`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from ..geometry import Grid
from . import files as _files
from .deidentify import deidentification_attributes
from .dicom import SYNTH_CREATOR

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
CONTOUR_DATA = 0x30060050


def uid(*parts) -> str:
    """Deterministic DICOM UID from ``parts`` (pydicom's hashing generator)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _new_dataset(sop_class: str, sop_uid: str, *, patient: dict, study: dict, series: dict) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(uid("dosepaint", "implementation"))
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    for key, value in {**patient, **study, **series}.items():
        setattr(ds, key, value)
    return ds


def _save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` under a temporary name beside ``path``, then rename it (never half-written)."""
    with _files.atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def write_image_series(
    volume: np.ndarray,
    grid: Grid,
    folder,
    *,
    modality: str,
    sop_class: str,
    patient: dict,
    study: dict,
    series: dict,
    file_pattern: str = "{index:04d}.dcm",
    dtype=np.uint16,
    rescale: str = "global",
    extra_per_slice=None,
    instance_offset: int = 0,
    per_slice_tags=None,
) -> list[tuple[str, Path]]:
    """Write a 3-D volume (z, y, x) as single-frame DICOM slices.

    Parameters
    ----------
    volume : ndarray (z, y, x)
        Real-valued image in physical units (HU, a.u., Bq/mL).
    grid : Grid
        Geometry; its direction's first two columns become ImageOrientationPatient.
    rescale : {"global", "per_slice", "hu"}
        How stored values map to physical ones: one slope for the series, one
        per slice (PET), or HU with slope 1 and intercept −1024 (CT).
    per_slice_tags : callable, optional
        ``f(k) -> dict`` of additional attributes for slice k.

    Returns
    -------
    list of (SOPInstanceUID, path)
    """
    folder = Path(folder)
    info = np.iinfo(dtype)
    global_slope = (float(np.nanmax(np.abs(volume))) or 1.0) / (info.max * 0.9) if rescale == "global" else None
    written = []
    for k in range(volume.shape[0]):
        plane = np.asarray(volume[k], float)
        slope, intercept = _rescale(plane, rescale, info=info, global_slope=global_slope)
        stored = np.clip(np.round((plane - intercept) / slope), info.min, info.max).astype(dtype)
        sop = uid(series["SeriesInstanceUID"], "slice", instance_offset + k)
        ds = _new_dataset(sop_class, sop, patient=patient, study=study, series=series)
        ds.Modality = modality
        ds.InstanceNumber = instance_offset + k + 1
        _set_plane(ds, grid, k)
        _set_pixels(ds, stored, slope=slope, intercept=intercept, signed=info.min < 0)
        if modality == "CT":
            ds.RescaleType = "HU"
        if per_slice_tags is not None:
            for key, value in per_slice_tags(k).items():
                setattr(ds, key, value)
        if extra_per_slice is not None:
            extra_per_slice(ds, k)
        path = folder / file_pattern.format(index=instance_offset + k + 1, uid=sop)
        _save(ds, path)
        written.append((str(ds.SOPInstanceUID), path))  # the hooks may have set it (retained UIDs)
    return written


def slice_refs(written: list, grid: Grid) -> list[tuple[str, float]]:
    """(SOPInstanceUID, position along the slice normal, mm) of each slice :func:`write_image_series`
    wrote on ``grid``: the ``ct_refs`` of :func:`write_rtstruct`.
    """
    normal = grid.matrix[:, 2]
    origin = np.asarray(grid.origin)
    return [(sop, float(np.dot(origin + normal * grid.spacing[2] * k, normal))) for k, (sop, _) in enumerate(written)]


def referenced(sop_class: str, sop_uid: str) -> Dataset:
    """A Referenced SOP item (ReferencedSOPClassUID, ReferencedSOPInstanceUID)."""
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def rtdose_sop(series_uid: str) -> str:
    """The SOPInstanceUID :func:`write_rtdose` gives the RTDOSE of series ``series_uid``."""
    return uid(series_uid, "rtdose")


def _rescale(plane: np.ndarray, rescale: str, *, info, global_slope) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a slice: HU (1, −1024), per slice (PET) or the series' slope."""
    if rescale == "hu":
        return 1.0, -1024.0
    if rescale == "per_slice":
        return (float(np.nanmax(np.abs(plane))) or 1.0) / (info.max * 0.9), 0.0
    return global_slope, 0.0


def _set_plane(ds: Dataset, grid: Grid, k: int) -> None:
    """Image Plane module of slice ``k`` of ``grid``."""
    mat = grid.matrix
    iop = [float(v) for v in np.concatenate([mat[:, 0], mat[:, 1]])]
    pos = np.asarray(grid.origin) + mat[:, 2] * grid.spacing[2] * k
    ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
    ds.ImageOrientationPatient = [round(v, 6) for v in iop]
    ds.PixelSpacing = [float(grid.spacing[1]), float(grid.spacing[0])]
    ds.SliceThickness = float(grid.spacing[2])


def _set_pixels(ds: Dataset, stored: np.ndarray, *, slope: float, intercept: float, signed: bool) -> None:
    """Image Pixel module (monochrome) and the rescale of stored values to physical ones."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = 8 * stored.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = f"{intercept:.10g}"
    ds.PixelData = stored.tobytes()


def add_private_pgse_timing(ds: Dataset, *, delta_ms: float, Delta_ms: float) -> None:
    """Record PGSE δ and Δ (ms) in the dosepaint private block (0029,xx10/11)."""
    block = ds.private_block(0x0029, SYNTH_CREATOR, create=True)
    block.add_new(0x10, "DS", f"{delta_ms:.4g}")
    block.add_new(0x11, "DS", f"{Delta_ms:.4g}")


def radiopharmaceutical_sequence(
    *, name: str, total_dose_bq: float, half_life_s: float, start_time: str, start_datetime: str | None = None
) -> Sequence:
    """RadiopharmaceuticalInformationSequence with the attributes SUVbw needs."""
    rp = Dataset()
    rp.Radiopharmaceutical = name
    rp.RadionuclideTotalDose = f"{total_dose_bq:.6g}"
    rp.RadionuclideHalfLife = f"{half_life_s}"
    rp.RadiopharmaceuticalStartTime = start_time
    if start_datetime:
        rp.RadiopharmaceuticalStartDateTime = start_datetime
    return Sequence([rp])


def _raw_decimal_strings(tag: int, values: np.ndarray) -> RawDataElement:
    """A DS element of ``values`` ("%.3f", explicit VR little endian) as the bytes pydicom would write.

    Set as a list, pydicom makes a validated ``DSfloat`` of every value: 3 of a synthetic patient's
    22 CPU s (0.6 million numbers) and 6.8 CPU s for a DICOM RT export's 1.5 million, against 1.4 s
    joined here into the same bytes (measured: ``benchmarks/stage_speedups.py``, CHANGELOG). pydicom
    has no bulk encoder for DS values.
    """
    text = "\\".join([f"{v:.3f}" for v in values]).encode("ascii")
    if len(text) % 2:
        text += b" "  # DICOM values have an even length, text VRs padded with a space (PS3.5 6.2)
    return RawDataElement(Tag(tag), "DS", len(text), text, 0, False, True)


def _contour_item(pts, ct_refs, *, positions: np.ndarray, normal: np.ndarray) -> Dataset:
    """One CLOSED_PLANAR contour referencing the CT slice nearest its plane."""
    pts = np.asarray(pts, float)
    c = Dataset()
    c.ContourGeometricType = "CLOSED_PLANAR"
    c.NumberOfContourPoints = len(pts)
    c[CONTOUR_DATA] = _raw_decimal_strings(CONTOUR_DATA, pts.ravel())
    # The item is marked as encoded the way it will be written (explicit VR little endian, the
    # default character set of an item without its own): pydicom then writes the raw bytes as they
    # are instead of decoding them first (``Dataset.set_original_encoding``); otherwise it decodes.
    c.set_original_encoding(False, True, default_encoding)
    plane = float(np.dot(pts[0], normal))
    c.ContourImageSequence = Sequence([referenced(CT_IMAGE, ct_refs[int(np.argmin(np.abs(positions - plane)))][0])])
    return c


def write_rtstruct(
    path,
    *,
    structures: dict,
    ct_refs: list[tuple[str, float]],
    ct_normal,
    frame_of_reference: str,
    patient: dict,
    study: dict,
    series: dict,
    finish=None,
) -> str:
    """Write an RTSTRUCT with CLOSED_PLANAR contours; returns its SOPInstanceUID.

    Parameters
    ----------
    structures : dict
        ROI name -> list of (n, 3) arrays of LPS points (mm), one per closed contour.
    ct_refs : list of (SOPInstanceUID, slice position along ``ct_normal``, mm)
        The CT slices; each contour references the nearest one.
    ct_normal : array_like (3,)
        The CT slice normal (row × column direction).
    finish : callable, optional
        ``f(ds)`` applied before saving (the RT package's attributes).
    """
    sop = uid(series["SeriesInstanceUID"], "rtstruct")
    ds = _new_dataset(RT_STRUCT, sop, patient=patient, study=study, series=series)
    ds.Modality = "RTSTRUCT"
    ds.StructureSetLabel = "synthetic"
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = frame_of_reference
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    positions = np.array([p for _, p in ct_refs])
    normal = np.asarray(ct_normal, float)
    roi_seq, contour_seq, obs_seq = [], [], []
    for number, (name, contours) in enumerate(structures.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_seq.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [int(v) for v in np.random.default_rng(number).integers(0, 255, 3)]
        items = [_contour_item(pts, ct_refs, positions=positions, normal=normal) for pts in contours]
        rc.ContourSequence = Sequence(items)
        contour_seq.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = "ORGAN"
        obs_seq.append(obs)
    ds.StructureSetROISequence = Sequence(roi_seq)
    ds.ROIContourSequence = Sequence(contour_seq)
    ds.RTROIObservationsSequence = Sequence(obs_seq)
    if finish is not None:
        finish(ds)
    _save(ds, Path(path))
    return sop


def write_rtdose(
    path,
    dose: np.ndarray,
    grid: Grid,
    *,
    frame_of_reference: str,
    patient: dict,
    study: dict,
    series: dict,
    dose_type: str = "EFFECTIVE",
    summation: str = "PLAN",
    bits: int = 32,
    finish=None,
) -> str:
    """Write a multi-frame RTDOSE (Gy or Gy(RBE) for EFFECTIVE), unsigned ``bits`` (32 or 16) with
    DoseGridScaling; returns its SOPInstanceUID.

    GridFrameOffsetVector is relative to ImagePositionPatient (first value 0).  ``finish(ds)``, if
    given, is applied before saving.
    """
    sop = rtdose_sop(series["SeriesInstanceUID"])
    ds = _new_dataset(RT_DOSE, sop, patient=patient, study=study, series=series)
    ds.Modality = "RTDOSE"
    ds.FrameOfReferenceUID = frame_of_reference
    mat = grid.matrix
    ds.ImagePositionPatient = [round(float(v), 4) for v in grid.origin]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in np.concatenate([mat[:, 0], mat[:, 1]])]
    ds.PixelSpacing = [float(grid.spacing[1]), float(grid.spacing[0])]
    ds.SliceThickness = float(grid.spacing[2])
    ds.GridFrameOffsetVector = [round(float(grid.spacing[2] * k), 4) for k in range(dose.shape[0])]
    ds.NumberOfFrames = dose.shape[0]
    ds.FrameIncrementPointer = (0x3004, 0x000C)
    ds.Rows, ds.Columns = dose.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = int(bits)
    ds.HighBit = int(bits) - 1
    ds.PixelRepresentation = 0
    top = 2 ** int(bits) - 1
    scaling = max(float(np.max(dose)), 1e-6) / top * 1.0001
    ds.DoseGridScaling = f"{scaling:.10g}"
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    ds.DoseSummationType = summation
    stored = np.clip(np.round(dose / float(ds.DoseGridScaling)), 0, top).astype(np.uint32 if bits == 32 else np.uint16)
    ds.PixelData = stored.tobytes()
    if finish is not None:
        finish(ds)
    _save(ds, Path(path))
    return sop


#: PS3.15 Annex E Basic Profile attributes (Table E.1-1) that identify a patient, a visit or a
#: place; an exported file may carry PatientName/PatientID only as the pseudonym and StudyID only as
#: a dummy value, and none of the others (dates and times included: action Z/X/D of the profile).
def export_rtdose(
    path,
    dose: np.ndarray,
    grid: Grid,
    *,
    patient_id: str,
    frame_of_reference: str | None,
    description: str,
    dose_type: str = "EFFECTIVE",
) -> None:
    """Export a computed dose (Gy(RBE) for EFFECTIVE) as RTDOSE for TPS viewers and DVH tools.

    Only the pseudonymous ``patient_id`` (from the patient sheet) identifies the patient: no
    DICOM identity of the source files is copied.  ``frame_of_reference`` links the dose to the
    planning CT when known; otherwise a new UID is derived from the pseudonym.
    """
    series_uid = uid("dosepaint", patient_id, description)
    write_rtdose(
        path,
        dose,
        grid,
        frame_of_reference=frame_of_reference or uid("dosepaint", patient_id, "frame"),
        patient={"PatientID": patient_id, "PatientName": patient_id, **deidentification_attributes()},
        study={"StudyInstanceUID": uid("dosepaint", patient_id, "study"), "StudyID": "dosepaint"},
        series={"SeriesInstanceUID": series_uid, "SeriesDescription": description[:64], "SeriesNumber": 1},
        dose_type=dose_type,
    )
