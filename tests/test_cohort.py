import re
from pathlib import Path

import numpy as np
import pytest

from dosepaint.cohort import make_split, read_sheet, synthetic_patient_ids, synthetic_truth, validate_config
from dosepaint.errors import ConfigError

HEADER = "patient_id\tdicom_dir\tevent\ttime_months\tsplit\n"


def write_sheet(tmp_path: Path, rows, header=HEADER) -> Path:
    for pid in ("P1", "P2", "P3"):
        (tmp_path / "dicom" / pid).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "patients.tsv"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_defaults_are_filled(config_schema):
    cfg = validate_config({"cohort": {"source": "synthetic"}}, config_schema)
    assert cfg["results"] == "results"
    assert cfg["synthetic"]["preset"] == "default"
    assert cfg["ingest"]["dose_grid_mm"] == 5.0
    assert cfg["ingest"]["registration"]["shrink_factors"] == [4, 2]
    assert cfg["cohort"]["n_test"] is None  # the study's share of the included patients (default_n_test)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "config").glob("*.yaml"))


def test_every_shipped_config_is_tested():
    assert {p.name for p in CONFIGS} >= {"config.yaml", "tiny.yaml", "paper.yaml"}


@pytest.mark.parametrize("preset", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(config_schema, preset):
    # As Snakemake reads a preset: --configfile merged over config/config.yaml (the Snakefile's).
    from snakemake.utils import update_config

    from dosepaint.cohort import load_yaml

    cfg = load_yaml(preset.parent / "config.yaml")
    update_config(cfg, load_yaml(preset))
    validate_config(cfg, config_schema)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"cohort": {"source": "synthetic"}, "resutls": "x"}, "'resutls' was unexpected"),
        ({"cohort": {"source": "synthetic", "n_tset": 3}}, "at 'cohort'"),
        ({"cohort": {"source": "synthetic"}, "ingest": {"dose_grid_mm": "3"}}, "at 'ingest/dose_grid_mm'"),
        ({"cohort": {"source": "synthetic"}, "ingest": {"registration": {"bins": 3}}}, "at 'ingest/registration'"),
        ({"cohort": {"source": "sheet"}}, "needs cohort.sheet"),
        ({"cohort": {"source": "excel"}}, "at 'cohort/source'"),
    ],
)
def test_bad_config_gives_one_clear_error(config_schema, config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_config(config, config_schema)


def test_sheet_is_read_and_paths_resolved(tmp_path, sheet_schema):
    path = write_sheet(tmp_path, ["P1\tdicom/P1\t1\t12.5\t", "P2\tdicom/P2\t0\t60\t"])
    df = read_sheet(path, schema=sheet_schema)
    assert df["patient_id"].tolist() == ["P1", "P2"]
    assert df["event"].tolist() == [1, 0]
    assert df["time_months"].tolist() == [12.5, 60.0]
    assert df["split"].isna().all()
    assert Path(df["dicom_path"][0]) == (tmp_path / "dicom" / "P1").resolve()


@pytest.mark.parametrize(
    "rows, message",
    [
        (["P1\tdicom/P1\t1\t12\t", "P1\tdicom/P2\t0\t60\t"], "duplicate patient_id 'P1'"),
        (["P 1\tdicom/P1\t1\t12\t"], "does not match"),
        (["P1\t../../etc\t1\t12\t"], "outside the cohort root"),
        (["P1\tdicom/P1\t2\t12\t"], "at 'event'"),
        (["P1\tdicom/P1\t1\t-3\t"], "at 'time_months'"),
        (["P1\tdicom/P1\t1\t12\tvalidation"], "at 'split'"),
        (["P1\tdicom/P1\t1\t12\ttrain", "P2\tdicom/P2\t0\t60\t"], "split given for some patients"),
        (["P1\tdicom/P1\t\t12\t"], "'event' is a required property"),
        (["P1\tdicom/P9\t1\t12\t"], "line 2 \\(patient P1\\): dicom_dir 'dicom/P9' is not a folder"),
    ],
)
def test_bad_sheet_gives_one_clear_error(tmp_path, sheet_schema, rows, message):
    with pytest.raises(ConfigError, match=message):
        read_sheet(write_sheet(tmp_path, rows), schema=sheet_schema)


def test_clinical_columns_must_be_declared(tmp_path, sheet_schema):
    path = write_sheet(tmp_path, ["P1\tdicom/P1\t1\t12\t\t64"], header=HEADER.strip() + "\tage\n")
    with pytest.raises(ConfigError, match=r"unknown column\(s\) \['age'\]"):
        read_sheet(path, schema=sheet_schema)
    df = read_sheet(path, schema=sheet_schema, clinical_columns=["age"])
    assert df["age"].tolist() == ["64"]


def test_dicom_root_can_widen_the_allowed_tree(tmp_path, sheet_schema):
    sub = tmp_path / "sheets"
    sub.mkdir()
    (tmp_path / "dicom" / "P1").mkdir(parents=True)
    path = sub / "patients.tsv"
    path.write_text(HEADER + "P1\t../dicom/P1\t0\t30\t\n")
    with pytest.raises(ConfigError, match="outside the cohort root"):
        read_sheet(path, schema=sheet_schema)
    assert len(read_sheet(path, schema=sheet_schema, dicom_root=tmp_path)) == 1


def test_synthetic_truth_gives_the_generator_the_configured_seed_and_radiobiology(config_schema):
    import inspect

    from dosepaint.synthetic.generate import generate_patient

    cfg = validate_config(
        {"cohort": {"source": "synthetic"}, "synthetic": {"seed": 11, "truth_alpha": 0.08}}, config_schema
    )
    truth = synthetic_truth(cfg["synthetic"])
    assert truth == {"seed": 11, "alpha": 0.08, "alpha_beta": 2.0, "clonogenic_fraction": 0.01}  # the others: defaults
    assert set(truth) <= set(inspect.signature(generate_patient).parameters)


def test_split_reproduces_study_proportions_and_is_stratified():
    ids = synthetic_patient_ids(prefix="SYN", n_patients=37)
    events = np.array([1] * 11 + [0] * 26)
    split = make_split(ids, events, n_test=10, seed=3)
    test = [i for i, p in enumerate(ids) if split[p] == "test"]
    assert len(test) == 10
    # 11/37 relapses → 10·11/37 = 2.97 → 3 relapses held out, 7 controls.
    assert events[test].sum() == 3
    assert make_split(ids, events, n_test=10, seed=3) == split
    assert make_split(ids, events, n_test=10, seed=4) != split


def test_split_rejects_impossible_sizes():
    with pytest.raises(ConfigError, match="n_test = 5"):
        make_split(["a", "b", "c"], [0, 1, 0], n_test=5, seed=0)


def _checks(tmp_path, status):
    """Input-check records (as ``stages.check`` writes them) for the given {patient: problem or None}."""
    from dosepaint.io import files

    paths = []
    for pid, problem in status.items():
        rec = {
            "patient_id": pid,
            "status": "excluded" if problem else "included",
            "file": "CT/ct_3.dcm" if problem else None,
            "problem": problem,
        }
        paths.append(str(tmp_path / f"{pid}.json"))
        files.write_json(rec, paths[-1])
    return paths


def _include_and_split(tmp_path, sheet, status, sheet_schema):
    """The inclusion stage over the checks, then the split stage over its excluded.tsv."""
    from dosepaint.stages import inclusion
    from dosepaint.stages import split as split_stage

    out = {"split": str(tmp_path / "split.tsv"), "excluded": str(tmp_path / "excluded.tsv")}
    inclusion.run({"checks": _checks(tmp_path, status)}, out, params={"patient_ids": list(status)})
    params = {"schema": sheet_schema, "clinical_columns": [], "dicom_root": None, "n_test": 1, "seed": 5}
    return split_stage.run({"sheet": str(sheet), "excluded": out["excluded"]}, out, params=params), out


def test_split_leaves_out_the_excluded_patients_and_lists_them(tmp_path, sheet_schema):
    from dosepaint.cohort import exclusion_notice
    from dosepaint.io import files

    sheet = write_sheet(tmp_path, ["P1\tdicom/P1\t1\t12\t", "P2\tdicom/P2\t0\t60\t", "P3\tdicom/P3\t0\t48\t"])
    split, out = _include_and_split(
        tmp_path, sheet, {"P1": None, "P2": "CT: missing slice(s)", "P3": None}, sheet_schema
    )
    # The split of the two included patients is the seeded split of exactly those two.
    assert split["patient_id"].tolist() == ["P1", "P3"]
    assert dict(zip(split["patient_id"], split["split"])) == make_split(["P1", "P3"], [1, 0], n_test=1, seed=5)
    excluded = files.read_tsv(out["excluded"])
    assert excluded.to_dict("records") == [
        {"patient_id": "P2", "stage": "input check", "file": "CT/ct_3.dcm", "problem": "CT: missing slice(s)"}
    ]
    notice = exclusion_notice(out["excluded"])
    assert "1 patient(s) left out" in notice and "P2 (input check): CT/ct_3.dcm: CT: missing slice(s)" in notice
    # Nobody excluded: an empty table (header only) and no notice.
    _include_and_split(tmp_path, sheet, dict.fromkeys(["P1", "P2", "P3"]), sheet_schema)
    assert files.read_tsv(out["excluded"]).empty and exclusion_notice(out["excluded"]) is None
    assert exclusion_notice(tmp_path / "absent.tsv") is None


def test_inclusion_needs_a_check_of_every_patient(tmp_path):
    from dosepaint.stages import inclusion

    with pytest.raises(ConfigError, match=re.escape("no input check for patient(s) ['P3']")):
        inclusion.run(
            {"checks": _checks(tmp_path, {"P1": None, "P2": None})},
            {"excluded": str(tmp_path / "excluded.tsv")},
            params={"patient_ids": ["P1", "P2", "P3"]},
        )


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"P1": "bad", "P2": "bad", "P3": "bad"}, "every patient was excluded at the input check"),
        ({"P1": None, "P2": "bad", "P3": "bad"}, "n_test = 1 must be between 1 and 0 for a cohort of 1 (2 excluded"),
    ],
)
def test_split_after_exclusions_that_leave_too_few_patients_is_a_clear_error(tmp_path, sheet_schema, status, message):
    sheet = write_sheet(tmp_path, ["P1\tdicom/P1\t1\t12\t", "P2\tdicom/P2\t0\t60\t", "P3\tdicom/P3\t0\t48\t"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        _include_and_split(tmp_path, sheet, status, sheet_schema)
    assert not (tmp_path / "split.tsv").exists()


def test_split_from_the_sheet_keeps_each_included_patients_side(tmp_path, sheet_schema):
    sheet = write_sheet(
        tmp_path, ["P1\tdicom/P1\t1\t12\ttrain", "P2\tdicom/P2\t0\t60\ttest", "P3\tdicom/P3\t0\t48\ttest"]
    )
    split, _ = _include_and_split(tmp_path, sheet, {"P1": None, "P2": "x", "P3": None}, sheet_schema)
    assert dict(zip(split["patient_id"], split["split"])) == {"P1": "train", "P3": "test"}
    with pytest.raises(ConfigError, match="the split has no training patient"):
        _include_and_split(tmp_path, sheet, {"P1": "x", "P2": None, "P3": None}, sheet_schema)
