"""The synthetic cohort: realistic DICOM, truth kept apart, known answers."""

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dosepaint.geometry import resample
from dosepaint.io import dicom as dcm
from dosepaint.io import files
from dosepaint.synthetic.generate import F18_HALF_LIFE_S, PRESETS


def test_gtv_volume_hits_its_target(tiny_patient):
    t = tiny_patient["truth"]
    assert t["gtv_volume_cc"] == pytest.approx(t["gtv_volume_target_cc"], rel=0.03)
    v = t["structure_volumes_cc"]
    assert v["GTV"] < v["CTV_HD"] < v["CTV_LD"] < v["BODY"]


def test_truth_is_kept_apart_from_the_dicom(tiny_patient):
    dicom_files = [p for p in tiny_patient["dicom"].rglob("*") if p.is_file()]
    assert not [p for p in dicom_files if p.suffix in {".gz", ".json", ".tfm"}]
    assert (tiny_patient["truth_dir"] / "truth.json").exists()
    assert (tiny_patient["truth_dir"] / "cell_density.nii.gz").exists()


def test_series_are_realistic(tiny_patient):
    series, skipped = dcm.scan_folder(tiny_patient["dicom"])
    kinds = {s.kind: s for s in series}
    assert sorted(kinds) == ["CT", "DWI", "PT", "RTDOSE", "RTSTRUCT", "T2W"]
    assert skipped == ["README.txt"]
    assert kinds["T2W"].frame_of_reference != kinds["CT"].frame_of_reference  # MR on its own frame
    assert kinds["DWI"].frame_of_reference == kinds["T2W"].frame_of_reference
    assert kinds["PT"].frame_of_reference == kinds["CT"].frame_of_reference
    assert kinds["DWI"].bvalues == set(PRESETS["tiny"].bvalues)
    ct = pydicom.dcmread(kinds["CT"].files[0])
    assert [float(v) for v in ct.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]  # head-first prone
    assert ct.PatientPosition == "HFP"
    assert ct.RescaleIntercept == -1024
    dwi = pydicom.dcmread(kinds["DWI"].files[0])
    assert "DiffusionBValue" in dwi and dcm.pgse_timing_ms(dwi) == (20.0, 40.0)
    pet = pydicom.dcmread(kinds["PT"].files[0])
    assert pet.Units == "BQML" and pet.DecayCorrection == "START"
    rd = pydicom.dcmread(kinds["RTDOSE"].files[0])
    assert rd.DoseType == "EFFECTIVE"


def test_fake_identity_is_planted(tiny_patient):
    ident = tiny_patient["truth"]["identity"]
    series, _ = dcm.scan_folder(tiny_patient["dicom"])
    for s in series:
        ds = pydicom.dcmread(s.files[0], stop_before_pixels=True)
        assert str(ds.PatientName) == ident["PatientName"]
        assert ds.PatientID == ident["PatientID"]
        assert ds.InstitutionName == ident["InstitutionName"]


def test_dwi_background_is_rician(tiny_patient):
    # Air in the DWI corners holds pure noise: Rayleigh with mean σ√(π/2).
    series, _ = dcm.scan_folder(tiny_patient["dicom"])
    dwi = next(s for s in series if s.kind == "DWI")
    signals, _, _, _ = dcm.read_dwi(dwi.files)
    corner = signals[:, :, :6, :6]
    sigma = tiny_patient["truth"]["dwi_noise_sigma"]
    assert corner.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)


def test_pet_headers_give_back_the_true_suv(tiny_patient):
    """SUVbw = C · weight / (dose · 2^(−Δt/T½)) from the headers equals the truth in large uniform tissue."""
    t = tiny_patient["truth"]["pet"]
    series, _ = dcm.scan_folder(tiny_patient["dicom"])
    pet_series = next(s for s in series if s.kind == "PT")
    bqml, grid, _ = dcm.read_volume(pet_series.files)
    suv = bqml * t["weight_kg"] * 1000 / (t["dose_bq"] * 2 ** (-t["uptake_s"] / F18_HALF_LIFE_S))
    true_img = files.read_image(tiny_patient["truth_dir"] / "suv.nii.gz")
    labels = files.read_image(tiny_patient["truth_dir"] / "labels.nii.gz")
    true_on_pet = sitk.GetArrayFromImage(resample(true_img, grid))
    # Muscle (label 2) well inside: erode so the PSF does not mix neighbours.
    muscle = sitk.BinaryErode(sitk.Cast(labels == 2, sitk.sitkUInt8), [4, 4, 3])
    inner = sitk.GetArrayFromImage(resample(sitk.Cast(muscle, sitk.sitkFloat32), grid)) > 0.99
    assert inner.sum() > 100
    assert np.median(suv[inner]) == pytest.approx(np.median(true_on_pet[inner]), rel=0.03)


def test_delivered_dose_covers_the_gtv(tiny_patient):
    series, _ = dcm.scan_folder(tiny_patient["dicom"])
    dose, grid, meta = dcm.read_rtdose(next(s for s in series if s.kind == "RTDOSE").files[0])
    gtv = (
        sitk.GetArrayFromImage(resample(files.read_image(tiny_patient["truth_dir"] / "masks" / "GTV.nii.gz"), grid))
        > 0.5
    )
    assert meta["DoseType"] == "EFFECTIVE"
    assert np.median(dose[gtv]) == pytest.approx(73.6, rel=0.04)
    assert dose[gtv].max() < 1.15 * 73.6


def test_outcome_follows_the_truth_model(tiny_patient):
    m = tiny_patient["truth"]["model"]
    assert 0 < m["tcp"] < 1
    # TCP = exp(−N_surv): the recorded clonogen count and TCP are consistent with a mean effect
    # between the LQ effect of 65 and 80 Gy(RBE) in 16 fractions.
    e_lo, e_hi = (m["alpha"] * d + m["beta"] * d**2 / 16 for d in (65.0, 80.0))
    n_surv = -np.log(m["tcp"])
    assert m["clonogens_total"] * np.exp(-e_hi) < n_surv < m["clonogens_total"] * np.exp(-e_lo)


def test_generation_is_deterministic(tiny_patient, tmp_path):
    import hashlib

    from .helpers import generate_tiny

    generate_tiny(tmp_path / "dicom", tmp_path / "truth")

    def digest(folder):
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    assert digest(tmp_path / "dicom") == digest(tiny_patient["dicom"])
    assert digest(tmp_path / "truth") == digest(tiny_patient["truth_dir"])
