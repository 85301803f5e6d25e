"""Readers on real files no one here wrote: pydicom's, dicompyler-core's and heudiconv's test data."""

import numpy as np
import pydicom
import pydicom.dicomio
import pytest
from pydicom.data import get_testdata_file

from dosepaint.dwi import fit_adc
from dosepaint.errors import DosepaintInputError
from dosepaint.io import dicom as dcm
from dosepaint.io.deidentify import basic_profile_violations
from dosepaint.io.dicom_write import export_rtdose
from dosepaint.structures import contours_to_mask


def test_ct_small_geometry_and_hounsfield_units():
    vol, grid, _ = dcm.read_volume([get_testdata_file("CT_small.dcm")])
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert vol.shape == (1, 128, 128)
    np.testing.assert_allclose(grid.origin, [-158.135803, -179.035797, -75.699997])
    np.testing.assert_allclose(grid.spacing[:2], [0.661468, 0.661468])
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol[0], expected)


def test_truncated_file_names_patient_and_file():
    path = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(DosepaintInputError, match="patient P7, file .*MR_truncated.dcm: unreadable pixel data"):
        dcm.read_volume([path], patient="P7")


def test_pydicom_rtstruct_without_file_meta():
    contours, frame = dcm.read_rtstruct(get_testdata_file("rtstruct.dcm"))
    assert frame == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    assert len(contours["patient"]) == 3 and contours["patient"][0].shape == (5, 3)
    assert "Isocenter 1" not in contours  # a POINT ROI (a marker) is no structure: left out


def test_pydicom_rtdose_grid():
    dose, grid, meta = dcm.read_rtdose(get_testdata_file("rtdose.dcm"))
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    assert dose.shape == (15, 10, 10)
    assert grid.spacing == (10.0, 10.0, 5.0)
    np.testing.assert_allclose(dose, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    assert meta["DoseSummationType"] == "BEAM"


def test_structures_and_dose_agree_with_dicompyler_core(dicompyler_data):
    """Our rasterisation + RTDOSE reader vs dicompyler-core's DVH calculation (volume and mean dose)."""
    pydicom.dicomio.read_file = pydicom.dcmread  # dicompyler-core 0.5.6 still calls the pydicom 2 name
    from dicompylercore import dvhcalc

    rtss, rtdose = dicompyler_data / "rtss.dcm", dicompyler_data / "rtdose.dcm"
    dose, grid, meta = dcm.read_rtdose(rtdose)
    assert meta["DoseUnits"] == "GY" and dose.shape == (98, 129, 194)
    contours, _ = dcm.read_rtstruct(rtss)
    for number, name in [(4, "Breast"), (5, "Heart"), (6, "Lt Lung"), (9, "Tumor Bed")]:
        ref = dvhcalc.get_dvh(str(rtss), str(rtdose), number)
        mask = contours_to_mask(contours[name], grid)
        assert mask.sum() * grid.voxel_volume / 1000 == pytest.approx(ref.volume, rel=0.01), name
        assert float(dose[mask].mean()) == pytest.approx(ref.mean, rel=0.01), name


def test_dicompyler_ct_discovered_by_content_not_name(dicompyler_data, tmp_path):
    # Copy under opaque names in a nested tree: discovery must go by content.
    import shutil

    for i, f in enumerate(sorted(dicompyler_data.glob("*.dcm"))):
        dst = tmp_path / f"a{i}" / "b" / f"file{i}"
        dst.parent.mkdir(parents=True)
        shutil.copy(f, dst)
    (tmp_path / "notes.txt").write_text("not dicom")
    series, skipped = dcm.scan_folder(tmp_path)
    assert sorted(s.kind for s in series) == ["CT", "OTHER", "RTDOSE", "RTSTRUCT"]  # RTPLAN is OTHER
    assert skipped == ["notes.txt"]


def test_siemens_mosaic_dwi_with_private_bvalues(heudiconv_dwi):
    files = sorted(heudiconv_dwi.glob("*.dcm"))
    series, _ = dcm.scan_folder(heudiconv_dwi)
    assert [s.kind for s in series] == ["DWI"]
    assert series[0].bvalues == {5.0, 1500.0}  # from the private (0019,100C) tag
    signals, bvals, grid, _ = dcm.read_dwi(files)
    np.testing.assert_array_equal(bvals, [5.0, 1500.0])
    assert signals.shape == (2, 81, 152, 150)  # 81 slices unpacked from each mosaic
    assert grid.spacing == pytest.approx((1.5, 1.5, 1.5), abs=1e-3)
    # Plausible ADC in the brain (mm²/s) from the pipeline's own fit (both b-values used).
    brain = signals[0] > np.percentile(signals[0], 75)
    fit = fit_adc(signals[:, brain], bvals, b_min=0)
    assert fit.valid.mean() > 0.95
    assert 0.5e-3 < np.nanmedian(fit.adc) < 1.2e-3


def test_a_scanner_dwi_protocol_takes_the_configured_timing(heudiconv_dwi):
    """A Siemens export has no PGSE timing where the pipeline reads it: the input check's protocol
    record (which names the DWI library) takes the config's, and says so."""
    from dosepaint.layout import check_library_key
    from dosepaint.stages.ingest import dwi_protocol

    dwi = dcm.read_dwi(sorted(heudiconv_dwi.glob("*.dcm")), patient="P3")
    protocol = dwi_protocol(dwi, params={"default_pgse_delta_ms": 20.0, "default_pgse_Delta_ms": 40.0})
    assert protocol == {"bvalues_s_per_mm2": [5.0, 1500.0], "pgse_delta_ms": 20.0, "pgse_Delta_ms": 40.0,
                        "timing_source": "config defaults"}  # fmt: skip
    record = {"status": "included", "dwi_protocol": protocol}
    assert check_library_key(record, path="input_check.json") == "b5-1500_d20_D40"


def test_dwi_with_a_single_bvalue_is_rejected(tmp_path, heudiconv_dwi):
    files = sorted(heudiconv_dwi.glob("*.dcm"))[:2]  # both b = 5
    with pytest.raises(DosepaintInputError, match="1 distinct b-value"):
        dcm.read_dwi(files, patient="P3")


def test_exported_rtdose_meets_the_basic_profile_and_the_checker_catches_identity(tmp_path, tiny_patient):
    from dosepaint.geometry import Grid

    grid = Grid(shape=(3, 4, 5), spacing=(3.0, 3.0, 3.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    dose = np.arange(60, dtype=float).reshape(grid.shape)
    export_rtdose(
        tmp_path / "rd.dcm", dose, grid, patient_id="SYN001", frame_of_reference=None, description="dosepaint de plan"
    )
    ds = pydicom.dcmread(tmp_path / "rd.dcm")
    assert basic_profile_violations(ds, pseudonym="SYN001") == []
    assert ds.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113105"]
    np.testing.assert_allclose(dcm.read_rtdose(tmp_path / "rd.dcm")[0], dose, atol=60 / 2**32 * 2)
    # The checker finds what a copied source header would bring: identity, a date, a source UID.
    src = pydicom.dcmread(
        next(p for p in sorted(tiny_patient["dicom"].rglob("*")) if p.is_file() and p.suffix != ".txt"),
        stop_before_pixels=True,
    )
    ds.PatientBirthDate = src.PatientBirthDate
    ds.InstitutionName = src.InstitutionName
    ds.StudyInstanceUID = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"  # a scanner's UID root
    problems = basic_profile_violations(ds, pseudonym="SYN001")
    assert [p.split()[0] for p in problems] == ["PatientBirthDate", "InstitutionName", "StudyInstanceUID"], problems
