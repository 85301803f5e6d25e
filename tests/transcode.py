"""Transcode a DICOM export's image files into a compressed transfer syntax (for the reader tests).

RLE, JPEG-LS and JPEG 2000 through pydicom's encoders (native, pyjpegls, pylibjpeg-openjpeg); JPEG
Lossless process 14 (selection value 1), which pydicom cannot encode, through GDCM.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.errors
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

SYNTAXES = {
    "RLE": RLELossless,
    "JPEG-LS": JPEGLSLossless,
    "JPEG 2000": JPEG2000Lossless,
    "JPEG Lossless P14": JPEGLosslessSV1,
}


def _gdcm_jpeg_lossless(path: Path) -> None:
    """JPEG Lossless P14 SV1 pixel data from GDCM, put back into the original dataset (GDCM's writer
    rewrites some geometry attributes, which would change what is tested)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {path}")
    out = path.with_suffix(".gdcm")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(out))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {path}")
    encoded = pydicom.dcmread(out)
    out.unlink()
    ds = pydicom.dcmread(path)
    ds.PixelData = encoded.PixelData
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.save_as(path, enforce_file_format=True)


def transcode(folder: Path, syntax: str) -> int:
    """Compress every image file (with pixel data) below ``folder`` in place; returns how many."""
    n = 0
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue  # the export's non-DICOM files stay as they are
        if "PixelData" not in ds or ds.Modality == "RTDOSE":
            continue
        if syntax == "JPEG Lossless P14":
            _gdcm_jpeg_lossless(path)
        else:
            ds.compress(SYNTAXES[syntax])
            ds.save_as(path, enforce_file_format=True)
        n += 1
    return n
