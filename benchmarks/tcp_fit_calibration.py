"""Bias, RMSE and interval coverage of the TCP-model estimators on simulated training cohorts.

Usage: python benchmarks/tcp_fit_calibration.py [--cohorts 200] [--patients 27] [--boot 40] [--seed 0]
       python benchmarks/tcp_fit_calibration.py --identifiability [--cohorts 50]

Each cohort: ``--patients`` patients with realistic GTV cell counts (400–4000 voxels of 125 mm³,
ρ log-normal around 1e5 cells/mm³, patient and voxel SD 0.5 in ln ρ) and delivered carbon doses
(16 fractions, 64–74 Gy(RBE) prescribed, 2 % voxel noise, a cold sub-volume of 0–8 % of the voxels at
85–98 %), outcomes drawn from the Poisson TCP with the truth α = 0.087 Gy⁻¹, α/β = 2 Gy,
f_c = 10^-3.2 (mean TCP ≈ 0.7).  Estimators: least squares (the study's) and maximum likelihood with
percentile-bootstrap 95 % intervals (``--boot`` resamples), and maximum likelihood with the profile-
likelihood interval of α (no resampling).  Reported per estimator: bias and RMSE of α, ln f_c and of
the mean predicted TCP of the cohort against the truth's, and the coverage of the 95 % intervals of α.
``--identifiability``: by cohort size, the share of cohorts whose profile interval of α is closed on both
sides by the outcomes (f_c inside its bounds where the likelihood ratio crosses the cut, not held there by
them), the interval's median width and its coverage.
"""

import argparse
import sys
import time

import numpy as np
import pandas as pd

from dosepaint import tcp_fit as tf

TRUTH = {"alpha": 0.087, "log10_fc": -3.2}
BOUNDS = {"alpha_bounds": (0.01, 1.0), "log10_fc_bounds": (-6.0, 0.0)}


def cohort(rng, n):
    pats = []
    for _ in range(n):
        nv = int(rng.uniform(400, 4000))
        cells = np.exp(np.log(1e5 * 125) + rng.normal(0, 0.5) + rng.normal(0, 0.5, nv))
        dose = rng.uniform(64, 74) * (1 + rng.normal(0, 0.02, nv))
        cold = rng.random(nv) < rng.uniform(0, 0.08)
        dose[cold] *= rng.uniform(0.85, 0.98, cold.sum())
        pats.append(tf.PatientDose.from_arrays(cells, dose, alpha_beta=2.0, n_fractions=16))
    tcp = tf.predict(pats, **TRUTH)
    y = (rng.random(n) < tcp).astype(float)
    while y.min() == y.max():
        y = (rng.random(n) < tcp).astype(float)
    return pats, y, tcp


def one(rng, n, n_boot) -> list:
    pats, y, tcp = cohort(rng, n)
    rows = []
    for est in ("least_squares", "maximum_likelihood"):
        f = tf.fit(pats, y, estimator=est, **BOUNDS)
        boot = tf.bootstrap(pats, y, rng=rng, n_boot=n_boot, estimator=est, **BOUNDS)
        rows.append({"estimator": f"{est} (bootstrap CI)", "alpha": f.alpha, "log10_fc": f.log10_fc,
                     "ci_lo": boot["alpha"][0], "ci_hi": boot["alpha"][1],
                     "mean_tcp": tf.predict(pats, alpha=f.alpha, log10_fc=f.log10_fc).mean(),
                     "true_mean_tcp": tcp.mean()})  # fmt: skip
    prof = tf.profile_alpha(pats, y, **BOUNDS)
    ml = rows[1]
    rows.append({**ml, "estimator": "maximum_likelihood (profile CI)", "ci_lo": prof["ci"][0], "ci_hi": prof["ci"][1]})
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for est, g in df.groupby("estimator", sort=False):
        ln_fc = g["log10_fc"] * np.log(10) - TRUTH["log10_fc"] * np.log(10)
        out.append({"estimator": est, "n_cohorts": len(g),
                    "alpha_bias": (g["alpha"] - TRUTH["alpha"]).mean(),
                    "alpha_rmse": np.sqrt(((g["alpha"] - TRUTH["alpha"]) ** 2).mean()),
                    "ln_fc_bias": ln_fc.mean(), "ln_fc_rmse": np.sqrt((ln_fc**2).mean()),
                    "mean_tcp_bias": (g["mean_tcp"] - g["true_mean_tcp"]).mean(),
                    "mean_tcp_rmse": np.sqrt(((g["mean_tcp"] - g["true_mean_tcp"]) ** 2).mean()),
                    "alpha_ci95_coverage": ((g["ci_lo"] <= TRUTH["alpha"]) & (TRUTH["alpha"] <= g["ci_hi"])).mean(),
                    "alpha_ci_median_width": (g["ci_hi"] - g["ci_lo"]).median()})  # fmt: skip
    return pd.DataFrame(out)


def identifiability(rng, sizes, n_cohorts) -> pd.DataFrame:
    rows = []
    for n in sizes:
        closed = []
        for _ in range(n_cohorts):
            pats, y, _ = cohort(rng, n)
            prof = tf.profile_alpha(pats, y, **BOUNDS)
            closed.append((all(prof["closed_by_data"]), prof["ci"][1] - prof["ci"][0],
                           prof["ci"][0] <= TRUTH["alpha"] <= prof["ci"][1]))  # fmt: skip
        c = np.array(closed, float)
        rows.append({"patients": n, "cohorts": n_cohorts, "share_closed_by_data": c[:, 0].mean(),
                     "median_ci_width": float(np.median(c[:, 1])), "coverage": c[:, 2].mean()})  # fmt: skip
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohorts", type=int, default=200)
    ap.add_argument("--patients", type=int, default=27)
    ap.add_argument("--boot", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identifiability", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    pd.set_option("display.width", 220)
    if a.identifiability:
        print(identifiability(rng, (27, 54, 108, 216, 432), a.cohorts).round(3).to_string(index=False))
        return
    rows, t0 = [], time.perf_counter()
    for k in range(a.cohorts):
        rows += one(rng, a.patients, a.boot)
        if (k + 1) % 20 == 0:
            print(f"{k + 1} cohorts, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            print(summarise(pd.DataFrame(rows)).round(4).to_string(index=False), flush=True)
    print(f"\nfinal ({a.cohorts} cohorts of {a.patients}, {a.boot} bootstrap resamples):")
    print(summarise(pd.DataFrame(rows)).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
