"""PET stage accuracy against ground truth.

Usage: python benchmarks/pet_accuracy.py [RESULTS_DIR]   (default: results)

Reads each patient's ``pet/metrics.tsv`` (TG-211 metrics of every method against the true
active volume) and the truth record, and prints per method the Dice median [IQR] over the
cohort, then split by lesion contrast (true active SUV < 3: low contrast) and by active volume
(below / above the cohort median), with the winner of each group.  Also the SUV error: the
median ratio of the pipeline's SUV to the true SUV in voxels whose 9 mm neighbourhood has one
true value (away from edges, where blur and resampling cannot act).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from dosepaint.io import files
from dosepaint.stages.pet import median_iqr


def main(results: Path) -> None:
    rows, suv_rows = [], []
    for p in sorted((results / "patients").iterdir()):
        m = p / "pet" / "metrics.tsv"
        if not m.exists():
            continue
        truth_dir = results / "synthetic" / "truth" / p.name
        t = files.read_json(truth_dir / "truth.json")["pet"]
        df = files.read_tsv(m)
        df["suv_active_true"] = t["suv_active"]
        df["active_ml_true"] = t["active_volume_cc"]
        rows.append(df)
        suv, _ = files.read_array(p / "pet" / "suv.nii.gz")
        true, _ = files.read_array(truth_dir / "suv.nii.gz")
        flat = ((ndimage.maximum_filter(true, size=7) - ndimage.minimum_filter(true, size=7)) < 1e-6) & (true > 0.3)
        suv_rows.append({"patient_id": p.name, "median_suv_ratio_flat": float(np.median(suv[flat] / true[flat]))})
    table = pd.concat(rows, ignore_index=True)
    n = table["patient_id"].nunique()
    order = list(dict.fromkeys(table["method"]))
    pd.set_option("display.width", 220)

    print(f"{n} patients; reference: {sorted(set(table['reference']))}")
    overall = pd.DataFrame(
        {
            k: table.groupby("method", sort=False)[k].apply(median_iqr)
            for k in ("dice", "sensitivity", "ppv", "hd95_mm", "rve")
        }
    ).reindex(order)
    print("\nAll patients, median [IQR]:\n" + overall.to_string())

    table["contrast"] = np.where(table["suv_active_true"] < 3.0, "low (SUV<3)", "high (SUV>=3)")
    vol_median = table.drop_duplicates("patient_id")["active_ml_true"].median()
    table["size"] = np.where(
        table["active_ml_true"] < vol_median, f"small (<{vol_median:.0f} mL)", f"large (>={vol_median:.0f} mL)"
    )
    for by in ("contrast", "size"):
        dice = table.pivot_table(index="method", columns=by, values="dice", aggfunc="median").reindex(order)
        counts = table.drop_duplicates("patient_id")[by].value_counts().to_dict()
        print(f"\nDice median by {by} (patients {counts}):\n" + dice.round(3).to_string())
        print("  winner: " + ", ".join(f"{c}: {dice[c].idxmax()} ({dice[c].max():.3f})" for c in dice.columns))

    best = overall.index[np.argmax(table.groupby("method", sort=False)["dice"].median().reindex(order))]
    print(f"\nwinner over all patients (median Dice): {best}")
    suv = pd.DataFrame(suv_rows)
    print(
        f"\nSUV / true SUV away from edges: median {suv['median_suv_ratio_flat'].median():.4f}, "
        f"range [{suv['median_suv_ratio_flat'].min():.4f}, {suv['median_suv_ratio_flat'].max():.4f}]"
    )
    secs = (
        pd.DataFrame(
            [json.loads(q.read_text())["method_seconds"] for q in sorted((results / "patients").glob("*/pet/qc.json"))]
        )
        .median()
        .reindex(order)
    )
    print("\nmedian seconds per method and patient: " + ", ".join(f"{k} {v:.2f}" for k, v in secs.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
