"""Small table stages."""

from __future__ import annotations

import pandas as pd

from ..io import files


def run_concat(inputs: dict, outputs: dict, *, params: dict | None = None) -> pd.DataFrame:
    """Concatenate per-patient one-row TSVs (``inputs["qc"]``) into ``outputs["summary"]``."""
    df = pd.concat([pd.read_csv(p, sep="\t") for p in inputs["qc"]], ignore_index=True)
    files.write_tsv(df, outputs["summary"])
    return df
