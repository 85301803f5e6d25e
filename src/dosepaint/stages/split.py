"""Train/test split stage: from the sheet, or seeded and stratified by outcome."""

from __future__ import annotations

import pandas as pd

from ..cohort import make_split, read_sheet
from ..io import files


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Write ``split.tsv`` (patient_id, split, event, source).

    ``params``: schema, clinical_columns, dicom_root, n_test, seed.
    """
    sheet = read_sheet(inputs["sheet"], schema=params["schema"], clinical_columns=params["clinical_columns"],
                       dicom_root=params["dicom_root"])
    if sheet["split"].notna().all():
        split = dict(zip(sheet["patient_id"], sheet["split"]))
        source = "sheet"
    else:
        split = make_split(sheet["patient_id"], sheet["event"], n_test=params["n_test"], seed=params["seed"])
        source = f"seeded outcome-stratified (seed {params['seed']}, n_test {params['n_test']})"
    out = pd.DataFrame({"patient_id": sheet["patient_id"], "split": [split[p] for p in sheet["patient_id"]],
                        "event": sheet["event"], "source": source})
    files.write_tsv(out, outputs["split"])
    return out
