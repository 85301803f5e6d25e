"""Held-out stages: leakage guards, the survival stage on a published dataset, parameter recovery."""

import json

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_leukemia

from dosepaint.errors import DosepaintInputError
from dosepaint.stages import figures as fig_stage
from dosepaint.stages import heldout
from dosepaint.stages import summary as summary_stage


def _split(tmp_path, rows):
    path = tmp_path / "split.tsv"
    pd.DataFrame(rows, columns=["patient_id", "split", "event"]).to_csv(path, sep="\t", index=False)
    return path


def test_check_heldout_refuses_training_patients_and_patients_the_fit_used(tmp_path):
    split = _split(tmp_path, [("A", "train", 0), ("B", "test", 1), ("C", "test", 0)])
    assert list(heldout.check_heldout(["B", "C"], split_path=split).index) == ["A", "B", "C"]
    with pytest.raises(DosepaintInputError, match="not in the test split") as err:
        heldout.check_heldout(["B", "A"], split_path=split)
    assert "A" in str(err.value) and "split.tsv" in str(err.value)
    with pytest.raises(DosepaintInputError, match="the fit used this one"):
        heldout.check_heldout(["B", "C"], split_path=split, fit={"train_ids": ["A", "C"]})
    with pytest.raises(DosepaintInputError, match="not in the test split"):
        heldout.check_heldout(["Z"], split_path=split)


def test_tcp_stage_refuses_a_training_patient_before_reading_images(tmp_path):
    split = _split(tmp_path, [("A", "train", 0), ("B", "test", 1)])
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"train_ids": ["A"]}))
    inputs = {
        "fit": fit,
        "split": split,
        "sheet": tmp_path / "missing.tsv",
        "rtdose": ["x"],
        "cell_density": ["x"],
        "masks_dose": ["x"],
    }
    with pytest.raises(DosepaintInputError, match="not in the test split"):
        heldout.run_tcp(inputs, {}, params={"patient_ids": ["A"]})


def test_survival_stage_reproduces_the_leukemia_logrank(tmp_path):
    # Freireich's 6-MP trial as a "held-out cohort": predicted TCP 0.9 for the 6-MP arm and 0.1 for
    # placebo, so the median split is the treatment split and the log-rank χ² must be 16.79.
    d = load_leukemia()
    ids = [f"L{i:02d}" for i in range(len(d))]
    split = _split(tmp_path, [(p, "test", int(e)) for p, e in zip(ids, d["status"])])
    sheet = tmp_path / "sheet.tsv"
    pd.DataFrame({"patient_id": ids, "time_months": d["t"].astype(float), "event": d["status"]}).to_csv(
        sheet, sep="\t", index=False
    )
    test = tmp_path / "tcp_heldout.tsv"
    pd.DataFrame(
        {
            "patient_id": ids,
            "event": d["status"],
            "local_control": 1 - d["status"],
            "tcp": np.where(d["Rx"] == 0, 0.9, 0.1),
            "gtv_cc": 100.0 + np.arange(len(d)),
        }
    ).to_csv(test, sep="\t", index=False)
    out = {"km": tmp_path / "km.tsv", "cox": tmp_path / "cox.tsv", "tests": tmp_path / "surv.json"}
    r = heldout.run_survival(
        {"split": split, "sheet": sheet, "test": test},
        out,
        params={"population": "test", "split": 0.5, "covariates": ["tcp"], "penalizer": 0.0},
    )
    assert r["logrank"]["chi2"] == pytest.approx(16.79, abs=0.005)
    assert r["n"] == 42 and r["events"] == 30
    km = pd.read_csv(out["km"], sep="\t")
    high = km[km["group"] == "high"].set_index("time")["survival"]
    assert high.loc[6.0] == pytest.approx(0.857, abs=5e-4) and high.loc[23.0] == pytest.approx(0.448, abs=5e-4)
    cox = pd.read_csv(out["cox"], sep="\t").set_index("covariate")
    # a higher TCP (the 6-MP arm) lowers the hazard; the textbook Cox coefficient of Rx is 1.572 (Efron),
    # here on TCP per 10 pp = 9 − 8·Rx, so the coefficient is −1.572 / 8
    assert cox.loc["tcp_per_10pp", "coef"] == pytest.approx(-1.572 / 8, abs=0.001)
    # a training patient in the table is refused
    pd.concat([pd.read_csv(test, sep="\t"), pd.DataFrame({"patient_id": ["T1"], "event": [0], "tcp": [0.5]})]).to_csv(
        test, sep="\t", index=False
    )
    with pytest.raises(DosepaintInputError, match="T1"):
        heldout.run_survival(
            {"split": split, "sheet": sheet, "test": test},
            out,
            params={"population": "test", "split": "median", "covariates": ["tcp"], "penalizer": 0.0},
        )


def test_recovery_flags_the_truth_inside_and_outside_the_ci(tmp_path):
    fit = {
        "model": {"estimator": "least_squares", "alpha_beta": 2.0},
        "estimates": {
            "least_squares": {
                "alpha": 0.09,
                "log10_fc": -2.5,
                "alpha_ci95": [0.06, 0.12],
                "log10_fc_ci95": [-2.9, -2.1],
            }
        },
    }
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    truth = []
    for pid, tcp in (("A", 0.7), ("B", 0.4)):
        folder = tmp_path / pid
        folder.mkdir()
        (folder / "truth.json").write_text(
            json.dumps(
                {
                    "patient_id": pid,
                    "model": {"alpha": 0.087, "alpha_beta": 2.0, "clonogenic_fraction": 0.01, "tcp": tcp},
                }
            )
        )
        truth.append(str(folder))
    pd.DataFrame({"patient_id": ["A"], "local_control": [1], "tcp_least_squares": [0.8]}).to_csv(
        tmp_path / "train.tsv", sep="\t", index=False
    )
    pd.DataFrame({"patient_id": ["B"], "local_control": [0], "tcp_least_squares": [0.3]}).to_csv(
        tmp_path / "test.tsv", sep="\t", index=False
    )
    r = heldout.run_recovery(
        {"fit": tmp_path / "fit.json", "train": tmp_path / "train.tsv", "test": tmp_path / "test.tsv", "truth": truth},
        {"recovery": tmp_path / "r.json", "patients": tmp_path / "r.tsv"},
        params={},
    )
    e = r["estimates"]["least_squares"]
    assert e["alpha"]["truth_inside_ci95"] is True and e["alpha"]["error"] == pytest.approx(0.003)
    assert e["log10_fc"]["truth"] == pytest.approx(-2.0)
    assert e["log10_fc"]["truth_inside_ci95"] is False
    assert r["train_tcp_error"]["mean"] == pytest.approx(0.1) and r["test_tcp_error"]["mean"] == pytest.approx(-0.1)


def test_representative_patient_is_the_median_gain():
    m = pd.DataFrame(
        [
            {"patient_id": p, "plan": plan, "tcp": t}
            for p, u, d in (("A", 0.5, 0.9), ("B", 0.6, 0.7), ("C", 0.7, 0.9), ("D", 0.8, 0.85))
            for plan, t in (("uniform", u), ("de", d))
        ]
    )
    # gains A 0.4, B 0.1, C 0.2, D 0.05 -> sorted D, B, C, A: lower middle B
    assert fig_stage.representative(m, "auto") == "B"
    assert fig_stage.representative(m, "C") == "C"
    with pytest.raises(ValueError, match="not a held-out patient"):
        fig_stage.representative(m, "Z")


def test_headline_puts_our_numbers_beside_the_study():
    stats = {
        "tcp_pct": {
            "uniform": {"mean": 75.0, "sd": 5.0},
            "de": {
                "mean": 83.0,
                "sd": 4.0,
                "delta_mean_pp": 8.0,
                "delta_sd_pp": 2.0,
                "wilcoxon_p": 0.002,
                "mann_whitney_p": 0.01,
            },
            "dr": {"mean": 77.0, "sd": 5.0, "delta_mean_pp": 2.0, "delta_sd_pp": 1.0},
        },
        "cell_count_range_pp": {},
    }
    tert = pd.DataFrame([{"plan": "de", "tertile": "high − low", "delta_tcp_mean_pp": 12.0, "delta_tcp_sd_pp": 3.0}])
    h = summary_stage.headline(stats, tert).set_index("quantity")
    assert h.loc["TCP DE (%)", "dosepaint"] == "83.0 ± 4.0"
    assert h.loc["TCP DE (%)", "study"] == "83.3 ± 3.9"
    assert h.loc["ΔTCP high − low tertile, DE (pp)", "dosepaint"] == "12.0 ± 3.0"
    assert h.loc["ΔTCP DR, low-count tertile (pp)", "dosepaint"] == "–"


def test_report_lists_the_excluded_patients_with_their_reasons():
    from dosepaint.stages.inclusion import EXCLUDED_COLUMNS

    none = summary_stage.exclusions_html(pd.DataFrame(columns=EXCLUDED_COLUMNS))
    assert "Excluded patients" in none and "None: every patient of the sheet passed" in none
    table = pd.DataFrame(
        [
            {
                "patient_id": "P7",
                "stage": "input check",
                "file": "study1/RTSTRUCT/RS.dcm",
                "problem": "ROI 'GTV' (GTV) has no contours",
            }
        ],
        columns=EXCLUDED_COLUMNS,
    )
    page = summary_stage.exclusions_html(table)
    assert "Excluded patients (1)" in page
    for value in ("P7", "input check", "study1/RTSTRUCT/RS.dcm", "ROI 'GTV' (GTV) has no contours"):
        assert value in page, value
    planning = pd.DataFrame(
        [{"patient_id": "P9", "stage": "plan", "file": None, "problem": "ValueError: x"}], columns=EXCLUDED_COLUMNS
    )
    page = summary_stage.exclusions_html(table, planning)
    assert "Planning failures (1)" in page and "P9" in page and "plan" in page


def test_report_warns_of_plans_without_an_oar_constraint_and_lists_unmapped_rois(tmp_path):
    from dosepaint.stages import ingest_summary

    qcs = []
    for pid, missing, unmapped, suggested in (
        ("P1", [], [], {}),
        ("P2", ["BOWEL"], ["Intestino", "Femur_L"], {"Intestino": "BOWEL"}),
    ):
        qc = {
            "patient_id": pid,
            "series": [],
            "skipped_non_dicom_files": 0,
            "ct": {"spacing_mm": [1, 1, 3], "patient_position": "HFS"},
            "structures": {
                "volumes_cc": {},
                "absent": missing,
                "missing_oars": missing,
                "unmapped_rois": unmapped,
                "alias_suggestions": suggested,
            },
        }
        path = tmp_path / f"{pid}.json"
        path.write_text(json.dumps(qc))
        qcs.append(str(path))
    ingest_summary.run({"qc": qcs}, {"summary": str(tmp_path / "ingest_summary.tsv")})
    from dosepaint.io import files

    table = files.read_tsv(tmp_path / "ingest_summary.tsv")
    assert table.set_index("patient_id").loc["P2", "unmapped_rois"] == "Intestino (maybe BOWEL); Femur_L"
    page = summary_stage.structures_html(table)
    assert "WARNING: plans without an OAR constraint (1 patients)" in page and "BOWEL" in page
    assert "Intestino (maybe BOWEL); Femur_L" in page and "P1" not in page
    assert summary_stage.structures_html(table[table["patient_id"] == "P1"]) == ""
