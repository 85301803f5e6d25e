"""Inclusion stage: the patients excluded at the input check, with the file and the problem, one table."""

from __future__ import annotations

import pandas as pd

from ..errors import ConfigError
from ..io import files

EXCLUDED_COLUMNS = ["patient_id", "stage", "file", "problem"]


def excluded_table(records: list[dict]) -> pd.DataFrame:
    """The excluded patients of the input-check records (``stages.check``), one row each, in order."""
    rows = [{"patient_id": r["patient_id"], "stage": "input check", "file": r["file"], "problem": r["problem"]}
            for r in records if r["status"] == "excluded"]
    return pd.DataFrame(rows, columns=EXCLUDED_COLUMNS)


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Write ``excluded.tsv`` (:data:`EXCLUDED_COLUMNS`; a header only when nobody is excluded).

    ``inputs["checks"]``: the input-check record of every patient of the sheet;
    ``params["patient_ids"]``: the sheet's patients, in order (each must have its record).
    """
    records = {r["patient_id"]: r for r in (files.read_json(p) for p in files.as_paths(inputs["checks"]))}
    unchecked = [p for p in params["patient_ids"] if p not in records]
    if unchecked:
        raise ConfigError(f"no input check for patient(s) {unchecked}")
    excluded = excluded_table([records[p] for p in params["patient_ids"]])
    files.write_tsv(excluded, outputs["excluded"])
    return excluded
