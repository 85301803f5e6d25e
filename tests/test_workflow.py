"""The Snakemake workflow itself: lint, formatting, dry runs, clear config errors, a tiny end-to-end run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.errors
import pytest
import SimpleITK as sitk

from dosepaint.io import dicom as dcm
from dosepaint.io.deidentify import basic_profile_violations
from dosepaint.validation import ingest_errors

from .helpers import dicompyler_dvh_check

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=ROOT, timeout=1800):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_of_the_main_job_plans_the_whole_cohort(tmp_path):
    proc = snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    jobs = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    # Per-patient jobs after the input check are added once the checks have run (the split is a checkpoint).
    assert jobs["synthesize_patient"] == 37 and jobs["check_inputs"] == 37
    assert jobs["make_split"] == 1 and jobs["ingest_summary"] == 1
    assert jobs["pet_summary"] == 1 and jobs["tcp_fit"] == 1


def test_per_patient_stages_of_a_single_patient_need_no_split(tmp_path):
    """One patient cannot be split, but its ingest, DWI, PET and plans need only the input checks."""
    cfg = tmp_path / "one.yaml"
    cfg.write_text(
        f"results: {tmp_path}\nsynthetic:\n  n_patients: 1\nplanning:\n  patients: all\n"
        "  tcp:\n    source: config\nrobustness:\n  sigma_scope: patient\n"
    )
    targets = [
        f"{tmp_path}/cohort/ingest_summary.tsv",
        f"{tmp_path}/patients/SYN001/plans/metrics.tsv",
        f"{tmp_path}/patients/SYN001/robustness/scenario_metrics.tsv",
    ]
    proc = snakemake("-n", "--cores", "1", "--configfile", str(cfg), "--", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exclusions" in proc.stdout and "make_split" not in proc.stdout and "tcp_fit" not in proc.stdout


def test_unknown_config_key_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"results: {tmp_path / 'res'}\ncohort:\n  source: synthetic\n  n_tset: 3\n")
    proc = snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "invalid configuration: at 'cohort': Additional properties are not allowed ('n_tset' was unexpected)" in out
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(
    "jobs, setup_method, expect",
    [
        ("patient", "rigid_shift", 1),
        ("scenario", "rigid_shift", 3),
        ("patient", "recalculate", 1),
        ("scenario", "recalculate", 21),
    ],
)
def test_scenario_jobs_make_one_job_per_patient_or_per_scenario(tmp_path, jobs, setup_method, expect):
    """robustness.scenario_jobs: the recalculated scenarios of a patient (the nominal and two range errors,
    or all 21 with setup_method: recalculate) in one job or one job each."""
    cfg = tmp_path / "one.yaml"
    cfg.write_text(
        f"results: {tmp_path}\nsynthetic:\n  n_patients: 1\nplanning:\n  patients: all\n  tcp:\n    source: config\n"
        f"robustness:\n  sigma_scope: patient\n  scenario_jobs: {jobs}\n  setup_method: {setup_method}\n"
    )
    target = f"{tmp_path}/patients/SYN001/robustness/scenario_metrics.tsv"
    proc = snakemake("-n", "--cores", "1", "--configfile", str(cfg), "--", target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(ln.split() for ln in proc.stdout.splitlines() if len(ln.split()) == 2 and ln.split()[1].isdigit())
    assert int(counts["scenario_dose"]) == expect
    assert int(counts.get("scenario_shift", 0)) == (setup_method == "rigid_shift")


@pytest.mark.parametrize(
    ("robustness", "message"),
    [
        ("  range_errors_pct: [3, -3]\n", "must contain the nominal scenario"),
        ("  setup_shifts_mm: [[0, 0, 0], [3, 0]]\n", "at 'robustness/setup_shifts_mm/1': [3, 0] is too short"),
        ("  setup_method: shift\n", "'shift' is not one of ['recalculate', 'rigid_shift']"),
    ],
)
def test_bad_scenario_grid_stops_before_any_job(tmp_path, robustness, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"results: {tmp_path / 'res'}\nrobustness:\n{robustness}")
    proc = snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "res").exists()


def test_bad_patient_sheet_stops_before_any_job(tmp_path):
    for pid in ("A", "B"):
        (tmp_path / "dicom" / pid).mkdir(parents=True)
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tevent\ttime_months\nA\tdicom/A\t0\t30\nA\tdicom/B\t1\t12\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"results: {tmp_path / 'res'}\ncohort:\n  source: sheet\n  sheet: {sheet}\n")
    proc = snakemake("-n", "--cores", "1", "--configfile", str(cfg))
    assert proc.returncode != 0
    assert "duplicate patient_id 'A' (lines 2 and 3)" in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_a_bad_export_excludes_its_patient_and_the_others_complete(tmp_path, tiny_patient):
    """A sheet cohort of three exports, one with a truncated CT file: with ``--keep-going`` the run
    succeeds for the other two, the excluded patient is listed with the file and the problem, and it
    takes no part in the split or the cohort tables. ``on_input_error: stop`` stops on it instead."""
    from .helpers import checksums
    from .test_bad_inputs import truncated_ct

    for pid in ("P1", "P2", "P3", "P4"):
        shutil.copytree(tiny_patient["dicom"], tmp_path / "dicom" / pid)
    truncated = truncated_ct(tmp_path / "dicom" / "P2").relative_to(tmp_path / "dicom" / "P2")
    zero_pet(tmp_path / "dicom" / "P4")  # passes the input check, then fails in the PET stage
    before = checksums(tmp_path / "dicom")
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(
        "patient_id\tdicom_dir\tevent\ttime_months\n"
        "P1\tdicom/P1\t1\t20\nP2\tdicom/P2\t0\t50\nP3\tdicom/P3\t0\t60\nP4\tdicom/P4\t1\t30\n"
    )
    results = tmp_path / "results"
    config = "results: {results}\ncohort:\n  source: sheet\n  sheet: {sheet}\n  n_test: 1\n  on_input_error: {mode}\n"
    (tmp_path / "exclude.yaml").write_text(config.format(results=results, sheet=sheet, mode="exclude"))
    targets = [
        str(results / "cohort" / n) for n in ("ingest_summary.tsv", "excluded.tsv", "dwi_summary.tsv", "split.tsv")
    ]
    proc = snakemake(
        "--cores",
        "2",
        "--keep-going",
        "--configfile",
        "config/tiny.yaml",
        str(tmp_path / "exclude.yaml"),
        "--",
        *targets,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    excluded = pd.read_csv(results / "cohort" / "excluded.tsv", sep="\t", keep_default_na=False)
    assert excluded[["patient_id", "stage"]].values.tolist() == [["P2", "input check"], ["P4", "pet"]]
    assert excluded["file"][0] == str(truncated) and "unreadable pixel data" in excluded["problem"][0]
    assert excluded["file"][1] == "patients/P4/ingest/pet.json" and "no uptake" in excluded["problem"][1]
    assert f"P2 (input check): {truncated}: " in proc.stderr  # said at the end of the run, not only in a table
    assert "P4 (pet): " in proc.stderr
    assert "the PET has no uptake" in (results / "logs" / "pet" / "P4.log").read_text()
    split = pd.read_csv(results / "cohort" / "split.tsv", sep="\t")
    assert sorted(split["patient_id"]) == ["P1", "P3"] and sorted(split["split"]) == ["test", "train"]
    for table in ("ingest_summary.tsv", "dwi_summary.tsv"):
        assert pd.read_csv(results / "cohort" / table, sep="\t")["patient_id"].tolist() == ["P1", "P3"], table
    assert not (results / "patients" / "P2" / "ingest").exists()
    assert "EXCLUDED patient P2, file " in (results / "logs" / "check_inputs" / "P2.log").read_text()
    assert checksums(tmp_path / "dicom") == before  # inputs untouched
    # The exclusion's record, table and log carry no planted identity of the export.
    planted = {v for k, v in tiny_patient["truth"]["identity"].items() if k != "PatientSex"}
    planted |= {p for v in set(planted) for p in v.split("^") if len(p) >= 4 and p not in ("Nobody", "Doctor")}
    assert len(planted) >= 5
    for path in (p for p in results.rglob("*") if p.is_file()):
        assert not [s for s in planted if s.encode() in path.read_bytes()], path
    # The strict mode: the bad patient's check fails, naming the patient, the file and the problem.
    strict = tmp_path / "strict"
    (tmp_path / "stop.yaml").write_text(config.format(results=strict, sheet=sheet, mode="stop"))
    proc = snakemake(
        "--cores",
        "2",
        "--configfile",
        "config/tiny.yaml",
        str(tmp_path / "stop.yaml"),
        "--",
        str(strict / "cohort" / "excluded.tsv"),
    )
    assert proc.returncode != 0
    log = (strict / "logs" / "check_inputs" / "P2.log").read_text()
    assert f"patient P2, file {tmp_path / 'dicom' / 'P2' / truncated}" in log and "unreadable pixel data" in log
    assert not (strict / "cohort" / "excluded.tsv").exists()


def zero_pet(export):
    """Set every PET voxel of an export to 0 (a valid header, nothing to segment)."""
    import numpy as np
    import pydicom

    for path in (p for p in export.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue  # the export's non-DICOM files
        if ds.Modality == "PT":
            ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
            ds.save_as(path)


@pytest.mark.workflow
def test_a_held_out_patient_whose_plan_fails_is_listed_and_the_cohort_completes(tmp_path):
    """Five tiny patients, three held out; after the imaging stages one held-out patient's PET
    prescription (read by the plan stage only) is broken on disk. The whole workflow and the report
    complete (exit 0): the patient is listed in planning_failures.tsv with the plan stage, its later
    stages are skipped, and the held-out statistics over plans count the two others (n stated)."""
    results = tmp_path / "results"
    # truth α 0.08: two local controls and three failures, so both sides of the split have both outcomes
    (tmp_path / "five.yaml").write_text(
        f"results: {results}\nsynthetic:\n  n_patients: 5\n  truth_alpha: 0.08\ncohort:\n  n_test: 3\n"
    )
    args = (
        "--workflow-profile",
        "workflow/profiles/default",
        "--configfile",
        "config/tiny.yaml",
        str(tmp_path / "five.yaml"),
    )
    proc = snakemake(*args, "--", str(results / "cohort" / "split.tsv"), str(results / "cohort" / "pet_summary.tsv"))
    assert proc.returncode == 0, proc.stderr[-5000:]
    split = pd.read_csv(results / "cohort" / "split.tsv", sep="\t")
    test = split.loc[split["split"] == "test", "patient_id"].tolist()
    broken = results / "patients" / test[0] / "pet" / "prescription_contours.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    # mtime is no trigger: nothing upstream reruns, the broken file reaches the plan stage as written
    proc = snakemake(*args, "--rerun-triggers", "params", "input", "code", "software-env")
    assert proc.returncode == 0, proc.stderr[-5000:]
    failures = pd.read_csv(results / "cohort" / "planning_failures.tsv", sep="\t", keep_default_na=False)
    assert failures[["patient_id", "stage"]].values.tolist() == [[test[0], "plan"]]
    assert f"{test[0]} (plan): " in proc.stderr
    status = json.loads((results / "patients" / test[0] / "status" / "robustness.json").read_text())
    assert status["status"] == "skipped" and status["origin"] == "plan"
    stats = json.loads((results / "cohort" / "statistics.json").read_text())
    assert stats["n_patients"] == 2
    assert sorted(pd.read_csv(results / "cohort" / "plan_metrics.tsv", sep="\t")["patient_id"].unique()) == sorted(
        test[1:]
    )
    page = (results / "cohort" / "summary.html").read_text()
    assert "Planning failures (1)" in page and "n = 2 held-out patients with plans" in page
    report = snakemake(*args, "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0 and (tmp_path / "report.html").stat().st_size > 100_000


@pytest.mark.workflow
def test_tiny_cohort_end_to_end(tmp_path):
    """README main job on the tiny preset: synthesis → ingest → summary and split; then a no-op rerun."""
    results = tmp_path / "results"
    args = (
        "--workflow-profile",
        "workflow/profiles/default",
        "--configfile",
        "config/tiny.yaml",
        "--config",
        f"results={results}",
    )
    proc = snakemake(*args)
    assert proc.returncode == 0, proc.stderr[-5000:]
    summary = pd.read_csv(results / "cohort" / "ingest_summary.tsv", sep="\t")
    assert summary["patient_id"].tolist() == ["SYN001", "SYN002", "SYN003", "SYN004"]
    assert set(summary["patient_position"]) == {"HFP", "HFS"}  # one patient is not prone
    dwi = pd.read_csv(results / "cohort" / "dwi_summary.tsv", sep="\t")
    assert dwi["patient_id"].tolist() == summary["patient_id"].tolist()
    assert len(list((results / "libraries").glob("dwi_b0-50-100-400-700-1000_d20_D40.npz"))) == 1  # one protocol
    split = pd.read_csv(results / "cohort" / "split.tsv", sep="\t")
    assert (split["split"] == "test").sum() == 2
    assert pd.read_csv(results / "cohort" / "excluded.tsv", sep="\t").empty  # every patient passed the check
    page = (results / "cohort" / "summary.html").read_text()
    assert "<h2>Excluded patients</h2>" in page and "Excluded patients (" not in page  # a section, no list
    pet = pd.read_csv(results / "cohort" / "pet_metrics.tsv", sep="\t")
    assert len(pet) == 4 * 9 and (pet["reference"] == "truth").all()
    assert pet.groupby("method")["dice"].median().max() > 0.8
    assert (results / "cohort" / "pet_segmentation.png").stat().st_size > 10_000
    for pid in summary["patient_id"]:
        err = ingest_errors(results / "patients" / pid / "ingest", results / "synthetic" / "truth" / pid)
        assert abs(err["gtv_volume_error_pct"]) < 2.0, pid
        assert err["t2w_tre_max_mm"] < 1.5, (pid, err)
        for sub in ("ingest", "synthesize_patient", "dwi", "pet"):
            assert (results / "benchmarks" / sub / f"{pid}.tsv").exists()
    # Plans of the held-out patients: DE raises TCP at its constrained mean dose; the exported
    # RTDOSE read by dicompyler-core with the patient's RTSTRUCT gives our DVH metrics within 1 %.
    plans = pd.read_csv(results / "cohort" / "plan_metrics.tsv", sep="\t")
    test_ids = split.loc[split["split"] == "test", "patient_id"].tolist()
    # The TCP fit used the training patients only, and planning used the fitted model.
    fit = json.loads((results / "cohort" / "tcp_fit.json").read_text())
    assert fit["train_ids"] == split.loc[split["split"] == "train", "patient_id"].tolist()
    assert not set(fit["train_ids"]) & set(test_ids)
    prof = fit["profile_likelihood_alpha"]  # the profile's minimum is the ML fit, up to its grid spacing
    assert min(prof["nll"]) <= fit["estimates"]["maximum_likelihood"]["objective"] + 0.05
    assert fit["estimates"]["maximum_likelihood"]["alpha_ci95_profile"] == prof["ci"]
    fitted = pd.read_csv(results / "cohort" / "tcp_fit_patients.tsv", sep="\t")
    assert fitted["patient_id"].tolist() == fit["train_ids"]
    assert sorted(plans["patient_id"].unique()) == sorted(test_ids)
    for pid in test_ids:
        p = plans[plans["patient_id"] == pid].set_index("plan")
        assert p.loc["de", "tcp"] > p.loc["uniform", "tcp"], pid
        assert p.loc["de", "GTV_Dmean"] / 73.6 == pytest.approx(1.03, abs=0.01), pid
        assert p.loc["dr", "GTV_Dmean"] / 73.6 == pytest.approx(1.00, abs=0.01), pid
        assert p.loc["uniform", "CTV_HD_D50"] == pytest.approx(73.6, rel=0.02), pid
        for metric, rel in dicompyler_dvh_check(results, pid).items():
            assert abs(rel) < 0.01, (pid, metric, rel)
        qc = json.loads((results / "patients" / pid / "plans" / "qc.json").read_text())
        assert qc["tcp_model"]["source"] == "fit (maximum_likelihood)"
        assert qc["tcp_model"]["alpha"] == pytest.approx(fit["model"]["alpha"], rel=1e-12)
        for sub in ("dose_influence", "plan"):
            assert (results / "benchmarks" / sub / f"{pid}.tsv").exists()
    assert (results / "cohort" / "plan_summary.tsv").exists()
    check_robustness(results, plans, test_ids, train_ids=fit["train_ids"])
    check_dicom_rt(results, test_ids, prescription_gy=73.6)
    check_statistics(results, plans, test_ids, train_ids=fit["train_ids"])
    check_job_usage(results)
    # Provenance: the record's checksums are those of the DICOM inputs now (nothing modified them).
    from dosepaint.stages import provenance as pv

    prov = json.loads((results / "provenance.json").read_text())
    assert prov["config"]["synthetic"]["preset"] == "tiny" and prov["seeds"]["tcp_fit.seed"] == 20240101
    for pid in summary["patient_id"]:
        assert prov["patients"][pid]["files"] == pv.folder_checksums(results / "synthetic" / "dicom" / pid), pid
    again = snakemake(*args, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # No training patient reaches a held-out rule: the DAG of a forced rerun of those rules shows
    # only test patients' files among their inputs.
    forced = snakemake(*args, "-n", "--forcerun", "tcp_heldout", "heldout_statistics", "survival", "figures")
    assert forced.returncode == 0, forced.stderr[-3000:]
    blocks = (forced.stdout + forced.stderr).split("\nrule ")
    held = [b for b in blocks if b.split(":")[0] in ("tcp_heldout", "heldout_statistics", "survival", "figures")]
    assert len(held) == 4
    for block in held:
        inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
        for pid in fit["train_ids"]:
            assert f"patients/{pid}/" not in inputs, (block.split(":")[0], pid)
        assert any(f"patients/{pid}/" in inputs for pid in test_ids) or block.startswith("survival")
    # A cohort-level parameter reruns exactly the jobs that use it (params travel through params:).
    split05 = tmp_path / "split05.yaml"
    split05.write_text("statistics:\n  survival:\n    split: 0.5\n")
    changed = snakemake(
        "-n",
        "--workflow-profile",
        "workflow/profiles/default",
        "--configfile",
        "config/tiny.yaml",
        str(split05),
        "--config",
        f"results={results}",
    )
    table = changed.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    jobs = {line.split()[0]: int(line.split()[1]) for line in table if line.strip()}
    assert jobs == {"survival": 1, "figures": 1, "cohort_summary": 1, "provenance": 1, "all": 1, "total": 5}, jobs
    # The README's report command bundles figures and tables.
    rep = snakemake(*args, "--report", str(results / "report.html"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (results / "report.html").read_text(errors="replace")
    assert (results / "report.html").stat().st_size > 100_000
    for name in ("summary.html", "table1.tsv", "fig1b_dvh.png", "km.png", "calibration.png"):
        assert name in html, name
    # Privacy: no planted identity (names, birth dates, IDs, institution) in any output, the report,
    # the logs and the exported RTDOSE included; only the synthetic inputs carry it.
    planted = set()
    for truth in (results / "synthetic" / "truth").glob("*/truth.json"):
        for key, value in json.loads(truth.read_text())["identity"].items():
            if key != "PatientSex":
                planted.add(value)
                planted.update(p for p in value.split("^") if len(p) >= 4 and p not in ("Nobody", "Doctor"))
    assert len(planted) >= 20
    scanned = 0
    for path in results.rglob("*"):
        if path.is_file() and "synthetic" not in path.relative_to(results).parts:
            data = path.read_bytes()
            scanned += 1
            leaks = [s for s in planted if s.encode() in data]
            assert not leaks, (path, leaks)
    assert scanned > 300
    # Exported DICOM is de-identified: the Basic Profile for the attributes we write, pseudonymous ids,
    # no UID of the source export (the plans' RTDOSE and the whole DICOM RT package).
    exported = sorted(results.glob("patients/*/plans/*/rtdose.dcm"))
    assert len(exported) == 3 * len(test_ids)
    exported += (
        sorted(results.glob("patients/*/dicom_rt/*.dcm")) + sorted(results.glob("patients/*/dicom_rt/CT/*.dcm"))[::25]
    )
    for path in exported:
        pid = path.relative_to(results).parts[1]
        ds = pydicom.dcmread(path)
        assert basic_profile_violations(ds, pseudonym=pid) == [], path
        source_uids = set()
        series, _ = dcm.scan_folder(results / "synthetic" / "dicom" / pid)  # the DICOM files of the export
        for f in (f for s in series for f in s.files):
            src = pydicom.dcmread(f, stop_before_pixels=True)
            source_uids |= {
                str(src.get(k))
                for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
                if k in src
            }
        assert len(source_uids) > 50
        assert not {str(e.value) for e in ds.iterall() if e.VR == "UI"} & source_uids, path

    # One stage rerun on finished results (README: "use --forcerun on the stage"): every DWI job gets its
    # protocol's library, named from the input check (named from the ingest checkpoint, the jobs got
    # Snakemake's placeholder instead and failed: snakemake#3862).
    forced = snakemake(*args, "-n", "--forcerun", "dwi")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "<TBD>" not in forced.stdout and any(line.split() == ["dwi", "4"] for line in forced.stdout.splitlines())
    assert forced.stdout.count("/libraries/dwi_b0-50-100-400-700-1000_d20_D40.npz,") == 4, forced.stdout[-3000:]

    # The generated sheet is a valid sheet for "your own exports": plan the same cohort from it.
    cfg = tmp_path / "sheet.yaml"
    cfg.write_text(
        f"results: {tmp_path / 'from_sheet'}\ncohort:\n  source: sheet\n"
        f"  sheet: {results / 'synthetic' / 'patients.tsv'}\n  clinical_columns: [age, sex]\n  n_test: 2\n"
    )
    plan = snakemake("-n", "--cores", "1", "--configfile", str(cfg))
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "synthesize_patient" not in plan.stdout
    assert any(line.split() == ["check_inputs", "4"] for line in plan.stdout.splitlines())

    # Determinism: a second run of the whole analysis from the same DICOM (everything but the synthetic
    # export removed): every table (TSV, Markdown, LaTeX; timings live only in qc.json and benchmarks/)
    # byte for byte.
    def tables():
        return {
            p.relative_to(results): p.read_bytes()
            for p in sorted(results.rglob("*"))
            if p.suffix in (".tsv", ".md", ".tex") and "benchmarks" not in p.relative_to(results).parts
        }

    first = tables()
    for path in results.iterdir():
        if path.name != "synthetic":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = snakemake(*args)
    assert again.returncode == 0, again.stderr[-5000:]
    assert (results / "cohort" / "summary.html").exists()
    second = tables()
    assert sorted(first) == sorted(second) and len(first) > 40, (len(first), len(second))
    assert [str(k) for k in first if first[k] != second[k]] == []


@pytest.mark.workflow
def test_killed_run_resumes_to_the_outputs_of_an_uninterrupted_one(tmp_path):
    """SIGKILL the whole workflow (Snakemake and its running job) in the middle of a patient's input
    check (its registrations); after ``snakemake --unlock`` the rerun resumes, and every output equals
    an uninterrupted run's byte for byte (no half-written file, no leftover temporary file)."""
    import signal
    import time

    def args(results):
        return (
            "--workflow-profile",
            "workflow/profiles/default",
            "--configfile",
            "config/tiny.yaml",
            "--config",
            f"results={results}",
            "--",
            str(results / "patients" / "SYN001" / "ingest" / "qc.json"),
        )

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    ref = snakemake(*args(whole))
    assert ref.returncode == 0, ref.stderr[-3000:]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), *args(killed)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = killed / "logs" / "check_inputs" / "SYN001.log"
    deadline = time.monotonic() + 600
    while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # into the registration: the record not written yet
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "patients" / "SYN001" / "input_check.json").exists()
    assert not (killed / "patients" / "SYN001" / "ingest" / "qc.json").exists()
    assert snakemake("--unlock", *args(killed)).returncode == 0
    again = snakemake(*args(killed))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ingest" in again.stdout + again.stderr

    def tree(root):
        base = root / "patients" / "SYN001" / "ingest"
        return {p.relative_to(base): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}

    a, b = tree(whole), tree(killed)
    check = Path("patients") / "SYN001" / "input_check.json"
    assert (whole / check).read_bytes() == (killed / check).read_bytes()  # the registrations too
    assert sorted(a) == sorted(b) and len(a) > 20
    assert [k for k in a if a[k] != b[k]] == [Path("qc.json")]  # its timings (wall seconds) differ, nothing else
    qa, qb = (json.loads(t[Path("qc.json")]) for t in (a, b))
    assert qa.pop("timings") != qb.pop("timings") and qa == qb


def check_job_usage(results):
    """Every job's log ends with its CPU time, at least what Snakemake's benchmark file sampled of it, and
    benchmarks/pipeline_cost.py takes every job's CPU time from there."""
    from dosepaint.logs import read_usage

    benchmarked = sorted((results / "benchmarks").rglob("*.tsv"))
    assert len(benchmarked) > 20
    logged_cpu = sampled_cpu = 0.0
    for bench in benchmarked:
        log = results / "logs" / bench.relative_to(results / "benchmarks").with_suffix(".log")
        usage = read_usage(log)
        assert usage is not None, log
        sampled = pd.read_csv(bench, sep="\t")["cpu_time"].iloc[-1]
        # The interpreter's exit after the log closes (≤ 1.1 s per job under process accounting) is in the
        # benchmark's last sample and not in the log.
        assert usage["cpu_s"] >= sampled - 2.0, (log, usage, sampled)
        logged_cpu, sampled_cpu = logged_cpu + usage["cpu_s"], sampled_cpu + sampled
    assert logged_cpu > sampled_cpu  # the jobs over 30 s lose their tail to the benchmark's sampling
    out = subprocess.run([sys.executable, "benchmarks/pipeline_cost.py", str(results)], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    logged = len([p for p in (results / "logs").rglob("*.log") if read_usage(p) is not None])
    assert f"for {logged} jobs, from benchmark files alone for 0" in out.stdout, out.stdout[-3000:]


def check_statistics(results, plans, test_ids, *, train_ids):
    """Held-out statistics of the tiny run: test patients only, values traceable to the plans."""
    cohort = results / "cohort"
    held = pd.read_csv(cohort / "tcp_heldout.tsv", sep="\t")
    assert held["patient_id"].tolist() == test_ids
    ev = json.loads((cohort / "tcp_evaluation.json").read_text())
    assert ev["test_ids"] == test_ids and not set(ev["test_ids"]) & set(train_ids)
    stats = json.loads((cohort / "statistics.json").read_text())
    assert stats["patient_ids"] == test_ids
    # Table 1 is recomputed from the plans' dose images: its medians equal the plan metrics' medians.
    t1 = pd.read_csv(cohort / "table1.tsv", sep="\t").set_index(["region", "metric", "plan"])
    for plan in ("uniform", "de", "dr"):
        p = plans[plans["plan"] == plan]
        for region, metric in (("GTV", "D95"), ("CTV_HD_minus_GTV", "D1"), ("CTV_LD_minus_GTV", "Dmean")):
            expect = float(np.median(p[f"{region}_{metric}"]))
            assert t1.loc[(region, metric, plan), "median"] == pytest.approx(expect, rel=1e-4), (region, metric, plan)
        assert stats["tcp_pct"][plan]["mean"] == pytest.approx(100 * p["tcp"].mean(), rel=1e-4)
    assert t1.loc[("GTV", "L50", "de"), "n"] == len(test_ids)  # LETd covers the GTV
    assert t1.loc[("CTV_LD_minus_GTV", "L50", "de"), "n"] == 0  # but not CTV_LD − GTV (carbon)
    md = (cohort / "table1.md").read_text()
    assert md.startswith("| region | metric | unit | uniform | de | dr |")
    assert "\\toprule" in (cohort / "table1.tex").read_text()
    tests = pd.read_csv(cohort / "plan_tests.tsv", sep="\t")
    assert set(tests["comparison"]) == {"de vs uniform", "dr vs uniform", "de vs dr"}
    assert (tests["wilcoxon_p_holm"].dropna() >= tests.loc[tests["wilcoxon_p_holm"].notna(), "wilcoxon_p"]).all()
    surv = json.loads((cohort / "survival.json").read_text())
    assert surv["n"] == len(test_ids) and sorted(p["patient_id"] for p in surv["patients"]) == sorted(test_ids)
    rec = json.loads((cohort / "tcp_recovery.json").read_text())
    assert rec["truth"]["alpha"] == pytest.approx(0.087) and rec["truth"]["log10_fc"] == pytest.approx(-2.0)
    head = pd.read_csv(cohort / "headline.tsv", sep="\t").set_index("quantity")
    assert head.loc["TCP DE (%)", "study"] == "83.3 ± 3.9"
    for name in (
        "fig1a_oar",
        "fig1b_dvh",
        "fig1c_slices",
        "fig2a_tcp",
        "fig2b_tertiles",
        "fig3_scenarios",
        "km",
        "calibration",
    ):
        assert (cohort / "figures" / f"{name}.png").stat().st_size > 10_000, name
        assert (cohort / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name


def check_robustness(results, plans, test_ids, *, train_ids):
    """Robustness outputs of the tiny run against the plans they come from and known identities."""
    nominal = "s+0_+0_+0_r+0"
    scen = pd.read_csv(results / "cohort" / "robustness_scenarios.tsv", sep="\t")
    assert sorted(scen["patient_id"].unique()) == sorted(test_ids)
    assert (scen.groupby(["patient_id", "plan"])["scenario"].nunique() == 21).all()
    assert set(scen["method"]) == {"nominal", "recalculated", "rigid_shift"}
    assert set(scen.loc[scen["method"] == "recalculated", "scenario"]) == {"s+0_+0_+0_r+3", "s+0_+0_+0_r-3"}
    sigma = json.loads((results / "cohort" / "rmse_sigma.json").read_text())
    assert sigma["patient_ids"] == train_ids and sigma["sigma"] > 0  # σ from the training split only
    thr = json.loads((results / "cohort" / "robustness_tertile_thresholds.json").read_text())
    assert sorted(thr["patient_ids"]) == sorted(test_ids)
    cc = pd.read_csv(results / "cohort" / "robustness_cell_count_tcp.tsv", sep="\t")
    for pid in test_ids:
        p = plans[plans["patient_id"] == pid].set_index("plan")
        s = scen[scen["patient_id"] == pid]
        nom = s[s["scenario"] == nominal].set_index("plan")
        for plan in ("uniform", "de", "dr"):
            # The nominal scenario is the plan (doses kept as float32).
            assert nom.loc[plan, "tcp"] == pytest.approx(p.loc[plan, "tcp"], rel=1e-4), (pid, plan)
            assert nom.loc[plan, "GTV_D95"] == pytest.approx(p.loc[plan, "GTV_D95"], rel=1e-4), (pid, plan)
            d95 = s.loc[s["plan"] == plan].set_index("scenario")["GTV_D95"]
            assert d95.min() < d95[nominal] - 0.1, (pid, plan)  # some scenario underdoses the GTV
            c = cc[(cc["patient_id"] == pid) & (cc["plan"] == plan)].set_index("cell_count")["tcp"]
            assert c["best"] > c["nominal"] > c["worst"], (pid, plan)
            # every GTV voxel at the low / high end of its 90 % interval: fewer / more cells
            assert c["posterior_lo"] >= c["nominal"] >= c["posterior_hi"], (pid, plan)
        # Eq. 5 additive form: the ΔlnTCP map sums to ln TCP_DE − ln TCP_uniform of the plans.
        m = sitk.GetArrayFromImage(sitk.ReadImage(str(results / "patients" / pid / "robustness" / "de_dlntcp.nii.gz")))
        expect = -np.exp(p.loc["de", "ln_surviving"]) + np.exp(p.loc["uniform", "ln_surviving"])
        assert np.nansum(m.astype(float)) == pytest.approx(expect, rel=1e-3, abs=1e-6), pid
        worst = sitk.GetArrayFromImage(
            sitk.ReadImage(str(results / "patients" / pid / "robustness" / "de_worst_dose.nii.gz"))
        )
        assert worst.max() > 0
    summary = pd.read_csv(results / "cohort" / "robustness_summary.tsv", sep="\t").set_index("plan")
    assert (summary["n_scenarios"] == 21).all()
    assert (summary["gtv_d95_worst_scenario_min_gy"] < summary["gtv_d95_nominal_median_gy"]).all()


def test_workflow_parse_imports_no_stage_module_and_nothing_heavy():
    # Every Snakemake parse (and each job's) runs the .smk files' imports: keep them light.
    import re

    lines = [
        line.strip()
        for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) dosepaint", line)
    ]
    assert lines and not any("stages" in line for line in lines), lines
    heavy = ["SimpleITK", "pydicom", "matplotlib", "lifelines", "statsmodels", "scipy", "pyRadPlan", "nibabel"]
    code = "\n".join(lines) + f"\nimport sys\nprint([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]


def test_per_patient_stages_import_no_library_they_do_not_use():
    # A job pays its imports at every start (hundreds of jobs per cohort): pyRadPlan where it plans,
    # the statistics, survival and plotting libraries only in the cohort stages that use them.
    unused = {
        "check": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats"],
        "ingest": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats"],
        "dwi": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats", "pydicom"],
        "pet": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats", "pydicom"],
        "synthesize": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels"],
        "plan": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats"],
        "robustness": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats", "pydicom"],
        "export": ["pyRadPlan", "matplotlib", "lifelines", "statsmodels", "scipy.stats"],
    }
    loaded = {}
    for stage, libs in unused.items():  # one interpreter each: a job imports one stage
        code = f"import sys, dosepaint.stages.{stage}\nprint([k for k in {libs!r} if k in sys.modules])"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if proc.stdout.strip() != "[]":
            loaded[stage] = proc.stdout.strip()
    assert loaded == {}, loaded


def check_dicom_rt(results, test_ids, *, prescription_gy: float):
    """The DICOM RT package of every planned patient, checked by tools no one here wrote: dciodvfy on
    every object, dicompyler-core's DVH and its reading of the derived structures, and pyRadPlan's
    forward calculation of a re-read RT Ion Plan (one patient, the DE plan)."""
    from dosepaint.io import files

    from .rt_checks import dciodvfy_errors, dvh_differences, recomputed_dose, region_dice

    table = pd.read_csv(results / "cohort" / "dicom_rt.tsv", sep="\t")
    assert sorted(table["patient_id"]) == sorted(test_ids)
    assert set(table["uids"]) == {"generated (Basic Profile)"} and (table["worst_case_doses"] == 3).all()
    for pid in test_ids:
        patient, pkg = results / "patients" / pid, results / "patients" / pid / "dicom_rt"
        objects = sorted(pkg.rglob("*.dcm"))
        assert len(objects) == 10 + len(list((pkg / "CT").glob("*.dcm"))), pid  # RS, 3 RP, 3 RD, 3 worst RD
        heads = [pydicom.dcmread(p, stop_before_pixels=True) for p in objects]
        assert len({h.StudyInstanceUID for h in heads}) == 1 and len({h.FrameOfReferenceUID for h in heads}) == 1
        for path, ds in zip(objects, heads, strict=True):
            assert dciodvfy_errors(path) == [], (path, dciodvfy_errors(path))
            assert basic_profile_violations(ds, pseudonym=pid) == [], path
        dices = region_dice(patient)
        derived = [n for n in dices if n.startswith(("BTV_", "CELLS_")) or n.endswith("_minus_GTV")]
        assert len(derived) == 9 + 3 + 2, derived
        assert min(dices[n] for n in derived) >= 0.98
        for key, rel in dvh_differences(patient).items():
            assert abs(rel) < 0.01, (pid, key, rel)
    pid = test_ids[0]
    patient = results / "patients" / pid
    check_retained_uids(results, pid)
    dose, _ = files.read_array(patient / "plans" / "de" / "dose.nii.gz")
    again = recomputed_dose(patient / "dicom_rt" / "RP_de.dcm", patient)
    targets, _ = files.read_masks(patient / "ingest" / "masks_dose", ["CTV_LD"], pid=pid, needed_by="test")
    assert np.max(np.abs(again - dose)[targets["CTV_LD"]]) < 0.01 * prescription_gy


def check_retained_uids(results, pid):
    """export.retain_uids: the package rewritten for one patient carries the source CT's study, frame of
    reference and CT SOP UIDs (read back from the files ingest recorded), and still no identity."""
    from dosepaint.stages import export

    patient = results / "patients" / pid
    inputs = {k: patient / v for k, v in (("ct", "ingest/ct.nii.gz"), ("ct_dose", "ingest/ct_dose.nii.gz"),
              ("ingest_qc", "ingest/qc.json"), ("masks_ct", "ingest/masks_ct"), ("masks_dose", "ingest/masks_dose"),
              ("influence", "plans/influence.npz"))}  # fmt: skip
    inputs |= {f"{p}_{k}": patient / "plans" / p / f"{k}.{ext}" for p in ("uniform", "de", "dr")
               for k, ext in (("dose", "nii.gz"), ("weights", "npz"))}  # fmt: skip
    out = results.parent / "retained"
    params = {"patient_id": pid, "retain_uids": True, "dicom_dir": str(results / "synthetic" / "dicom" / pid)}
    manifest = export.run(inputs, {"package": out / "dicom_rt", "manifest": out / "dicom_rt.json"}, params=params)
    assert manifest["uids"].startswith("source CT's")
    source = {}
    series, _ = dcm.scan_folder(results / "synthetic" / "dicom" / pid)
    for f in (f for s in series if s.kind == "CT" for f in s.files):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        source[str(ds.SOPInstanceUID)] = (str(ds.StudyInstanceUID), str(ds.FrameOfReferenceUID))
    ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((out / "dicom_rt" / "CT").glob("*.dcm"))]
    assert {str(d.SOPInstanceUID) for d in ct} == set(source)
    rd = pydicom.dcmread(out / "dicom_rt" / "RD_de.dcm", stop_before_pixels=True)
    assert {(str(rd.StudyInstanceUID), str(rd.FrameOfReferenceUID))} == set(source.values())
    assert rd.PatientID == pid and rd.PatientIdentityRemoved == "YES"
