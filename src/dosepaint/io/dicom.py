"""DICOM reading: with :mod:`dosepaint.io.diffusion` (vendor diffusion tags, Enhanced MR frames),
:mod:`dosepaint.io.dicom_write` and :mod:`dosepaint.io.deidentify`, the only modules that know pydicom.

Readers return arrays indexed (z, y, x) with a :class:`~dosepaint.geometry.Grid`
in patient coordinates (LPS, mm), plus metadata dictionaries that never
contain patient-identity attributes (names, ids, birth dates, institutions,
dates of visits beyond what a computation needs).
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import DosepaintInputError
from ..geometry import Grid
from . import diffusion
from .diffusion import bvalue_of  # noqa: F401 (part of this module's reading API)

#: Private block in which the synthetic cohort records PGSE timing (ms).
SYNTH_CREATOR = "DOSEPAINT SYNTH"

# ---------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------


@dataclass
class SeriesInfo:
    """A DICOM series found on disk (identity-free)."""

    uid: str
    modality: str
    sop_class: str
    frame_of_reference: str | None
    description: str
    number: str = ""
    files: list[Path] = field(default_factory=list)
    bvalues: set = field(default_factory=set)
    image_types: set = field(default_factory=set)
    forced_kind: str | None = None

    @property
    def label(self) -> str:
        """How errors name the series: its number and description (no identity attributes)."""
        return f"series {self.number or '?'} '{self.description or '?'}'"

    @property
    def kind(self) -> str:
        """One of CT, T2W, DWI, MR, PT, RTSTRUCT, RTDOSE, OTHER."""
        if self.forced_kind:
            return self.forced_kind
        if self.modality in {"CT", "PT", "RTSTRUCT", "RTDOSE"}:
            return self.modality
        if self.modality == "MR":
            desc = self.description.lower()
            if self.bvalues or "DIFFUSION" in self.image_types or any(t in desc for t in ("dwi", "diff", "ep2d_diff")):
                return "DWI"
            if "t2" in desc:
                return "T2W"
            return "MR"
        return "OTHER"


def dcmread(path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file; files without the 128-byte preamble / file meta are accepted
    when they still parse to a dataset with a SOPClassUID (older exports).
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
        if "SOPClassUID" not in ds:
            raise
        return ds


def scan_folder(folder, *, patient: str | None = None) -> tuple[list[SeriesInfo], list[str]]:
    """Find every DICOM series below ``folder``, any nesting, any file names.

    Returns
    -------
    series : list of SeriesInfo
    skipped : list of str
        Files that are not DICOM (relative paths), for the QC record.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DosepaintInputError("DICOM folder not found", patient=patient, path=folder)
    series: dict[str, SeriesInfo] = {}
    skipped = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError):
                skipped.append(str(path.relative_to(folder)))
                continue
            if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds:
                skipped.append(str(path.relative_to(folder)))
                continue
            s = series.get(ds.SeriesInstanceUID)
            if s is None:
                s = series[ds.SeriesInstanceUID] = SeriesInfo(
                    uid=str(ds.SeriesInstanceUID),
                    modality=str(ds.get("Modality", "")),
                    sop_class=str(ds.SOPClassUID),
                    frame_of_reference=ds.get("FrameOfReferenceUID"),
                    description=str(ds.get("SeriesDescription", "")),
                    number=str(ds.get("SeriesNumber", "") or ""),
                )
            s.files.append(path)
            for image in _frame_headers(ds, patient=patient) if s.modality == "MR" else [ds]:
                b = bvalue_of(image) if s.modality == "MR" else None
                if b is not None:
                    s.bvalues.add(round(b, 1))
                s.image_types.update(diffusion.image_types(image))
    return list(series.values()), skipped


# ---------------------------------------------------------------------------
# Image volumes
# ---------------------------------------------------------------------------


def _read_full(path, *, patient):
    try:
        return dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DosepaintInputError(f"cannot read DICOM file ({exc})", patient=patient, path=path) from exc


def _frame_headers(ds: Dataset, *, patient) -> list[Dataset]:
    """The frames of an Enhanced MR header (:func:`diffusion.frames`), or ``[ds]`` for a single frame."""
    if not diffusion.is_enhanced(ds):
        return [ds]
    try:
        return diffusion.frames(ds)
    except (KeyError, AttributeError) as exc:
        raise DosepaintInputError(
            f"Enhanced MR object without frame geometry ({exc})", patient=patient, path=getattr(ds, "filename", None)
        ) from exc


def _expand_frames(datasets: list[Dataset], *, patient) -> list[Dataset]:
    """Single-frame datasets of every image: Enhanced MR objects split into their frames (with pixels)."""
    out = []
    for ds in datasets:
        if not diffusion.is_enhanced(ds):
            out.append(ds)
            continue
        frames = _frame_headers(ds, patient=patient)
        stored = _stored_pixels(ds, patient=patient)
        stored = stored.reshape(len(frames), *stored.shape[-2:])
        for f, arr in zip(frames, stored):
            f._dp_pixels = arr
        out.extend(frames)
    return out


def _stored_pixels(ds: Dataset, *, patient) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several types for truncated, odd or undecodable pixel data
        raise DosepaintInputError(
            f"unreadable pixel data ({exc})", patient=patient, path=getattr(ds, "filename", None)
        ) from exc


def _pixels(ds: Dataset, *, patient) -> np.ndarray:
    if hasattr(ds, "_dp_pixels"):  # a frame of an Enhanced MR object, decoded with its file
        arr = np.asarray(ds._dp_pixels, np.float64)
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        return arr * slope + float(ds.get("RescaleIntercept", 0.0) or 0.0)
    try:
        arr = ds.pixel_array.astype(np.float64)
    except Exception as exc:  # pydicom raises several types for truncated or odd pixel data
        raise DosepaintInputError(
            f"unreadable pixel data ({exc})", patient=patient, path=getattr(ds, "filename", None)
        ) from exc
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def _is_mosaic(ds: Dataset) -> bool:
    return "MOSAIC" in [str(t).upper() for t in ds.get("ImageType", [])]


def _mosaic_volume(ds: Dataset, *, patient) -> tuple[np.ndarray, Grid, float | None]:
    """Unpack a Siemens mosaic with nibabel's wrapper (which also reads the CSA header)."""
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = wrapper_from_data(ds)
        data = wrapper.get_data()  # (rows, cols, slices), rescaled
        affine = np.asarray(wrapper.affine)
        b = wrapper.b_value
    if b is None:
        b = bvalue_of(ds)
    arr = np.transpose(np.asarray(data, float), (2, 0, 1))  # (slice, row, column)
    cols = [affine[:3, 1], affine[:3, 0], affine[:3, 2]]  # column index, row index, slice index
    spacing = tuple(float(np.linalg.norm(c)) for c in cols)
    mat = np.column_stack([c / s for c, s in zip(cols, spacing)])
    grid = Grid(arr.shape, spacing, tuple(float(v) for v in affine[:3, 3]), tuple(mat.ravel()))
    return arr, grid, (None if b is None else float(b))


def _stack_slices(datasets: list[Dataset], *, patient, tolerance_mm: float, what: str):
    """Sort single-frame slices along their normal and check the geometry."""
    iops = {tuple(np.round(np.asarray(d.ImageOrientationPatient, float), 4)) for d in datasets}
    if len(iops) != 1:
        raise DosepaintInputError(
            f"{what}: slices with different ImageOrientationPatient {sorted(iops)}",
            patient=patient,
            path=Path(datasets[0].filename).parent,
        )
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([np.dot(np.asarray(d.ImagePositionPatient, float), normal) for d in datasets])
    order = np.argsort(pos)
    datasets = [datasets[i] for i in order]
    pos = pos[order]
    shapes = {(int(d.Rows), int(d.Columns)) for d in datasets}
    if len(shapes) != 1:
        raise DosepaintInputError(
            f"{what}: slices of different sizes {sorted(shapes)}",
            patient=patient,
            path=Path(datasets[0].filename).parent,
        )
    if len(datasets) > 1:
        gaps = np.diff(pos)
        if np.any(gaps < 1e-3):
            dup = Path(datasets[int(np.argmin(gaps)) + 1].filename)
            raise DosepaintInputError(
                f"{what}: two slices at the same position ({pos[int(np.argmin(gaps))]:.2f} mm); mixed series?",
                patient=patient,
                path=dup,
            )
        step = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - step) > tolerance_mm)
        if bad.size:
            i = int(bad[0])
            kind = "missing slice(s)" if gaps[i] > step else "inconsistent slice spacing"
            raise DosepaintInputError(
                f"{what}: {kind}: gap of {gaps[i]:.3f} mm between slices at {pos[i]:.2f} and {pos[i + 1]:.2f} mm "
                f"(expected {step:.3f} mm)",
                patient=patient,
                path=Path(datasets[i + 1].filename),
            )
    else:
        step = float(datasets[0].get("SliceThickness", 1.0) or 1.0)
    ps = [float(v) for v in datasets[0].PixelSpacing]
    grid = Grid.from_orientation(
        shape=(len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)),
        spacing=(ps[1], ps[0], step),
        origin=np.asarray(datasets[0].ImagePositionPatient, float),
        iop=iop,
    )
    return datasets, grid


#: What CT padding (PixelPaddingValue, the area outside the reconstructed field of view) becomes (HU).
CT_PADDING_HU = -1000.0


def _padding_mask(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """Stored values that are padding (PixelPaddingValue, up to PixelPaddingRangeLimit), or None."""
    if "PixelPaddingValue" not in ds:
        return None
    lo = int(ds.PixelPaddingValue)
    hi = int(ds.get("PixelPaddingRangeLimit", lo))
    lo, hi = min(lo, hi), max(lo, hi)
    return (stored >= lo) & (stored <= hi)


def read_volume(files, *, patient=None, what="image series", tolerance_mm: float = 0.05):
    """Read a single-frame (or Enhanced multi-frame) image series into a volume.

    For a CT (``what="CT"``), padding voxels (PixelPaddingValue, the area outside the reconstructed
    field of view, often −2000 or −3024 after rescale) become air, :data:`CT_PADDING_HU`.

    Returns
    -------
    volume : ndarray (z, y, x), float32, physical units (after RescaleSlope/Intercept)
    grid : Grid
    first : pydicom.Dataset
        The first slice's header (without pixel data), for metadata extraction.
    """
    datasets = [_read_full(f, patient=patient) for f in files]
    if len(datasets) == 1 and _is_mosaic(datasets[0]):
        arr, grid, _ = _mosaic_volume(datasets[0], patient=patient)
        return arr.astype(np.float32), grid, datasets[0]
    datasets = _expand_frames(datasets, patient=patient)
    datasets, grid = _stack_slices(datasets, patient=patient, tolerance_mm=tolerance_mm, what=what)
    vol = np.stack([_pixels(d, patient=patient) for d in datasets]).astype(np.float32)
    if what == "CT":
        for k, d in enumerate(datasets):
            pad = _padding_mask(d, _stored_pixels(d, patient=patient)) if "PixelPaddingValue" in d else None
            if pad is not None:
                vol[k][pad] = CT_PADDING_HU
    first = datasets[0]
    if "PixelData" in first:
        del first.PixelData
    return vol, grid, first


def _signal_images(datasets: list[Dataset], notes: list | None) -> list[Dataset]:
    """The diffusion-weighted signals of a DWI series: derived maps (ADC, exponential, FA, calculated b)
    dropped, and trace-weighted images where the directional images of the same b-value are there.
    """
    derived = [d for d in datasets if diffusion.is_derived_map(d)]
    kept = [d for d in datasets if not diffusion.is_derived_map(d)]
    directional = {round(bvalue_of(d) or 0.0, 1) for d in kept if not diffusion.is_trace(d)}
    trace = [
        d
        for d in kept
        if diffusion.is_trace(d) and round(bvalue_of(d) or 0.0, 1) in directional and (bvalue_of(d) or 0.0) > 0
    ]
    kept = [d for d in kept if not any(d is t for t in trace)]
    if notes is not None and derived:
        kinds = sorted({t for d in derived for t in diffusion.image_types(d) & diffusion.DERIVED_MAPS})
        notes.append(f"{len(derived)} derived diffusion map image(s) ({', '.join(kinds)}) in the DWI series skipped")
    if notes is not None and trace:
        notes.append(
            f"{len(trace)} trace-weighted image(s) skipped: the directional images of the same b-values "
            "are combined instead"
        )
    return kept


def read_dwi(files, *, patient=None, tolerance_mm: float = 0.05, notes: list | None = None):
    """Read a multi-b DWI series (single-frame slices, Siemens mosaics or Enhanced MR multi-frame).

    Images are grouped by b-value (:func:`dosepaint.io.diffusion.bvalue_of`: DiffusionBValue, the
    Enhanced MR frame's MR Diffusion sequence, the Siemens, Philips or GE private tag, or the CSA
    header). Derived maps (ADC, exponential ADC, FA, calculated b) are skipped, as are trace-weighted
    images where the directional ones are there; ``notes`` (a list) receives what was skipped. Several
    images at the same b-value and position (diffusion directions, repeats) are combined by their
    geometric mean (the trace-weighted image).

    Returns
    -------
    signals : ndarray (nb, z, y, x), float32
    bvalues : ndarray (nb,), s/mm², increasing
    grid : Grid
    first : pydicom.Dataset
    """
    datasets = _signal_images(_expand_frames([_read_full(f, patient=patient) for f in files], patient=patient), notes)
    if not datasets:
        raise DosepaintInputError(
            "the DWI series holds derived maps only (ADC/trace/exponential), no diffusion-weighted images",
            patient=patient,
            path=Path(files[0]).parent,
        )
    groups, volumes, grid = _by_bvalue(datasets, patient=patient)
    for b, group in groups.items():
        vols, grid = _bvalue_volumes(b, group, grid, patient=patient, tolerance_mm=tolerance_mm)
        volumes[b] += vols
    if len(volumes) < 2:
        raise DosepaintInputError(
            f"DWI series has {len(volumes)} distinct b-value(s) {sorted(volumes)}; an ADC needs at least two",
            patient=patient,
            path=Path(files[0]).parent,
        )
    bvals = np.array(sorted(volumes))
    signals = [_geometric_mean(volumes[b]) for b in bvals]
    first = datasets[0]
    if "PixelData" in first:
        del first.PixelData
    return np.stack(signals).astype(np.float32), bvals.astype(float), grid, first


def _by_bvalue(datasets: list[Dataset], *, patient) -> tuple[dict, dict, Grid | None]:
    """Single-frame images grouped by b-value; mosaics read at once into volumes by b-value."""
    groups: dict[float, list] = defaultdict(list)
    volumes: dict[float, list] = defaultdict(list)
    grid = None
    for ds in datasets:
        if _is_mosaic(ds):
            arr, g, b = _mosaic_volume(ds, patient=patient)
            if b is None:
                raise DosepaintInputError("DWI mosaic without a b-value", patient=patient, path=ds.filename)
            volumes[round(b, -1) if b > 20 else round(b)].append(arr)
            grid = grid or g
            continue
        b = bvalue_of(ds)
        if b is None:
            raise DosepaintInputError(
                "DWI image without a b-value (no DiffusionBValue (0018,9087), MR Diffusion "
                "sequence, Siemens (0019,100C), Philips (2001,1003) nor GE (0043,1039))",
                patient=patient,
                path=ds.filename,
            )
        groups[round(b, 1)].append(ds)
    return groups, volumes, grid


def _bvalue_volumes(b: float, group: list, grid, *, patient, tolerance_mm: float) -> tuple[list, Grid]:
    """The volumes of one b-value (one per direction or repeat), on the same geometry as the others."""
    by_pos = defaultdict(list)
    for ds in group:
        by_pos[tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 2))].append(ds)
    n_rep = {len(v) for v in by_pos.values()}
    if len(n_rep) != 1:
        raise DosepaintInputError(f"DWI b={b:g}: unequal number of images per slice position {sorted(n_rep)}",
                                  patient=patient, path=group[0].filename)  # fmt: skip
    vols = []
    for rep in range(n_rep.pop()):
        sl, g = _stack_slices([v[rep] for v in by_pos.values()], patient=patient, tolerance_mm=tolerance_mm,
                              what=f"DWI b={b:g}")  # fmt: skip
        if grid is not None and (g.shape != grid.shape or not np.allclose(g.origin, grid.origin, atol=0.1)):
            raise DosepaintInputError(f"DWI b={b:g}: geometry differs from the other b-values", patient=patient,
                                      path=sl[0].filename)  # fmt: skip
        grid = grid or g
        vols.append(np.stack([_pixels(d, patient=patient) for d in sl]))
    return vols, grid


def _geometric_mean(vols: list) -> np.ndarray:
    """One image per b-value: several (directions, repeats) combined by their geometric mean (the trace)."""
    stack = np.stack(vols)
    return stack[0] if stack.shape[0] == 1 else np.exp(np.mean(np.log(np.maximum(stack, 1e-6)), axis=0))


def pgse_timing_ms(ds: Dataset) -> tuple[float, float] | None:
    """PGSE (δ, Δ) in ms from the dosepaint private block, or None when absent."""
    try:
        block = ds.private_block(0x0029, SYNTH_CREATOR)
        return float(block[0x10].value), float(block[0x11].value)
    except KeyError:
        return None


# ---------------------------------------------------------------------------
# RT objects
# ---------------------------------------------------------------------------


def _decimal_strings(ds: Dataset, keyword: str, *, patient=None, path=None) -> np.ndarray:
    """A DS (decimal string) element as a float64 array, parsed from its raw bytes.

    pydicom makes a validated ``DSfloat`` object of every value (4 s for the 1.2 million numbers of a
    structure set); Python's ``float`` on the raw text gives the same doubles (both round correctly)
    in a tenth of that time. Values set in memory (not read from a file) are taken as they are.
    """
    elem = ds.get_item(keyword)
    if elem is None:
        return np.zeros(0)
    if not isinstance(elem, pydicom.dataelem.RawDataElement):
        return np.asarray(elem.value, float)
    text = (elem.value or b"").decode("ascii", errors="replace").strip(" \x00")
    if not text:
        return np.zeros(0)
    try:
        return np.array([float(v) for v in text.split("\\")])
    except ValueError:
        raise DosepaintInputError(f"{keyword} is not a list of decimal numbers", patient=patient, path=path) from None


def read_rtstruct(path, *, patient=None) -> tuple[dict[str, list[np.ndarray]], str | None]:
    """Closed planar contours per ROI name.

    Returns
    -------
    contours : dict
        ROI name -> list of (n, 3) LPS arrays (mm). ROIs of POINT contours only (markers) are left
        out; open contours are rejected with a clear error.
    frame_of_reference : str or None
        ReferencedFrameOfReferenceUID of the structure set.
    """
    ds = _read_full(path, patient=patient)
    if str(ds.get("Modality", "")) != "RTSTRUCT":
        raise DosepaintInputError("not an RTSTRUCT", patient=patient, path=path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    for_uid = None
    if ds.get("ReferencedFrameOfReferenceSequence"):
        for_uid = str(ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID)
    out: dict[str, list[np.ndarray]] = {}
    for rc in ds.get("ROIContourSequence", []):
        name = names.get(int(rc.ReferencedROINumber), f"ROI_{rc.ReferencedROINumber}")
        polys = []
        contours = rc.get("ContourSequence", [])
        if contours and all(str(c.get("ContourGeometricType", "")) == "POINT" for c in contours):
            continue  # a point ROI (marker, reference point) is no structure: ignored
        for c in contours:
            kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind == "POINT":
                continue
            pts = _decimal_strings(c, "ContourData", patient=patient, path=path).reshape(-1, 3)
            if kind != "CLOSED_PLANAR":
                raise DosepaintInputError(
                    f"ROI {name!r}: {kind} contour; only CLOSED_PLANAR can be filled", patient=patient, path=path
                )
            if len(pts) < 3:
                raise DosepaintInputError(f"ROI {name!r}: contour with {len(pts)} point(s)", patient=patient, path=path)
            polys.append(pts)
        out[name] = polys
    return out, for_uid


def read_rtdose(path, *, patient=None):
    """RTDOSE grid in Gy (or Gy(RBE) when DoseType is EFFECTIVE).

    Handles GridFrameOffsetVector relative to ImagePositionPatient (first
    value 0) and absolute (first value equal to the IPP's slice coordinate).

    Returns
    -------
    dose : ndarray (z, y, x), float32
    grid : Grid
    meta : dict
        DoseType, DoseUnits, DoseSummationType, FrameOfReferenceUID.
    """
    ds = _read_full(path, patient=patient)
    if str(ds.get("Modality", "")) != "RTDOSE":
        raise DosepaintInputError("not an RTDOSE", patient=patient, path=path)
    try:
        scaling = float(ds.DoseGridScaling)
        arr = ds.pixel_array.astype(np.float64) * scaling
    except Exception as exc:
        raise DosepaintInputError(f"unreadable RTDOSE pixel data ({exc})", patient=patient, path=path) from exc
    if arr.ndim == 2:
        arr = arr[None]
    iop = np.asarray(ds.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ipp = np.asarray(ds.ImagePositionPatient, float)
    offsets = np.asarray(ds.get("GridFrameOffsetVector", [0.0]), float)
    if len(offsets) != arr.shape[0]:
        raise DosepaintInputError(
            f"GridFrameOffsetVector has {len(offsets)} values for {arr.shape[0]} frames", patient=patient, path=path
        )
    if offsets[0] != 0 and np.isclose(offsets[0], np.dot(ipp, normal)):
        offsets = offsets - offsets[0]  # absolute (type-B) offsets
    order = np.argsort(offsets)
    arr, offsets = arr[order], offsets[order]
    origin = ipp + normal * offsets[0]
    step = float(np.median(np.diff(offsets))) if len(offsets) > 1 else float(ds.get("SliceThickness", 1) or 1)
    if len(offsets) > 1 and np.max(np.abs(np.diff(offsets) - step)) > 0.01:
        raise DosepaintInputError("RTDOSE frames are not equally spaced", patient=patient, path=path)
    ps = [float(v) for v in ds.PixelSpacing]
    grid = Grid.from_orientation(shape=arr.shape, spacing=(ps[1], ps[0], step), origin=origin, iop=iop)
    meta = {
        "DoseType": str(ds.get("DoseType", "")),
        "DoseUnits": str(ds.get("DoseUnits", "")),
        "DoseSummationType": str(ds.get("DoseSummationType", "")),
        "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
    }
    return arr.astype(np.float32), grid, meta


def _iso_date(value) -> str | None:
    """DICOM DA → ISO date, or None when absent or not a real date (anonymised ``00000000``)."""
    try:
        return _dt.date(*_da_parts(str(value).strip())).isoformat() if value else None
    except ValueError:
        return None


def _da_parts(text: str) -> tuple[int, int, int]:
    text = text.replace(".", "").replace("-", "")  # ACR-NEMA style YYYY.MM.DD
    if len(text) != 8 or not text.isdigit():
        raise ValueError(text)
    return int(text[:4]), int(text[4:6]), int(text[6:8])


def _iso_time(value) -> str | None:
    """DICOM TM (``HHMMSS.FFFFFF``, ``HHMM``, ``HH:MM:SS``) → ISO time, or None."""
    if not value:
        return None
    text = str(value).strip().replace(":", "")
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6):
        return None
    whole = whole.ljust(6, "0")
    try:
        micro = int((frac + "000000")[:6]) if frac.isdigit() else 0
        return _dt.time(int(whole[:2]), int(whole[2:4]), int(whole[4:6]), micro).isoformat()
    except ValueError:
        return None


def _iso_datetime(value) -> str | None:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) → naive ISO date-time (offset dropped), or None."""
    if not value:
        return None
    text = str(value).strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[:8] + text[8:].split(sign)[0]
    date, time = _iso_date(text[:8]), _iso_time(text[8:] or "00")
    return f"{date}T{time}" if date and time else None


def _private_float(ds: Dataset, tag: tuple[int, int]) -> float | None:
    try:
        value = ds[tag].value if tag in ds else None
        return float(value) if value not in (None, "", b"") else None
    except (TypeError, ValueError):
        return None


def pet_metadata(ds: Dataset) -> dict:
    """The attributes SUV needs (docs/method.md §4), without patient identity.

    Dates and times are ISO strings, or None where absent or unreadable (anonymised exports
    often carry ``00000000`` dates); the PET stage keeps only the uptake interval made of them.
    Philips' private SUV scale factor (7053,1000) and activity-concentration scale factor
    (7053,1009) are read when present.
    """
    rp = ds.get("RadiopharmaceuticalInformationSequence")
    rp = rp[0] if rp else Dataset()
    return {
        "Units": str(ds.get("Units", "")).strip().upper(),
        "DecayCorrection": str(ds.get("DecayCorrection", "")).strip().upper(),
        "CorrectedImage": [str(v).strip().upper() for v in ds.get("CorrectedImage", []) or []],
        "PatientWeight_kg": _positive(ds.get("PatientWeight")),
        "RadionuclideTotalDose_Bq": _positive(rp.get("RadionuclideTotalDose")),
        "RadionuclideHalfLife_s": _positive(rp.get("RadionuclideHalfLife")),
        "RadiopharmaceuticalStartDateTime": _iso_datetime(rp.get("RadiopharmaceuticalStartDateTime")),
        "RadiopharmaceuticalStartTime": _iso_time(rp.get("RadiopharmaceuticalStartTime")),
        "SeriesDate": _iso_date(ds.get("SeriesDate")),
        "SeriesTime": _iso_time(ds.get("SeriesTime")),
        "AcquisitionTime": _iso_time(ds.get("AcquisitionTime")),
        "PhilipsSUVScaleFactor": _private_float(ds, (0x7053, 0x1000)),
        "PhilipsActivityConcentrationScaleFactor": _private_float(ds, (0x7053, 0x1009)),
        "Manufacturer": str(ds.get("Manufacturer", "")),
    }


def _positive(value) -> float | None:
    """A DS/IS value as float, or None when absent, empty, zero or unreadable."""
    try:
        v = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return v if v and v > 0 else None
