"""DWI stage accuracy against ground truth, and matching speed.

Usage: python benchmarks/dwi_accuracy.py [RESULTS_DIR]   (default: results)

Per patient: voxel-wise Spearman correlation and median relative error of the
cell density ρ in the GTV (dose grid), total clonogen error, and the TCP from
estimated vs true clonogens (truth α, β; delivered dose).  Then the matching
speed of the ADC lookup on one core (target ≥ 1e6 voxels/s) and of the kNN
signal match, on 2e6 synthetic voxels.
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dosepaint.dwi import AdcLookup, build_library, match_signals
from dosepaint.validation import dwi_errors


def accuracy(results: Path) -> pd.DataFrame:
    rows = []
    for p in sorted((results / "patients").iterdir()):
        if (p / "dwi" / "qc.tsv").exists():
            rows.append(dwi_errors(p / "ingest", p / "dwi", results / "synthetic" / "truth" / p.name))
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.round(4).to_string(index=False))
    print(
        f"\nmean |TCP_est − TCP_true| = {df['tcp_diff_pp'].abs().mean():.2f} pp "
        f"(max {df['tcp_diff_pp'].abs().max():.2f}); mean TCP_est − TCP_true = {df['tcp_diff_pp'].mean():+.2f} pp"
    )
    if len(df) >= 3:
        from scipy.stats import spearmanr

        span = df["mean_rho_true"].max() / df["mean_rho_true"].min()
        print(f"patient-mean ρ: Spearman {spearmanr(df['mean_rho_true'], df['mean_rho_est'])[0]:.3f} over "
              f"{len(df)} patients (true means span {span:.1f}×); pooled 90 % coverage "
              f"{np.nanmean(df['coverage_90']):.3f}")  # fmt: skip
    print(
        f"median Spearman {df['spearman_rho_gtv'].median():.3f}, median voxel rel. error "
        f"{df['median_rel_error_rho_gtv'].median():.3f}, median |clonogen error| "
        f"{df['clonogens_error_pct'].abs().median():.1f} %"
    )
    return df


def speed(n: int = 2_000_000) -> None:
    b = np.array([0, 50, 100, 200, 400, 600, 800, 1000.0])
    lib = build_library(b, delta=0.02, Delta=0.04)
    rng = np.random.default_rng(0)
    adc = rng.uniform(0.4e-3, 2.4e-3, n)
    sn = np.exp(-np.outer(b[b >= 100], adc)) + rng.normal(0, 0.02, (6, n))
    look = AdcLookup(lib)
    t = time.perf_counter()
    look(adc, sn)
    dt = time.perf_counter() - t
    print(
        f"\nADC lookup ({lib.signals.shape[0]} library entries): {n / dt:.3g} voxels/s "
        f"(target 1e6: ratio {n / dt / 1e6:.2f})"
    )
    m = 100_000
    t = time.perf_counter()
    match_signals(sn[:, :m], lib)
    dt = time.perf_counter() - t
    print(f"kNN signal match (k = 16): {m / dt:.3g} voxels/s")


if __name__ == "__main__":
    accuracy(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
    speed()
