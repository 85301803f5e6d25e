"""The DICOM RT package's pieces on phantoms: contours, CT, RTSTRUCT, RTDOSE, UIDs; validated by
dciodvfy and read back by dicompyler-core."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.geometry import Grid
from dosepaint.io import dicom_rt
from dosepaint.io.deidentify import basic_profile_violations
from dosepaint.io.dicom_write import CT_IMAGE, write_image_series
from dosepaint.stages.export import tertile_labels
from dosepaint.structures import mask_to_contours

from .rt_checks import dciodvfy_errors, dice, dicompyler_dvh, dicompyler_masks

GRID = Grid(shape=(12, 30, 34), spacing=(2.0, 2.5, 3.0), origin=(-40.0, -35.0, 100.0))


def _shell() -> np.ndarray:
    """A ball of radius 20 mm with a hollow of radius 9 mm (holes on the middle slices)."""
    k, j, i = np.indices(GRID.shape)
    x, y, z = (GRID.origin[0] + i * 2.0 + 6, GRID.origin[1] + j * 2.5 + 3, GRID.origin[2] + k * 3.0 - 116)
    r = np.sqrt(x**2 + y**2 + z**2)
    return (r <= 20.0) & (r > 9.0)


def test_contours_of_one_voxel_surround_its_centre_on_any_orientation():
    grid = Grid(
        shape=(4, 5, 6), spacing=(2.0, 3.0, 4.0), origin=(10.0, 20.0, -5.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    )
    mask = np.zeros(grid.shape, bool)
    mask[2, 3, 1] = True
    (pts,) = mask_to_contours(mask, grid)
    centre = grid.image(mask.astype(np.uint8)).TransformIndexToPhysicalPoint((1, 3, 2))
    np.testing.assert_allclose(pts.mean(axis=0), centre, atol=1e-9)
    np.testing.assert_allclose(np.ptp(pts, axis=0), [2.0, 3.0, 0.0])  # half a voxel each side, in-plane


def _package(tmp_path, pid="PT07", uids=None):
    """CT, RTSTRUCT (the shell) and an RTDOSE (a ramp along x) of a phantom, as the stage writes them."""
    uids = uids or dicom_rt.package_uids(pid)
    ct = np.where(_shell(), 40.0, -1000.0)
    refs = dicom_rt.write_ct(ct, GRID, tmp_path / "CT", pid=pid, uids=uids, patient_position="HFS")
    shell = _shell()
    rs = dicom_rt.write_structures(
        tmp_path / "RS.dcm", {"CELLS_T1": mask_to_contours(shell, GRID)}, refs, GRID, pid=pid, uids=uids
    )
    dose = np.broadcast_to(np.linspace(10.0, 80.0, GRID.shape[2]), GRID.shape).copy()
    dicom_rt.write_dose(tmp_path / "RD.dcm", dose, GRID, pid=pid, uids=uids, role="de dose", number=20, plan_sop=rs)
    return shell, dose, refs


def test_package_objects_validate_share_one_frame_and_are_deidentified(tmp_path):
    _package(tmp_path)
    paths = [tmp_path / "CT" / "CT_0001.dcm", tmp_path / "CT" / "CT_0012.dcm", tmp_path / "RS.dcm", tmp_path / "RD.dcm"]
    for path in paths:
        assert dciodvfy_errors(path) == [], path
        assert basic_profile_violations(pydicom.dcmread(path), pseudonym="PT07") == [], path
    ds = [pydicom.dcmread(p) for p in paths]
    assert len({d.StudyInstanceUID for d in ds}) == 1
    assert len({d.FrameOfReferenceUID for d in ds}) == 1
    assert ds[2].ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ds[0].FrameOfReferenceUID
    assert ds[0].PatientPosition == "HFS" and ds[3].BitsAllocated == 16


def test_dicompyler_reads_the_structure_back_to_the_mask(tmp_path):
    shell, dose, _ = _package(tmp_path)
    back = dicompyler_masks(tmp_path / "RS.dcm", GRID, ["CELLS_T1"])["CELLS_T1"]
    assert dice(back, shell) == 1.0
    assert np.any(~shell[6] & np.roll(shell[6], 4, axis=1))  # the middle slices have holes
    dvh = dicompyler_dvh(tmp_path / "RS.dcm", tmp_path / "RD.dcm", "CELLS_T1")
    assert dvh.mean == pytest.approx(float(dose[shell].mean()), rel=0.01)
    assert dvh.volume == pytest.approx(float(shell.sum() * GRID.voxel_volume / 1000.0), rel=0.05)


def test_structure_set_bytes_are_those_pydicom_writes_from_the_decoded_values(tmp_path):
    # The writer encodes ContourData itself (raw bytes); pydicom's own encoder, given the decoded
    # values of every contour, must write the same file (values of odd and even length: the padding).
    _package(tmp_path)
    ds = pydicom.dcmread(tmp_path / "RS.dcm")
    items = [c for rc in ds.ROIContourSequence for c in rc.ContourSequence]
    raw = [c.get_item(0x30060050).value for c in items]
    assert len(items) > 10 and {len(r.rstrip(b" ")) % 2 for r in raw} == {0, 1}
    for c in items:
        c.ContourData = list(c.ContourData)  # DSfloats: pydicom encodes them again
    ds.save_as(tmp_path / "RS_pydicom.dcm", enforce_file_format=True)
    assert (tmp_path / "RS_pydicom.dcm").read_bytes() == (tmp_path / "RS.dcm").read_bytes()


def test_retained_uids_are_the_source_cts(tmp_path):
    """export.retain_uids: the source CT's study, frame and SOP UIDs come back in slice order; a missing
    slice is refused with the patient named."""
    study, frame, series = (
        "1.2.826.0.1.3680043.2.1125.1",
        "1.2.826.0.1.3680043.2.1125.2",
        "1.2.826.0.1.3680043.2.1125.3",
    )
    src = write_image_series(
        np.zeros(GRID.shape),
        GRID,
        tmp_path / "src",
        modality="CT",
        sop_class=CT_IMAGE,
        patient={"PatientID": "x"},
        study={"StudyInstanceUID": study},
        series={"SeriesInstanceUID": series, "FrameOfReferenceUID": frame},
        rescale="hu",
    )
    paths = [p for _, p in src][::-1]
    got = dicom_rt.source_ct_uids(paths, GRID, pid="PT07")
    assert (got["study"], got["frame"], got["series"]) == (study, frame, series)
    assert got["sops"] == [sop for sop, _ in src]
    _package(tmp_path / "pkg", uids=dicom_rt.package_uids("PT07", source=got))
    first = pydicom.dcmread(tmp_path / "pkg" / "CT" / "CT_0001.dcm")
    assert (first.SOPInstanceUID, first.FrameOfReferenceUID, first.StudyInstanceUID) == (src[0][0], frame, study)
    rd = pydicom.dcmread(tmp_path / "pkg" / "RD.dcm")
    assert rd.FrameOfReferenceUID == frame and rd.StudyInstanceUID == study
    with pytest.raises(DosepaintInputError, match="do not match the ingested CT") as err:
        dicom_rt.source_ct_uids(paths[1:], GRID, pid="PT07")
    assert err.value.patient == "PT07"


def test_generated_uids_are_the_same_on_every_run_and_differ_between_patients():
    assert dicom_rt.package_uids("A") == dicom_rt.package_uids("A")
    assert dicom_rt.package_uids("A")["frame"] != dicom_rt.package_uids("B")["frame"]


def test_tertile_labels_split_the_gtv_by_clonogen_count():
    gtv = np.zeros((1, 3, 4), bool)
    gtv[0, :, :3] = True
    n = np.zeros(gtv.shape)
    n[gtv] = [9, 1, 5, 2, 8, 4, 3, 7, 6]
    labels = tertile_labels(n, gtv)
    assert labels[gtv].tolist() == [3, 1, 2, 1, 3, 2, 1, 3, 2]
    assert not labels[~gtv].any()


def test_a_failed_export_is_listed_and_the_others_summarised(tmp_path):
    """The export of a patient whose ingest recorded no CT files fails with the patient and the problem
    (export.retain_uids), through the guard; the cohort table lists it beside a patient that passed."""
    from dosepaint.io import files
    from dosepaint.stages import export
    from dosepaint.stages.guard import run_guarded

    files.write_array(np.zeros(GRID.shape), GRID, tmp_path / "ct.nii.gz")
    files.write_json({"ct": {"patient_position": "HFS"}}, tmp_path / "qc.json")
    outputs = {
        "package": tmp_path / "bad" / "dicom_rt",
        "manifest": tmp_path / "bad.json",
        "status": tmp_path / "bad_status.json",
    }
    params = {"patient_id": "PT02", "retain_uids": True, "dicom_dir": str(tmp_path)}
    inputs = {"ct": tmp_path / "ct.nii.gz", "ingest_qc": tmp_path / "qc.json"}
    record = run_guarded(export.run, inputs, outputs, params=params, stage="dicom_rt")
    assert (
        record["status"] == "failed"
        and record["problem"] == "export.retain_uids: the ingest did not record the CT files"
    )
    assert (tmp_path / "bad.json").read_text() == ""  # a placeholder, never read
    good = {"patient_id": "PT01", "uids_retained": False, "patient_position": "HFP", "ct_slices": 12, "notes": [],
            "structures": {"GTV": {"contours": 4}, "CELLS_T1": {"contours": 0}}, "files": ["RS.dcm", "RD_de_worst.dcm"],
            "plans": {"de": {"spots_weighted": [10, 3]}}}  # fmt: skip
    files.write_json(good, tmp_path / "good.json")
    files.write_json({"patient_id": "PT01", "status": "ok"}, tmp_path / "good_status.json")
    table = export.run_summary({"manifests": [tmp_path / "good.json", tmp_path / "bad.json"],
                                "statuses": [tmp_path / "good_status.json", tmp_path / "bad_status.json"]},
                               {"summary": tmp_path / "dicom_rt.tsv"}, params={})  # fmt: skip
    assert table["patient_id"].tolist() == ["PT01", "PT02"] and table["status"].tolist() == ["ok", "failed"]
    ok = table.iloc[0]
    assert (ok["objects"], ok["structures"], ok["worst_case_doses"], ok["de_spots_ld_hd"]) == (14, 1, 1, "10/3")
    assert table.iloc[1]["problem"] == "export.retain_uids: the ingest did not record the CT files"
