"""Diffusion-weighted DICOM as vendors write it: b-value tags, derived images, Enhanced MR frames.

Only :mod:`dosepaint.io.dicom` uses this module. pydicom reads the attributes; it has no notion of
where each vendor keeps the b-value or which images of a DWI series are derived maps, and nibabel's
DICOM wrappers read one file at a time without the Enhanced MR per-frame b-value (its
``MultiframeWrapper`` needs a single stack), hence this module.

- b-value: DiffusionBValue (0018,9087) at the top level or in the frame's MR Diffusion sequence,
  else Siemens (0019,100C), Philips (2001,1003), GE (0043,1039) first value (GE adds 10⁹ to flag
  "use as is"; the remainder is the b-value).
- derived images: ADC, exponential ADC, FA and calculated-b maps are never signals and are skipped;
  trace-weighted images are skipped only where the series also holds the directional images of the
  same b-value (they are their combination).
- Enhanced MR (one file, many frames): each frame becomes a single-frame dataset with its position,
  orientation, pixel spacing, rescale, b-value and frame type, so the classic reader stacks it.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

SIEMENS_CREATOR = "SIEMENS MR HEADER"
PHILIPS_CREATOR = "Philips Imaging DD 001"
GE_CREATOR = "GEMS_PARM_01"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"

#: ImageType / FrameType values of derived diffusion maps (never signal).
DERIVED_MAPS = {"ADC", "EADC", "EXP", "EXPONENTIAL", "FA", "CALC_BVALUE", "CALCULATED", "ENHANCED"}
#: ImageType / FrameType values of trace-weighted (direction-combined) images.
TRACE = {"TRACEW", "TRACE", "ISOTROPIC"}


def _number(value) -> float | None:
    """A float from a DICOM value that may be bytes (implicit VR read as UN), a list or a string."""
    if isinstance(value, bytes):
        if len(value) == 8:
            return float(np.frombuffer(value, "<f8")[0])
        if len(value) == 4:
            return float(np.frombuffer(value, "<f4")[0])
        value = value.decode("ascii", "ignore").strip("\x00 ").split("\\")[0]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _private(ds: Dataset, group: int, offset: int, creator: str):
    try:
        return ds.get_private_item(group, offset, creator).value
    except KeyError:
        return None


def bvalue_of(ds: Dataset) -> float | None:
    """Diffusion b-value (s/mm²) of one image or frame dataset, or None (see the module's list)."""
    if (0x0018, 0x9087) in ds:
        b = _number(ds[0x0018, 0x9087].value)
        if b is not None:
            return b
    if "MRDiffusionSequence" in ds and len(ds.MRDiffusionSequence):
        b = _number(ds.MRDiffusionSequence[0].get("DiffusionBValue"))
        if b is not None:
            return b
    for group, offset, creator in ((0x0019, 0x0C, SIEMENS_CREATOR), (0x2001, 0x03, PHILIPS_CREATOR)):
        b = _number(_private(ds, group, offset, creator))
        if b is not None:
            return b
    b = _number(_private(ds, 0x0043, 0x39, GE_CREATOR))
    if b is not None:
        return float(b % 1e9) if b >= 1e9 else b
    return None


def image_types(ds: Dataset) -> set[str]:
    """ImageType and, for an Enhanced MR frame, FrameType values, upper case."""
    values = [*ds.get("ImageType", []), *ds.get("FrameType", [])]
    return {str(v).upper() for v in values}


def is_derived_map(ds: Dataset) -> bool:
    """An ADC / exponential / FA / calculated-b map: never a diffusion-weighted signal."""
    return bool(image_types(ds) & DERIVED_MAPS)


def is_trace(ds: Dataset) -> bool:
    return bool(image_types(ds) & TRACE)


def is_enhanced(ds: Dataset) -> bool:
    """A multi-frame Enhanced MR object (per-frame functional groups)."""
    return str(ds.get("SOPClassUID", "")) == ENHANCED_MR or "PerFrameFunctionalGroupsSequence" in ds


def _group(shared: Dataset | None, frame: Dataset, name: str):
    """A functional group's first item, per frame before shared (PS3.3 C.7.6.16)."""
    for source in (frame, shared):
        if source is not None and name in source and len(source[name].value):
            return source[name].value[0]
    return None


def frames(ds: Dataset, pixels: np.ndarray | None = None) -> list[Dataset]:
    """The frames of an Enhanced MR dataset as single-frame datasets (header only, plus ``pixels``).

    Each frame dataset has ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
    SliceThickness, Rows, Columns, RescaleSlope/Intercept, DiffusionBValue (when the frame has one),
    FrameType, ``filename`` (the file's, with ``#frame`` appended) and, where ``pixels`` (frames × rows
    × columns, stored values) is given, the frame's stored values as ``_dp_pixels``. A frame without
    a position or orientation raises KeyError naming the functional group.
    """
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    out = []
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        f = Dataset()
        pos, ori = _group(shared, frame, "PlanePositionSequence"), _group(shared, frame, "PlaneOrientationSequence")
        meas = _group(shared, frame, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None:
            missing = [
                n for n, g in (("PlanePosition", pos), ("PlaneOrientation", ori), ("PixelMeasures", meas)) if g is None
            ]
            raise KeyError(f"frame {i + 1} has no {', '.join(missing)} functional group")
        f.ImagePositionPatient = pos.ImagePositionPatient
        f.ImageOrientationPatient = ori.ImageOrientationPatient
        f.PixelSpacing = meas.PixelSpacing
        f.SliceThickness = meas.get("SliceThickness", ds.get("SliceThickness", 1.0))
        f.Rows, f.Columns = ds.Rows, ds.Columns
        rescale = _group(shared, frame, "PixelValueTransformationSequence")
        f.RescaleSlope = rescale.get("RescaleSlope", 1.0) if rescale is not None else ds.get("RescaleSlope", 1.0)
        f.RescaleIntercept = (
            rescale.get("RescaleIntercept", 0.0) if rescale is not None else ds.get("RescaleIntercept", 0.0)
        )
        diffusion = _group(shared, frame, "MRDiffusionSequence")
        b = None if diffusion is None else _number(diffusion.get("DiffusionBValue"))
        if b is not None:
            f.DiffusionBValue = b
        ftype = _group(shared, frame, "MRImageFrameTypeSequence")
        if ftype is not None and "FrameType" in ftype:
            f.FrameType = ftype.FrameType
        f.filename = f"{getattr(ds, 'filename', '?')}#{i + 1}"
        if pixels is not None:
            f._dp_pixels = pixels[i]
        out.append(f)
    return out
