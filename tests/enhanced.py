"""Write a classic single-frame MR series as one Enhanced MR multi-frame object (for the reader tests).

The Enhanced MR IOD (PS3.3 A.36.2) as Siemens XA and Philips write DWI: shared Pixel Measures and Plane
Orientation groups; per frame a Plane Position, a Pixel Value Transformation, an MR Diffusion group
with the b-value and an MR Image Frame Type. Optionally derived ADC frames are mixed in, as scanners
export them inside the DWI object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
KEEP = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "PatientID",
    "PatientName",
    "StudyDate",
    "EchoTime",
    "RepetitionTime",
)


def _item(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def write_enhanced(files, out: Path, *, adc_frames: int = 0, reverse: bool = True) -> Path:
    """One Enhanced MR file of the single-frame images ``files`` (frames in reverse order by default)."""
    slices = [pydicom.dcmread(f) for f in files]
    slices = slices[::-1] if reverse else slices
    first = slices[0]
    ds = Dataset()
    for k in KEEP:
        if k in first:
            setattr(ds, k, first.data_element(k).value)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = first.Rows, first.Columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = first.PixelRepresentation
    ds.SharedFunctionalGroupsSequence = [
        _item(
            PixelMeasuresSequence=[_item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)],
            PlaneOrientationSequence=[_item(ImageOrientationPatient=first.ImageOrientationPatient)],
        )
    ]
    frames, pixels = [], []
    for s in slices:
        b = float(s.DiffusionBValue)
        frames.append(
            _item(
                PlanePositionSequence=[_item(ImagePositionPatient=s.ImagePositionPatient)],
                PixelValueTransformationSequence=[
                    _item(
                        RescaleSlope=s.get("RescaleSlope", 1),  # per image here
                        RescaleIntercept=s.get("RescaleIntercept", 0),
                        RescaleType="US",
                    )
                ],
                MRDiffusionSequence=[_item(DiffusionBValue=b, DiffusionDirectionality="ISOTROPIC" if b else "NONE")],
                MRImageFrameTypeSequence=[_item(FrameType=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"])],
            )
        )
        pixels.append(s.pixel_array)
    for s in slices[:adc_frames]:  # derived ADC maps, as exported inside the DWI object
        frames.append(
            _item(
                PlanePositionSequence=[_item(ImagePositionPatient=s.ImagePositionPatient)],
                MRImageFrameTypeSequence=[_item(FrameType=["DERIVED", "PRIMARY", "DIFFUSION", "ADC"])],
            )
        )
        pixels.append(np.full_like(s.pixel_array, 1234))
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(pixels).astype(pixels[0].dtype).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ENHANCED_MR, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(out, enforce_file_format=True)
    return out
