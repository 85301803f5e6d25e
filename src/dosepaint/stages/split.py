"""Train/test split stage: over the patients that pass the input check, from the sheet or seeded and
stratified by outcome; the excluded patients, with the file and the problem, beside it."""

from __future__ import annotations

import pandas as pd

from ..cohort import make_split, read_sheet
from ..errors import ConfigError
from ..io import files

EXCLUDED_COLUMNS = ["patient_id", "stage", "file", "problem"]


def excluded_table(records: list[dict]) -> pd.DataFrame:
    """The excluded patients of the input-check records (``stages.check``), one row each."""
    rows = [{"patient_id": r["patient_id"], "stage": "input check", "file": r["file"], "problem": r["problem"]}
            for r in records if r["status"] == "excluded"]
    return pd.DataFrame(rows, columns=EXCLUDED_COLUMNS)


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Write ``split.tsv`` (patient_id, split, event, source) and ``excluded.tsv`` (:data:`EXCLUDED_COLUMNS`).

    ``inputs``: sheet; checks (the input-check records of every patient of the sheet).
    ``params``: schema, clinical_columns, dicom_root, n_test, seed.

    Excluded patients are left out before the split is drawn (as ineligible patients are left out
    before allocation): the split is that of the included patients.
    """
    sheet = read_sheet(inputs["sheet"], schema=params["schema"], clinical_columns=params["clinical_columns"],
                       dicom_root=params["dicom_root"])
    records = [files.read_json(p) for p in files.as_paths(inputs["checks"])]
    checked = {r["patient_id"]: r for r in records}
    unchecked = sorted(set(sheet["patient_id"]) - set(checked))
    if unchecked:
        raise ConfigError(f"no input check for patient(s) {unchecked}")
    excluded = excluded_table([checked[p] for p in sheet["patient_id"]])
    sheet = sheet[~sheet["patient_id"].isin(excluded["patient_id"])]
    note = f" ({len(excluded)} excluded at the input check: see excluded.tsv)" if len(excluded) else ""
    if sheet.empty:
        raise ConfigError(f"every patient was excluded at the input check{note}")
    if sheet["split"].notna().all():
        split = dict(zip(sheet["patient_id"], sheet["split"]))
        source = "sheet"
    else:
        try:
            split = make_split(sheet["patient_id"], sheet["event"], n_test=params["n_test"], seed=params["seed"])
        except ConfigError as exc:
            raise ConfigError(f"{exc}{note}") from None
        source = f"seeded outcome-stratified (seed {params['seed']}, n_test {params['n_test']})"
    sides = set(split.values())
    if not {"train", "test"} <= sides:
        raise ConfigError(f"the split has no {'test' if 'test' not in sides else 'training'} patient{note}")
    out = pd.DataFrame({"patient_id": sheet["patient_id"], "split": [split[p] for p in sheet["patient_id"]],
                        "event": sheet["event"], "source": source})
    files.write_tsv(out, outputs["split"])
    files.write_tsv(excluded, outputs["excluded"])
    return out
