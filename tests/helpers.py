"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dosepaint import cohort, layout


def ingest_params(config_schema, pid="SYN001", **over):
    cfg = cohort.validate_config({"cohort": {"source": "synthetic"}}, config_schema)["ingest"]
    keys = ["required_modalities", "required_structures", "structure_aliases", "dose_grid_mm",
            "dose_grid_margin_mm", "slice_spacing_tolerance_mm", "default_pgse_delta_ms",
            "default_pgse_Delta_ms", "registration"]
    return {"patient_id": pid, **{k: cfg[k] for k in keys}, **over}


def outputs_in(folder: Path) -> dict:
    return {k: str(folder / v) for k, v in layout.all_ingest_outputs().items()}


def checksums(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
