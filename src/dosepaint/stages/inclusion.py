"""Inclusion stage: the patients left out of the cohort, with the stage, the file and the problem, one table.

Run twice by the workflow: before the split (``excluded.tsv``: the input check and the per-patient
imaging stages: ingest, DWI, PET) and after the plans (``planning_failures.tsv``: dose influence, plans,
scenarios, robustness of the planned patients), from the input-check records and the stages' status
records (:mod:`dosepaint.stages.guard`).
"""

from __future__ import annotations

import pandas as pd

from ..errors import ConfigError
from ..io import files

EXCLUDED_COLUMNS = ["patient_id", "stage", "file", "problem"]


def excluded_table(records: list[dict], statuses: list[dict] | tuple = ()) -> pd.DataFrame:
    """One row per patient left out, in the order of ``records`` / ``statuses``.

    ``records``: input-check records (``stages.check``), ``excluded`` ones listed; ``statuses``: stage
    status records (``stages.guard``), each patient's first ``failed`` one listed (a ``skipped`` stage
    only repeats the failure before it).
    """
    rows, seen = [], set()
    for r in records:
        if r["status"] == "excluded":
            rows.append(
                {"patient_id": r["patient_id"], "stage": "input check", "file": r["file"], "problem": r["problem"]}
            )
            seen.add(r["patient_id"])
    for r in statuses:
        if r["status"] == "failed" and r["patient_id"] not in seen:
            rows.append({k: r[k] for k in EXCLUDED_COLUMNS})
            seen.add(r["patient_id"])
    return pd.DataFrame(rows, columns=EXCLUDED_COLUMNS)


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Write ``excluded`` (:data:`EXCLUDED_COLUMNS`; a header only when nobody is left out).

    ``inputs["checks"]`` (optional): the input-check record of every patient of the sheet;
    ``inputs["statuses"]`` (optional): stage status records; ``params["patient_ids"]``: the patients,
    in order (with ``checks``, each must have its record).
    """
    records = {r["patient_id"]: r for r in (files.read_json(p) for p in files.as_paths(inputs.get("checks") or []))}
    if inputs.get("checks"):
        unchecked = [p for p in params["patient_ids"] if p not in records]
        if unchecked:
            raise ConfigError(f"no input check for patient(s) {unchecked}")
    order = {p: i for i, p in enumerate(params["patient_ids"])}
    statuses = [files.read_json(p) for p in files.as_paths(inputs.get("statuses") or [])]
    statuses.sort(key=lambda r: order.get(r["patient_id"], len(order)))
    excluded = excluded_table([records[p] for p in params["patient_ids"] if p in records], statuses)
    files.write_tsv(excluded, outputs["excluded"])
    return excluded
