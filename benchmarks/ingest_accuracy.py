"""Ingest accuracy and cost on a synthetic cohort run, against ground truth.

Usage: python benchmarks/ingest_accuracy.py [RESULTS_DIR]   (default: results)

Prints one row per patient (GTV volume error, target registration error of
T2w→CT and of the chained CT→DWI map over the GTV, residual rotation, ingest
wall time and peak memory from Snakemake's benchmark files) and a summary.
"""

import sys
from pathlib import Path

import pandas as pd

from dosepaint.validation import ingest_errors


def main(results: Path) -> pd.DataFrame:
    pids = sorted(p.name for p in (results / "patients").iterdir() if (p / "ingest" / "qc.json").exists())
    rows = []
    for pid in pids:
        row = ingest_errors(results / "patients" / pid / "ingest", results / "synthetic" / "truth" / pid)
        bench = results / "benchmarks" / "ingest" / f"{pid}.tsv"
        if bench.exists():
            b = pd.read_csv(bench, sep="\t")
            row.update(ingest_wall_s=float(b["s"].iloc[0]), ingest_max_rss_mb=float(b["max_rss"].iloc[0]))
        rows.append(row)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.round(3).to_string(index=False))
    print("\nsummary (median / max over patients):")
    for col in df.columns[1:]:
        if df[col].dtype.kind == "f":
            print(f"  {col:24s} {df[col].median():9.3f} / {df[col].abs().max():9.3f}")
    return df


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
