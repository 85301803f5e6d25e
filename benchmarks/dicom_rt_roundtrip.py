"""The DICOM RT packages of a run, read back by tools no one here wrote.

Usage: python benchmarks/dicom_rt_roundtrip.py [RESULTS_DIR] [--recompute N]   (from the repository root;
default results; the test extra's dicompyler-core and dicom3tools' dciodvfy on the PATH)

Per patient: dciodvfy errors over every object; dicompyler-core's Dmean, D95, D50 of GTV, CTV_HD and
CTV_LD for each plan's RTDOSE against ours (largest relative difference); the Dice of its reading of
the derived structures against our masks on the CT grid (smallest); and, for the first N patients
(default 1), pyRadPlan's dose of each re-read RT Ion Plan against the plan's (largest difference in
CTV_LD, % of the prescription). The tiny cohort's test asserts the same bounds; this prints the numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dosepaint.io import files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ (its reader checks)
from tests.rt_checks import dciodvfy_errors, dvh_differences, recomputed_dose, region_dice  # noqa: E402

PLANS = ("uniform", "de", "dr")


def _recompute(patient: Path, prescription_gy: float) -> float:
    targets, _ = files.read_masks(patient / "ingest" / "masks_dose", ["CTV_LD"], pid=patient.name, needed_by="")
    worst = 0.0
    for plan in PLANS:
        dose, _ = files.read_array(patient / "plans" / plan / "dose.nii.gz")
        again = recomputed_dose(patient / "dicom_rt" / f"RP_{plan}.dcm", patient)
        worst = max(worst, float(np.max(np.abs(again - dose)[targets["CTV_LD"]])))
    return 100.0 * worst / prescription_gy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?", default="results", type=Path)
    ap.add_argument("--recompute", type=int, default=1)
    ap.add_argument("--prescription-gy", type=float, default=73.6)
    a = ap.parse_args()
    rows = []
    for i, patient in enumerate(sorted(p.parent.parent for p in a.results.glob("patients/*/dicom_rt/RS.dcm"))):
        t0 = time.perf_counter()
        objects = sorted((patient / "dicom_rt").rglob("*.dcm"))
        row = {"patient_id": patient.name, "objects": len(objects),
               "dciodvfy_errors": sum(len(dciodvfy_errors(p)) for p in objects),
               "dvh_max_rel_diff_pct": 100.0 * max(abs(v) for v in dvh_differences(patient).values()),
               "dice_min": min(region_dice(patient).values())}  # fmt: skip
        if i < a.recompute:
            row["recompute_max_diff_pct_dp"] = _recompute(patient, a.prescription_gy)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
