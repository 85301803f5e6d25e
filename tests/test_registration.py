"""Registration: partial fields of view, QC after the fact, failures as clear exclusions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dosepaint import cohort
from dosepaint.errors import DosepaintInputError
from dosepaint.io import dicom as dcm
from dosepaint.io import files
from dosepaint.registration import register_rigid, rigid_error
from dosepaint.registration_qc import qc_failures, registration_qc
from dosepaint.stages import check
from dosepaint.stages.ingest import discover
from dosepaint.stages.register import register_checked, registration_kwargs

from .helpers import generate_tiny, ingest_params


def _images(folder, pid="SYN001"):
    chosen, _, _ = discover(folder, patient=pid, required_modalities=["CT", "T2W"])
    ct, grid, _ = dcm.read_volume(chosen["CT"].files, patient=pid)
    t2, t2_grid, _ = dcm.read_volume(chosen["T2W"].files, patient=pid)
    return grid.image(ct), t2_grid.image(t2), chosen["T2W"]


def _tre(truth_dir, transform):
    gtv, grid = files.read_array(truth_dir / "masks" / "GTV.nii.gz")
    pts = np.stack([c[gtv > 0] for c in grid.world()], axis=1)[::10]
    return rigid_error(transform, files.read_transform(truth_dir / "mr_to_ct.tfm").GetInverse(), pts)["mean_mm"]


@pytest.mark.slow
def test_a_t2w_slab_off_the_ct_centre_registers_within_1_mm(tiny_patient, config_schema):
    """A T2w slab covering 35 % of the CT's cranio-caudal extent, its centre 30 mm off the CT body's
    centre, registers to the truth within 1 mm from the default multi-start, and passes its QC."""
    ct, t2, series = _images(tiny_patient["dicom"])
    ct_extent = ct.GetSize()[2] * ct.GetSpacing()[2]
    n = int(0.35 * ct_extent / t2.GetSpacing()[2])
    centre = t2.GetSize()[2] // 2 + int(30 / t2.GetSpacing()[2])
    slab = t2[:, :, centre - n // 2 : centre - n // 2 + n]
    assert n * t2.GetSpacing()[2] <= 0.4 * ct_extent
    reg = ingest_params(config_schema)["registration"]
    result, qc = register_checked(
        ct, slab, reg=reg, patient="SYN001", series=series, what="T2w → CT", initial="auto", fixed_threshold=-400.0
    )
    assert _tre(tiny_patient["truth_dir"], result.transform) < 1.0
    assert qc["overlap_fraction"] < 0.5 and qc["inside_fraction"] > 0.95 and qc["body_dice"] > 0.9


def test_each_pyramid_level_stops_at_the_configured_convergence_value(tiny_patient, config_schema):
    """``ingest.registration.convergence_minimum_value`` reaches ITK's descent: the default (1e-7) and
    SimpleITK's 1e-6 stop the last level at its flat metric (32 iterations on this patient, TRE 0.11 mm
    without Powell), a looser 1e-3 after 10 iterations, more than 1 mm off the truth."""
    ct, t2, _ = _images(tiny_patient["dicom"])
    kw = {**registration_kwargs(ingest_params(config_schema)["registration"]), "refine": False, "iterations": 60}
    assert kw["convergence"] == 1e-7
    default = register_rigid(ct, t2, fixed_threshold=-400.0, **kw)
    simpleitk = register_rigid(ct, t2, fixed_threshold=-400.0, **{**kw, "convergence": 1e-6})
    assert simpleitk.transform.GetParameters() == default.transform.GetParameters()
    loose = register_rigid(ct, t2, fixed_threshold=-400.0, **{**kw, "convergence": 1e-3})
    assert default.stop.endswith(f"Convergence checker passed at iteration {default.iterations}.")
    assert loose.iterations < default.iterations < 60
    truth = tiny_patient["truth_dir"]
    assert _tre(truth, default.transform) < 0.2 < 1.0 < _tre(truth, loose.transform)


def test_a_moving_image_without_a_body_is_a_clear_error_naming_the_series(tiny_patient, config_schema):
    ct, t2, series = _images(tiny_patient["dicom"])
    blank = sitk.Image(t2.GetSize(), sitk.sitkFloat32)
    blank.CopyInformation(t2)
    with pytest.raises(DosepaintInputError) as err:
        register_checked(
            ct,
            blank,
            reg=ingest_params(config_schema)["registration"],
            patient="SYN001",
            series=series,
            what="T2w → CT",
            initial="auto",
            fixed_threshold=-400.0,
        )
    text = str(err.value)
    assert text.startswith("patient SYN001, file ")
    assert "T2w → CT registration of series 4 'T2 TSE axial pelvis'" in text
    assert "no body found in an image without signal" in text and "itk::" not in text


def test_qc_measures_flag_a_misregistration(tiny_patient):
    """The QC of the true result passes; 80 mm off laterally lowers the body Dice (it is blind to a few
    cm: a gross-miss check); the T2w moved out of the CT fails the inside fraction."""
    ct, t2, _ = _images(tiny_patient["dicom"])
    truth = files.read_transform(tiny_patient["truth_dir"] / "mr_to_ct.tfm").GetInverse()
    good = registration_qc(ct, t2, truth, fixed_threshold=-400.0, moving_threshold=None)
    off = sitk.CompositeTransform([truth, sitk.TranslationTransform(3, (80.0, 0.0, 0.0))])
    bad = registration_qc(ct, t2, off, fixed_threshold=-400.0, moving_threshold=None)
    limits = dict(min_inside_fraction=0.5, min_body_dice=0.8, max_tre_proxy_mm=3.0)
    assert good["body_dice"] > 0.95 and qc_failures(good, **limits) == []
    assert bad["body_dice"] < good["body_dice"] - 0.1
    gone = sitk.CompositeTransform([truth, sitk.TranslationTransform(3, (0.0, 0.0, 250.0))])
    outside = registration_qc(ct, t2, gone, fixed_threshold=-400.0, moving_threshold=None)
    assert outside["inside_fraction"] < 0.2
    assert qc_failures(outside, **limits)[0].startswith("moving body inside the fixed image")
    assert good["inside_fraction"] == 1.0


@pytest.mark.slow
def test_a_t2w_of_another_patient_is_excluded_at_the_input_check(tiny_patient, config_schema, tmp_path):
    """Another patient's T2w in the export: the check's registration QC excludes the patient, naming the
    series and the measure with its threshold (``max_metric`` set as a clinic would from its own data)."""

    other = tmp_path / "other"
    generate_tiny(other / "dicom", other / "truth", pid="SYN002", index=1)
    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    own = _images(export)[2]
    for f in own.files:
        f.unlink()
    foreign = _images(other / "dicom", "SYN002")[2]
    for i, f in enumerate(foreign.files):
        shutil.copy(f, export / f"foreign_t2_{i:03d}.dcm")
    params = ingest_params(config_schema, required_modalities=["CT", "RTSTRUCT", "T2W"])
    params["registration"] = {**params["registration"], "qc": {**params["registration"]["qc"], "max_metric": -0.7}}
    record = check.run(
        {"dicom_dir": str(export)}, {"check": str(tmp_path / "c.json")}, params={**params, "on_input_error": "exclude"}
    )
    assert record["status"] == "excluded" and record["file"].startswith("foreign_t2_"), record
    assert record["problem"].startswith(
        "T2w → CT registration of series 4 'T2 TSE axial pelvis' fails its QC: final Mattes MI "
    ), record
    assert "(maximum -0.7)" in record["problem"] and "ingest.registration.qc" in record["problem"]
    # The patient's own T2w passes the same thresholds.
    ok = check.run(
        {"dicom_dir": str(tiny_patient["dicom"])},
        {"check": str(tmp_path / "ok.json")},
        params={**params, "on_input_error": "stop"},
    )
    assert ok["status"] == "included"


def test_default_held_out_size_follows_the_study():
    assert [cohort.default_n_test(n) for n in (3, 4, 6, 10, 37, 100)] == [1, 1, 2, 3, 10, 27]
