"""Train/test split stage: over the patients that passed the input check, from the sheet or seeded and
stratified by outcome.
"""

from __future__ import annotations

import pandas as pd

from ..cohort import default_n_test, make_split, read_sheet
from ..errors import ConfigError
from ..io import files


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Write ``split.tsv`` (patient_id, split, event, source) over the patients not excluded.

    ``inputs``: sheet; excluded (the inclusion stage's ``excluded.tsv``).
    ``params``: schema, clinical_columns, dicom_root, n_test, seed.

    Excluded patients are left out before the split is drawn (as ineligible patients are left out
    before allocation): the split is that of the included patients.
    """
    sheet = read_sheet(
        inputs["sheet"],
        schema=params["schema"],
        clinical_columns=params["clinical_columns"],
        dicom_root=params["dicom_root"],
    )
    excluded = files.read_tsv(inputs["excluded"])
    sheet = sheet[~sheet["patient_id"].isin(excluded["patient_id"])]
    note = f" ({len(excluded)} excluded at the input check: see excluded.tsv)" if len(excluded) else ""
    if sheet.empty:
        raise ConfigError(f"every patient was excluded at the input check{note}")
    if sheet["split"].notna().all():
        split = dict(zip(sheet["patient_id"], sheet["split"]))
        source = "sheet"
    else:
        n_test = params["n_test"] if params["n_test"] is not None else default_n_test(len(sheet))
        try:
            split = make_split(sheet["patient_id"], sheet["event"], n_test=n_test, seed=params["seed"])
        except ConfigError as exc:
            raise ConfigError(f"{exc}{note}") from None
        how = "" if params["n_test"] is not None else ", the study's share of the included patients"
        source = f"seeded outcome-stratified (seed {params['seed']}, n_test {n_test}{how})"
    sides = set(split.values())
    if not {"train", "test"} <= sides:
        raise ConfigError(f"the split has no {'test' if 'test' not in sides else 'training'} patient{note}")
    out = pd.DataFrame(
        {
            "patient_id": sheet["patient_id"],
            "split": [split[p] for p in sheet["patient_id"]],
            "event": sheet["event"],
            "source": source,
        }
    )
    files.write_tsv(out, outputs["split"])
    return out
