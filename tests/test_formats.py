"""The formats real archives hold: compressed transfer syntaxes, Enhanced MR multi-frame DWI with
derived maps mixed in, vendor private b-values, RTSTRUCT point ROIs."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dosepaint.io import dicom as dcm
from dosepaint.stages.ingest import read_export

from .enhanced import write_enhanced
from .helpers import ingest_params
from .test_bad_inputs import edit, series_files
from .transcode import SYNTAXES, transcode


@pytest.fixture(scope="module")
def reference(tiny_patient, config_schema):
    """The uncompressed classic export as the ingest reads it."""
    return read_export(tiny_patient["dicom"], patient="SYN001", params=ingest_params(config_schema))


def _same_export(ex, ref):
    assert np.array_equal(ex.ct, ref.ct) and ex.ct_grid.same_as(ref.ct_grid)
    assert np.array_equal(ex.t2w[0], ref.t2w[0]) and np.array_equal(ex.pet[0], ref.pet[0])
    assert np.array_equal(ex.dwi[0], ref.dwi[0]) and np.array_equal(ex.dwi[1], ref.dwi[1])
    assert ex.dwi[2].same_as(ref.dwi[2])
    assert ex.masks.keys() == ref.masks.keys()
    assert all(np.array_equal(ex.masks[k], ref.masks[k]) for k in ref.masks)


@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_a_losslessly_compressed_export_reads_bit_identical(syntax, tiny_patient, reference, config_schema, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    assert transcode(export, syntax) > 300
    uids = {
        str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in series_files(export, "CT")
    }
    assert uids == {SYNTAXES[syntax]}
    _same_export(read_export(export, patient="SYN001", params=ingest_params(config_schema)), reference)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_pydicoms_compressed_files_decode_as_their_uncompressed_original(name):
    """pydicom's own test files: the same MR slice in RLE, JPEG 2000 and JPEG-LS, each read as the
    uncompressed MR_small.dcm."""
    ref, grid, _ = dcm.read_volume([get_testdata_file("MR_small.dcm")], patient="P")
    vol, g, _ = dcm.read_volume([get_testdata_file(name)], patient="P")
    assert np.array_equal(vol, ref) and g.same_as(grid) and float(ref.std()) > 0


def test_an_enhanced_mr_dwi_with_adc_frames_reads_as_the_classic_series(
    tiny_patient, reference, config_schema, tmp_path
):
    """The DWI rewritten as one Enhanced MR object, frames reversed, 5 derived ADC frames mixed in:
    the same signals, b-values and grid as the classic series, and a note that the ADC was skipped."""
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    classic = series_files(export, "DWI")
    target = write_enhanced(classic, classic[0].parent / "enhanced_dwi.dcm", adc_frames=5)
    for f in classic:
        f.unlink()
    notes = []
    signals, bvals, grid, _ = dcm.read_dwi([target], patient="SYN001", notes=notes)
    assert np.array_equal(signals, reference.dwi[0]) and np.array_equal(bvals, reference.dwi[1])
    assert grid.same_as(reference.dwi[2])
    assert notes == ["5 derived diffusion map image(s) (ADC) in the DWI series skipped"]
    ex = read_export(export, patient="SYN001", params=ingest_params(config_schema))
    _same_export(ex, reference)
    assert "DWI: 5 derived diffusion map image(s) (ADC) in the DWI series skipped" in ex.notes


def test_a_philips_enhanced_mr_file_reads_as_nibabel_reads_it():
    """nibabel's Philips Enhanced MR test file (176 frames): our volume and geometry against nibabel's
    multi-frame wrapper, a reader no one here wrote."""
    import nibabel
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    path = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"
    data = gzip.open(path).read()
    ds = pydicom.dcmread(io.BytesIO(data))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "mprage.dcm"
        f.write_bytes(data)
        ours, grid, _ = dcm.read_volume([f], patient="P", tolerance_mm=0.05)
    w = wrapper_from_data(ds)
    theirs = np.transpose(np.asarray(w.get_data(), float), (2, 0, 1))  # (slice, row, column)
    assert ours.shape == theirs.shape == (176, 256, 256)
    aff = np.linalg.inv(np.asarray(w.affine))
    mat = grid.matrix * np.asarray(grid.spacing)  # our (i = column, j = row, k = slice) -> LPS
    ends = []
    for k in (0, ours.shape[0] - 1):
        world = mat @ np.array([0.0, 0.0, k]) + np.asarray(grid.origin)
        ends.append(aff @ np.append(world, 1.0))  # nibabel's (row, column, slice) of our voxel
    assert np.allclose([e[:2] for e in ends], 0.0, atol=1e-3)  # the same in-plane corner
    assert np.allclose(sorted(e[2] for e in ends), [0.0, 175.0], atol=0.01)  # the same slices, some order
    if ends[0][2] > ends[1][2]:
        theirs = theirs[::-1]
    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("vendor", ["Philips", "GE"])
def test_vendor_private_b_values_replace_the_standard_tag(vendor, tiny_patient, reference, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    files = series_files(export, "DWI")

    def to_private(ds):
        b = float(ds.DiffusionBValue)
        del ds[0x0018, 0x9087]
        if vendor == "Philips":
            ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", b)
        else:  # GE: slop_int_6 first value, 10^9 added ("use as is")
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", [int(b) + 1_000_000_000, 8, 0, 0])

    edit(files, to_private)
    assert all("DiffusionBValue" not in pydicom.dcmread(f, stop_before_pixels=True) for f in files)
    signals, bvals, grid, _ = dcm.read_dwi(files, patient="SYN001")
    assert np.array_equal(bvals, reference.dwi[1]) and np.array_equal(signals, reference.dwi[0])


def test_a_point_roi_is_ignored(tiny_patient, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    rs = series_files(export, "RTSTRUCT")[0]

    def add_point(ds):
        from pydicom.dataset import Dataset

        roi = Dataset()
        roi.ROINumber, roi.ROIName = 99, "Iso_marker"
        ds.StructureSetROISequence.append(roi)
        contour = Dataset()
        contour.ContourGeometricType, contour.NumberOfContourPoints, contour.ContourData = "POINT", 1, [0.0, 0.0, 0.0]
        rc = Dataset()
        rc.ReferencedROINumber, rc.ContourSequence = 99, [contour]
        ds.ROIContourSequence.append(rc)

    edit([rs], add_point)
    contours, _ = dcm.read_rtstruct(rs)
    before, _ = dcm.read_rtstruct(series_files(tiny_patient["dicom"], "RTSTRUCT")[0])
    assert "Iso_marker" not in contours and contours.keys() == before.keys()


def test_ct_padding_outside_the_field_of_view_reads_as_air(tiny_patient, reference, tmp_path):
    """A CT whose corners are padding (stored 0 = −1024 HU would be air-ish; here −3024 HU as Siemens
    and GE write it, flagged by PixelPaddingValue): those voxels read as −1000 HU, the rest unchanged."""
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    files = series_files(export, "CT")

    def pad(ds):
        arr = ds.pixel_array.astype(np.int16)
        ds.PixelRepresentation = 1
        ds.BitsStored, ds.HighBit = 16, 15
        arr[:5, :5] = -2000  # stored; −3024 HU after the −1024 intercept
        ds.PixelData = arr.tobytes()
        ds.add_new(0x00280120, "SS", -2000)  # PixelPaddingValue

    edit(files, pad)
    vol, grid, _ = dcm.read_volume(files, patient="SYN001", what="CT")
    assert np.all(vol[:, :5, :5] == -1000.0)
    rest = np.ones(vol.shape, bool)
    rest[:, :5, :5] = False
    assert np.array_equal(vol[rest], reference.ct[rest])
