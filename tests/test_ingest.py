"""Ingest of a synthetic patient against its ground truth, and of broken exports."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.io import dicom as dcm
from dosepaint.io import files
from dosepaint.stages import ingest
from dosepaint.validation import ingest_errors

from .helpers import checksums, ingest_params, outputs_in

ROOT = Path(__file__).resolve().parents[1]


def test_inputs_are_not_modified(ingested):
    assert checksums(ingested["dicom"]) == ingested["before"]


def test_every_declared_output_exists(ingested):
    for name, path in outputs_in(ingested["out"]).items():
        assert Path(path).exists(), name
    masks = sorted(p.name for p in (ingested["out"] / "masks_ct").iterdir())
    assert len(masks) == 11 and "CTV_LD_minus_GTV.nii.gz" in masks


def test_structures_match_truth(ingested):
    err = ingest_errors(ingested["out"], ingested["truth_dir"])
    assert abs(err["gtv_volume_error_pct"]) < 2.0
    qc = ingested["qc"]["structures"]
    assert qc["absent"] == []
    truth_names = ingested["truth"]["roi_names"]
    assert qc["roi_mapping"] == {canon: truth_names[canon] for canon in qc["roi_mapping"]}
    for name, vol in ingested["truth"]["structure_volumes_cc"].items():
        assert qc["volumes_cc"][name] == pytest.approx(vol, rel=0.02), name


def test_registration_recovers_the_misalignment(ingested):
    # Tiny preset (3×3×4 mm CT, 2.5×2.5×5 mm T2w, 3×3×6 mm DWI): sub-voxel accuracy.
    err = ingest_errors(ingested["out"], ingested["truth_dir"])
    assert err["t2w_tre_max_mm"] < 1.0 and err["t2w_rotation_deg"] < 0.5
    assert err["dwi_tre_max_mm"] < 1.5 and err["dwi_rotation_deg"] < 1.0


def test_dose_grid_and_delivered_dose(ingested):
    dose, grid = files.read_array(ingested["out"] / "rtdose.nii.gz")
    assert grid.spacing == (5.0, 5.0, 5.0)  # the schema's default dose grid
    gtv, g2 = files.read_array(ingested["out"] / "masks_dose" / "GTV.nii.gz")
    assert g2 == grid
    assert np.median(dose[gtv > 0]) == pytest.approx(73.6, rel=0.04)
    assert gtv.sum() * grid.voxel_volume / 1000 == pytest.approx(ingested["truth"]["gtv_volume_cc"], rel=0.05)
    assert ingested["qc"]["rtdose"]["DoseType"] == "EFFECTIVE"


def test_dwi_and_pet_metadata(ingested):
    dwi = files.read_json(ingested["out"] / "dwi.json")
    assert dwi["bvalues_s_per_mm2"] == [0, 50, 100, 400, 700, 1000]
    assert (dwi["pgse_delta_ms"], dwi["pgse_Delta_ms"]) == (20.0, 40.0)
    signals, _ = files.read_array(ingested["out"] / "dwi.nii.gz")
    assert signals.shape[0] == 6
    pet = files.read_json(ingested["out"] / "pet.json")
    t = ingested["truth"]["pet"]
    assert pet["uptake_interval_s"] == pytest.approx(t["uptake_s"], abs=1.0)
    assert pet["PatientWeight_kg"] == t["weight_kg"] and pet["RadionuclideTotalDose_Bq"] == t["dose_bq"]
    # The generator's own decay law, independently: A(t) = A0·2^(−t/T½) with F-18's 6586.2 s.
    a_dec = t["dose_bq"] * 2 ** (-t["uptake_s"] / 6586.2)
    assert pet["suv_factor"] == pytest.approx(t["weight_kg"] * 1000 / a_dec, rel=2e-4)
    assert pet["suv_error"] is None and pet["header_file"].endswith(".dcm")


def test_no_identity_in_outputs(ingested):
    ident = ingested["truth"]["identity"]
    needles = [ident[k].encode() for k in ("PatientID", "AccessionNumber", "OtherPatientIDs", "InstitutionName")]
    needles += [part.encode() for part in ident["PatientName"].split("^") if len(part) > 3]
    needles.append(ident["PatientBirthDate"].encode())
    for path in ingested["out"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            for needle in needles:
                assert needle not in data, (path, needle)


# --- broken exports -------------------------------------------------------------------------


@pytest.fixture
def broken(tiny_patient, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], copy)
    return copy


def run_broken(folder, config_schema, tmp_path, **over):
    return ingest.run(
        {"dicom_dir": str(folder)},
        outputs_in(tmp_path / "out"),
        params=ingest_params(config_schema, pid="BAD01", **over),
    )


def series_files(folder, kind):
    series, _ = dcm.scan_folder(folder)
    return sorted(next(s for s in series if s.kind == kind).files)


def test_the_dwi_protocol_takes_the_header_timing_else_the_configured_one(broken, config_schema, ingested):
    """The protocol the input check records (and the DWI library is named by) is the ingest's dwi.json."""
    import pydicom

    params = ingest_params(config_schema, pid="BAD01", default_pgse_delta_ms=12.5, default_pgse_Delta_ms=31.0)
    header = ingest.dwi_protocol(ingest.read_export(broken, patient="BAD01", params=params).dwi, params=params)
    written = files.read_json(ingested["out"] / "dwi.json")
    assert header == {k: written[k] for k in header}
    assert header["bvalues_s_per_mm2"] == [0, 50, 100, 400, 700, 1000]
    assert (header["pgse_delta_ms"], header["pgse_Delta_ms"]) == (20.0, 40.0)  # the generator's header
    for f in series_files(broken, "DWI"):  # a scanner's DWI: no timing in its header
        ds = pydicom.dcmread(f)
        for tag in [e.tag for e in ds if e.tag.group == 0x0029]:
            del ds[tag]
        ds.save_as(f)
    plain = ingest.dwi_protocol(ingest.read_export(broken, patient="BAD01", params=params).dwi, params=params)
    assert plain == {**header, "pgse_delta_ms": 12.5, "pgse_Delta_ms": 31.0, "timing_source": "config defaults"}


def test_missing_rtstruct(broken, config_schema, tmp_path):
    for f in series_files(broken, "RTSTRUCT"):
        f.unlink()
    with pytest.raises(DosepaintInputError, match=r"patient BAD01, file .*export: no RTSTRUCT series found"):
        run_broken(broken, config_schema, tmp_path)


def test_missing_ct_slice(broken, config_schema, tmp_path):
    ct = series_files(broken, "CT")
    import pydicom

    ct.sort(key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    ct[len(ct) // 2].unlink()
    with pytest.raises(DosepaintInputError, match="patient BAD01, .*CT: missing slice"):
        run_broken(broken, config_schema, tmp_path)


def test_required_structure_missing(broken, config_schema, tmp_path, tiny_patient):
    _rename_roi(broken, tiny_patient["truth"]["roi_names"]["GTV"], "Tumour_unknown")
    with pytest.raises(DosepaintInputError, match=r"patient BAD01, .*required structure\(s\) \['GTV'\] not found"):
        run_broken(broken, config_schema, tmp_path)


def _rename_roi(folder, old, new) -> bool:
    import pydicom

    path = series_files(folder, "RTSTRUCT")[0]
    ds = pydicom.dcmread(path)
    for roi in ds.StructureSetROISequence:
        if roi.ROIName == old:
            roi.ROIName = new
    ds.save_as(path)


def test_alias_from_config_rescues_an_unusual_name(broken, config_schema, tmp_path, tiny_patient):
    # Only CT and RTSTRUCT required: the other modalities may be absent.
    for kind in ("T2W", "DWI", "PT", "RTDOSE"):
        for f in series_files(broken, kind):
            f.unlink()
    _rename_roi(broken, tiny_patient["truth"]["roi_names"]["GTV"], "Tumour_unknown")
    qc = run_broken(
        broken,
        config_schema,
        tmp_path,
        structure_aliases={"GTV": ["tumour unknown"]},
        required_modalities=["CT", "RTSTRUCT"],
    )
    assert qc["structures"]["roi_mapping"]["GTV"] == "Tumour_unknown"
    assert "t2w" not in qc and "dwi" not in qc
    assert (tmp_path / "out" / "masks_dose" / "GTV.nii.gz").exists()


def test_nifti_geometry_reads_the_same_in_nibabel(ingested):
    import nibabel as nib

    _, grid = files.read_array(ingested["out"] / "ct.nii.gz")
    affine = nib.load(ingested["out"] / "ct.nii.gz").affine  # RAS
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(affine[:3, 3], lps_to_ras @ np.asarray(grid.origin), atol=1e-3)
    np.testing.assert_allclose(affine[:3, :3], lps_to_ras @ grid.matrix @ np.diag(grid.spacing), atol=1e-4)
    # The prone CT (HFP) keeps its direction cosines: rows run to the patient's right.
    assert grid.matrix[0, 0] == -1.0 and grid.matrix[1, 1] == -1.0


@pytest.mark.slow
def test_registration_reproduces_bit_for_bit_whatever_the_machine_threads(ingested):
    """The registration fixes ITK's thread count, so the machine's default does not change the result."""
    import SimpleITK as sitk

    from dosepaint.registration import register_rigid

    ct = sitk.ReadImage(str(ingested["out"] / "ct.nii.gz"), sitk.sitkFloat32)
    shift = sitk.Euler3DTransform()
    shift.SetTranslation((2.3, -1.7, 3.1))
    moving = sitk.Resample(ct, ct, shift, sitk.sitkLinear, -1000.0)
    results = []
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        for machine in (1, 3, 3):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(machine)
            r = register_rigid(
                ct, moving, fixed_threshold=-400.0, moving_threshold=-400.0, threads=1, iterations=20, refine=False
            )
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == machine  # restored
            results.append((r.metric, r.transform.GetParameters()))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert results[0] == results[1]


def test_the_ingest_summary_reports_each_registrations_metric(ingested, tmp_path):
    """The registrations' final Mattes MI reach the cohort table (the QC beside them in qc.json)."""
    from dosepaint.stages import ingest_summary

    table = ingest_summary.run({"qc": [str(ingested["out"] / "qc.json")]}, {"summary": str(tmp_path / "s.tsv")})
    assert -2.0 < table.loc[0, "t2w_mi"] < -0.3 and -2.0 < table.loc[0, "dwi_mi"] < -0.3
    assert ingested["qc"]["t2w"]["registration"]["qc"]["body_dice"] > 0.9
