"""Synthesis stages: one synthetic patient, and the cohort's patient sheet."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd

from ..io import files
from ..synthetic.generate import generate_patient

log = logging.getLogger(__name__)


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Generate one patient: ``outputs`` has ``dicom`` and ``truth`` folders and the sheet ``row``.

    ``params``: patient_id, index, preset, seed, n_patients, alpha, alpha_beta,
    clonogenic_fraction (see :func:`dosepaint.synthetic.generate.generate_patient`).
    """
    truth = generate_patient(outputs["dicom"], outputs["truth"], **params)
    ident = truth["identity"]
    birth = dt.datetime.strptime(ident["PatientBirthDate"], "%Y%m%d").date()
    # What a clinic's research sheet would hold: outcome and a few clinical covariates.
    row = pd.DataFrame(
        [
            {
                "patient_id": params["patient_id"],
                "dicom_dir": f"dicom/{params['patient_id']}",
                "event": truth["outcome"]["event"],
                "time_months": truth["outcome"]["time_months"],
                "split": "",
                "age": int((dt.date(2020, 1, 1) - birth).days // 365.25),
                "sex": ident["PatientSex"],
            }
        ]
    )
    files.write_tsv(row, outputs["row"])
    log.info(
        "synthesized %s: GTV %.1f cm3, true TCP %.3f",
        params["patient_id"],
        truth["gtv_volume_cc"],
        truth["model"]["tcp"],
    )
    return truth


def run_sheet(inputs: dict, outputs: dict, *, params: dict | None = None) -> pd.DataFrame:
    """Concatenate the per-patient rows into the cohort's patient sheet."""
    rows = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in inputs["rows"]]
    sheet = pd.concat(rows, ignore_index=True)
    Path(outputs["sheet"]).parent.mkdir(parents=True, exist_ok=True)
    files.write_tsv(sheet, outputs["sheet"])
    return sheet
