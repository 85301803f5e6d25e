"""A corpus of bad inputs generated here from the tiny synthetic patient (never patient data).

Each case breaks one thing in a copy of a good export (or a sheet or a config) and asserts one clear
error that names the patient, the file or folder, and the problem; the good export is never modified.
The cases of the patient sheet and of the config are in ``test_cohort.py`` and ``test_workflow.py``
(duplicate ids, ``../`` in ``dicom_dir``, unknown keys, …); the count of the whole corpus is in
:data:`CASES` here plus those.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pydicom
import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.io import dicom as dcm
from dosepaint.io import files
from dosepaint.io.dicom_write import uid
from dosepaint.stages import check, ingest
from dosepaint.stages.pet import suv_factor

from .helpers import checksums, ingest_params, outputs_in

PID = "BAD01"


def series_files(folder: Path, kind: str) -> list[Path]:
    series, _ = dcm.scan_folder(folder)
    return sorted(next(s for s in series if s.kind == kind).files)


def by_position(paths):
    return sorted(paths, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def edit(paths, change):
    """Apply ``change(ds)`` to each DICOM file and save it in place (in the copy)."""
    for p in paths:
        ds = pydicom.dcmread(p)
        change(ds)
        ds.save_as(p)


def drop(folder, *kinds):
    for kind in kinds:
        for f in series_files(folder, kind):
            f.unlink()


# -- the mutations: folder -> (file or folder the error must name, relative to the export) -------------


def truncated_ct(folder, roi=None):
    f = by_position(series_files(folder, "CT"))[3]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 2000])  # the header survives, the pixel data is cut short
    return f


def missing_ct_slice(folder, roi=None):
    by_position(series_files(folder, "CT"))[4].unlink()
    return series_files(folder, "CT")[0].parent


def inconsistent_spacing(folder, roi=None):
    """One slice 1.5 mm closer to its predecessor: a gap shorter than the others, not a missing slice."""
    moved = by_position(series_files(folder, "CT"))[5]
    edit(
        [moved],
        lambda ds: setattr(
            ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) - 1.5]
        ),
    )
    return moved


def mixed_series(folder, roi=None):
    """A second CT series (a re-export with new UIDs) in the same folder as the first."""
    ct = series_files(folder, "CT")
    for f in ct:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid("second", ds.SeriesInstanceUID)
        ds.SOPInstanceUID = uid("second", ds.SOPInstanceUID)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "CT re-export"
        ds.save_as(f.with_name("copy_" + f.name))
    return folder


def dwi_single_bvalue(folder, roi=None):
    dwi = series_files(folder, "DWI")
    edit(dwi, lambda ds: setattr(ds, "DiffusionBValue", 800.0))
    return dwi[0].parent


def dwi_missing_bvalue(folder, roi=None):
    dwi = series_files(folder, "DWI")
    edit(dwi[:3], lambda ds: delattr(ds, "DiffusionBValue"))
    return dwi[0].parent


def dwi_negative_signal(folder, roi=None):
    dwi = series_files(folder, "DWI")
    edit(dwi[:2], lambda ds: setattr(ds, "RescaleIntercept", "-5000"))
    return dwi[0].parent


def rtstruct_other_ct(folder, roi=None):
    rs = series_files(folder, "RTSTRUCT")[0]

    def other(ds):
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = uid("another", "CT")

    edit([rs], other)
    return rs


def _roi_contours(name):
    def change(ds):
        number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == name)
        return next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == number)

    return change


def empty_contour(folder, name):
    rs = series_files(folder, "RTSTRUCT")[0]
    edit([rs], lambda ds: setattr(_roi_contours(name)(ds), "ContourSequence", pydicom.Sequence([])))
    return rs


def open_contour(folder, name):
    rs = series_files(folder, "RTSTRUCT")[0]

    def two_points(ds):
        for c in _roi_contours(name)(ds).ContourSequence:
            c.ContourData = list(c.ContourData)[:6]
            c.NumberOfContourPoints = 2

    edit([rs], two_points)
    return rs


def missing_structure(folder, name):
    rs = series_files(folder, "RTSTRUCT")[0]

    def rename(ds):
        for r in ds.StructureSetROISequence:
            if r.ROIName == name:
                r.ROIName = "Unknown_ROI"

    edit([rs], rename)
    return rs


def no_pet(folder, roi=None):
    drop(folder, "PT")
    return folder


# PET header problems: ingest keeps the images and records the problem; the PET stage stops on it.
def pet_edit(change):
    def mutate(folder, roi=None):
        edit(series_files(folder, "PT"), change)
        return series_files(folder, "PT")[0]

    return mutate


def _del(*keys):
    def change(ds):
        for key in keys:
            if key in ds:
                delattr(ds, key)
            rp = ds.RadiopharmaceuticalInformationSequence[0]
            if key in rp:
                delattr(rp, key)

    return change


CASES = {
    # case: (mutation, message regex, stage that must stop)
    "truncated DICOM": (truncated_ct, "unreadable pixel data", "ingest"),
    "missing slice": (missing_ct_slice, "missing slice", "ingest"),
    "inconsistent slice spacing": (inconsistent_spacing, "inconsistent slice spacing: gap of", "ingest"),
    "mixed series in one folder": (mixed_series, "2 candidate CT series, cannot choose", "ingest"),
    "DWI with a single b-value": (
        dwi_single_bvalue,
        r"1 distinct b-value\(s\) \[800.0\]; an ADC needs at least two",
        "ingest",
    ),
    "DWI without b-value tags": (dwi_missing_bvalue, "without a b-value", "ingest"),
    "negative DWI signal": (dwi_negative_signal, r"negative signal at b = \[", "ingest"),
    "RTSTRUCT of another CT": (rtstruct_other_ct, "another frame of reference", "ingest"),
    "empty contour (GTV)": (lambda f, roi: empty_contour(f, roi["GTV"]), "has no contours", "ingest"),
    "open contour (CTV_HD)": (lambda f, roi: open_contour(f, roi["CTV_HD"]), r"contour with 2 point\(s\)", "ingest"),
    "missing required structure (BODY)": (
        lambda f, roi: missing_structure(f, roi["BODY"]),
        r"required structure\(s\) \['BODY'\] not found",
        "ingest",
    ),
    "missing required modality (PET)": (no_pet, "no PT series found", "ingest"),
    "PET without patient weight": (pet_edit(_del("PatientWeight")), "PatientWeight", "pet"),
    "PET without injected dose": (pet_edit(_del("RadionuclideTotalDose")), "RadionuclideTotalDose", "pet"),
    "PET without injection time": (
        pet_edit(_del("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime")),
        "RadiopharmaceuticalStartTime",
        "pet",
    ),
    "PET in unsupported units": (pet_edit(lambda ds: setattr(ds, "Units", "PROPCPS")), "Units", "pet"),
}


@pytest.fixture
def export(tiny_patient, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_clear_error(case, export, tiny_patient, config_schema, tmp_path):
    before = checksums(tiny_patient["dicom"])
    mutate, message, stage = CASES[case]
    named = Path(mutate(export, tiny_patient["truth"]["roi_names"]))
    over = {}
    if stage == "pet" or case.startswith("missing required modality"):
        # Only what the check needs (no registration): the PET header problems surface in the PET stage.
        drop(export, "T2W", "DWI")
        over["required_modalities"] = ["CT", "RTSTRUCT", "PT", "RTDOSE"]
    out = outputs_in(tmp_path / "out")
    with pytest.raises(DosepaintInputError) as err:
        ingest.run({"dicom_dir": str(export)}, out, params=ingest_params(config_schema, pid=PID, **over))
        assert stage == "pet", f"{case}: ingest accepted it"
        suv_factor(files.read_json(out["pet_json"]), pid=PID, path=out["pet_json"])
    text = str(err.value)
    assert err.value.patient == PID and text.startswith(f"patient {PID}, file "), text
    assert re.search(message, text), (case, text)
    if stage == "ingest":
        assert str(named) in text or str(named.relative_to(export)) in text, (case, named, text)
    else:  # the PET stage names the ingest record and the DICOM file whose header lacks it
        assert out["pet_json"] in text and "DICOM file" in text, text
    # The input check, run before any ingest, excludes the patient for the same problem and file.
    params = {**ingest_params(config_schema, pid=PID, **over), "on_input_error": "exclude"}
    record = check.run({"dicom_dir": str(export)}, {"check": str(tmp_path / "check.json")}, params=params)
    assert files.read_json(tmp_path / "check.json") == record
    assert record["status"] == "excluded" and record["patient_id"] == PID, record
    at_fault = export / record["file"]  # relative to the export: the named file, or a file in the named folder
    assert at_fault.exists() and (at_fault == named or named in at_fault.parents), (case, named, record)
    if stage == "ingest":
        assert record["problem"] == err.value.problem, (record, text)
    else:
        assert record["problem"].startswith("no SUV can be computed from the PET header"), record
        assert re.search(message, record["problem"]), record
    with pytest.raises(DosepaintInputError) as stop:  # on_input_error: stop raises the same error
        check.run(
            {"dicom_dir": str(export)},
            {"check": str(tmp_path / "stop.json")},
            params={**params, "on_input_error": "stop"},
        )
    assert stop.value.problem == record["problem"] and not (tmp_path / "stop.json").exists()
    assert checksums(tiny_patient["dicom"]) == before  # the good export is untouched


@pytest.mark.slow
def test_input_check_passes_the_good_export(tiny_patient, config_schema, tmp_path):
    before = checksums(tiny_patient["dicom"])
    params = {**ingest_params(config_schema, pid=PID), "on_input_error": "stop"}
    record = check.run({"dicom_dir": str(tiny_patient["dicom"])}, {"check": str(tmp_path / "c.json")}, params=params)
    registration, protocol = record.pop("registration"), record.pop("dwi_protocol")
    assert record == {"patient_id": PID, "status": "included", "file": None, "problem": None}
    # The DWI protocol its library is named by: the tiny generator's b-values and header timing.
    assert protocol == {"bvalues_s_per_mm2": [0, 50, 100, 400, 700, 1000], "pgse_delta_ms": 20.0,
                        "pgse_Delta_ms": 40.0, "timing_source": "header (private dosepaint block)"}  # fmt: skip
    assert files.read_json(tmp_path / "c.json")["dwi_protocol"] == protocol
    # The check registered T2w → CT and DWI → T2w, each with its QC inside the thresholds.
    for name in ("t2w_to_ct", "dwi_to_t2w"):
        qc = registration[name]["qc"]
        assert qc["inside_fraction"] >= qc["thresholds"]["min_inside_fraction"], (name, qc)
        assert qc["body_dice"] >= qc["thresholds"]["min_body_dice"], (name, qc)
        assert qc["tre_proxy_mm"] <= qc["thresholds"]["max_tre_proxy_mm"], (name, qc)
    assert checksums(tiny_patient["dicom"]) == before


def test_an_export_without_rtstruct_is_a_clear_error_even_when_not_required(export, config_schema, tmp_path):
    drop(export, "RTSTRUCT")
    params = {**ingest_params(config_schema, pid=PID, required_modalities=["CT"]), "on_input_error": "exclude"}
    record = check.run({"dicom_dir": str(export)}, {"check": str(tmp_path / "c.json")}, params=params)
    assert record["status"] == "excluded" and record["file"] == "."
    assert record["problem"].startswith("no RTSTRUCT series found; the ingest needs the planning CT and its RTSTRUCT")
