"""Failure isolation: a per-patient stage records its failure instead of stopping the cohort."""

from __future__ import annotations

import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.io import files
from dosepaint.stages import inclusion
from dosepaint.stages.guard import run_guarded


def _outputs(tmp_path, stage):
    return {
        "table": str(tmp_path / stage / "table.tsv"),
        "masks": str(tmp_path / stage / "masks"),
        "status": str(tmp_path / "status" / f"{stage}.json"),
    }


def test_a_failing_stage_writes_its_status_and_placeholders(tmp_path):
    def fails(inputs, outputs, *, params):
        (tmp_path / "ingest").mkdir()
        (tmp_path / "ingest" / "table.tsv").write_text("half-written")
        raise DosepaintInputError(
            "T2w → CT registration failed",
            patient="P1",
            path=tmp_path / "results" / "patients" / "P1" / "dicom" / "t2.dcm",
        )

    out = _outputs(tmp_path, "ingest")
    record = run_guarded(fails, {}, out, params={"patient_id": "P1"}, stage="ingest")
    assert record == files.read_json(out["status"])
    assert record == {
        "patient_id": "P1",
        "stage": "ingest",
        "status": "failed",
        "file": "patients/P1/dicom/t2.dcm",
        "problem": "T2w → CT registration failed",
    }
    assert (tmp_path / "ingest" / "table.tsv").read_text() == ""  # the half-written file is a placeholder
    assert (tmp_path / "ingest" / "masks").is_dir()


def test_a_raw_library_error_is_recorded_with_its_type(tmp_path):
    def fails(inputs, outputs, *, params):
        raise RuntimeError("/src/itkImageToImageMetricv4.hxx:270:\nAll samples map outside moving image buffer")

    record = run_guarded(fails, {}, _outputs(tmp_path, "dwi"), params={"patient_id": "P2"}, stage="dwi")
    assert record["problem"] == "RuntimeError: All samples map outside moving image buffer"


def test_a_stage_after_a_failure_is_skipped_and_names_its_origin(tmp_path):
    upstream = tmp_path / "status" / "ingest.json"
    files.write_json(
        {"patient_id": "P1", "stage": "ingest", "status": "failed", "file": None, "problem": "x"}, upstream
    )
    ran = []
    record = run_guarded(
        lambda i, o, *, params: ran.append(1),
        {"upstream": str(upstream)},
        _outputs(tmp_path, "pet"),
        params={"patient_id": "P1"},
        stage="pet",
    )
    assert not ran and record["status"] == "skipped" and record["origin"] == "ingest"
    # a stage after the skipped one names the first failure too
    record = run_guarded(
        lambda i, o, *, params: ran.append(1),
        {"upstream": [str(tmp_path / "status" / "pet.json")]},
        _outputs(tmp_path, "plan"),
        params={"patient_id": "P1"},
        stage="plan",
    )
    assert not ran and record["origin"] == "ingest"


def test_stop_mode_raises_and_a_good_stage_records_ok(tmp_path):
    def fails(inputs, outputs, *, params):
        raise ValueError("bad")

    with pytest.raises(ValueError):
        run_guarded(
            fails, {}, _outputs(tmp_path, "a"), params={"patient_id": "P1", "on_input_error": "stop"}, stage="a"
        )
    seen = {}
    record = run_guarded(
        lambda i, o, *, params: seen.update(o), {}, _outputs(tmp_path, "b"), params={"patient_id": "P1"}, stage="b"
    )
    assert record["status"] == "ok" and "status" not in seen  # the stage never sees the status path


def test_exclusions_list_each_patients_first_failure_in_sheet_order(tmp_path):
    checks = []
    for pid, status in (("P1", "included"), ("P2", "excluded"), ("P3", "included")):
        path = tmp_path / f"{pid}.json"
        files.write_json(
            {
                "patient_id": pid,
                "status": status,
                "file": "ct/1.dcm" if status == "excluded" else None,
                "problem": "cut short" if status == "excluded" else None,
            },
            path,
        )
        checks.append(str(path))
    statuses = []
    for pid, stage, status in (("P3", "ingest", "ok"), ("P3", "pet", "failed"), ("P1", "ingest", "ok")):
        path = tmp_path / f"{pid}_{stage}.json"
        files.write_json(
            {
                "patient_id": pid,
                "stage": stage,
                "status": status,
                "file": None,
                "problem": "no uptake" if status == "failed" else None,
            },
            path,
        )
        statuses.append(str(path))
    table = inclusion.run(
        {"checks": checks, "statuses": statuses},
        {"excluded": str(tmp_path / "ex.tsv")},
        params={"patient_ids": ["P1", "P2", "P3"]},
    )
    assert table[["patient_id", "stage", "problem"]].values.tolist() == [
        ["P2", "input check", "cut short"],
        ["P3", "pet", "no uptake"],
    ]
