"""How the pipeline scales with the number of patients: run the per-patient stages on 1, 4, 16 … patients.

    python benchmarks/scaling.py WORKDIR [--patients 1 4 16] [--planned 4] [--cores 2] [--grid-mm 5]

For each patient count N it generates a default-preset synthetic cohort of N patients and runs, through
Snakemake on ``--cores`` cores, synthesis → input check → ingest → DWI → PET for all N, and dose
influence → plans → the robustness scenarios for the first ``--planned`` of them (planning every
patient of 16 would take hours on 2 cores). No split, no fit: the TCP model of the objective is the
config's (``planning.tcp.source: config``) and σ of the cell-count scenarios the patient's own, so a
single patient runs too. It prints, per N: the run's wall time, the jobs' total CPU time, wall time per
patient; per rule the median wall and CPU seconds of one patient's job and the peak memory; and the
ratio of each per-patient median to that at the smallest N (flat ≈ 1 means per-patient cost does not
grow with the cohort; a rise shows contention or a regression; planning rules per 100 cm³ of GTV, as
each cohort's first patients differ). Results go to ``WORKDIR/n{N}/`` (``run.json`` keeps the run's
wall time; ``--report-only`` prints the tables of runs already there).

These are measurements of runs on this machine: compare ratios between runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_cost import read_benchmarks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Rules whose cost follows the target's size (spots of the dose influence) rather than the patient.
GTV_BOUND = ("dose_influence", "plan", "scenario_dose")


def config_text(results: Path, n: int, planned: list[str], grid_mm: float) -> str:
    listed = ", ".join(planned)
    return (
        f"results: {results}\ncohort:\n  source: synthetic\n  n_test: 1\n"
        f"synthetic:\n  n_patients: {n}\ningest:\n  dose_grid_mm: {grid_mm}\n"
        f"planning:\n  patients: [{listed}]\n  tcp:\n    source: config\n"
        f"robustness:\n  sigma_scope: patient\n"
    )


def targets(results: Path, pids: list[str], planned: list[str]) -> list[str]:
    out = [
        f"{results}/cohort/{t}" for t in ("ingest_summary.tsv", "dwi_summary.tsv", "pet_summary.tsv", "excluded.tsv")
    ]
    out += [f"{results}/patients/{p}/plans/metrics.tsv" for p in planned]
    out += [f"{results}/patients/{p}/robustness/scenario_metrics.tsv" for p in planned]
    return out


def gtv_cc(results: Path) -> pd.Series:
    """GTV volume (cm³) per patient, from the ingest summary."""
    table = pd.read_csv(results / "cohort" / "ingest_summary.tsv", sep="\t", dtype={"patient_id": str})
    return table.set_index("patient_id")["GTV_cc"]


def run_one(workdir: Path, n: int, *, planned_max: int, cores: int, grid_mm: float, report_only: bool) -> dict:
    results = workdir / f"n{n}" / "results"
    record = workdir / f"n{n}" / "run.json"
    pids = [f"SYN{i:03d}" for i in range(1, n + 1)]
    planned = pids[:planned_max]
    if not report_only:
        wall = run_snakemake(workdir / f"n{n}", n, pids, planned, cores=cores, grid_mm=grid_mm)
        record.write_text(json.dumps({"n": n, "planned": len(planned), "wall_s": wall}))
    b = read_benchmarks(results)
    b["n"] = n
    b["gtv_cc"] = b["patient_id"].map(gtv_cc(results))
    return {**json.loads(record.read_text()), "benchmarks": b}


def run_snakemake(folder: Path, n: int, pids: list[str], planned: list[str], *, cores: int, grid_mm: float) -> float:
    """Run the per-patient stages of a cohort of ``n`` in ``folder``; returns the wall time (s)."""
    results = folder / "results"
    cfg = folder / "config.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(config_text(results, n, planned, grid_mm))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            str(bindir / "snakemake"),
            "--cores",
            str(cores),
            "--keep-going",
            "--configfile",
            str(cfg),
            "--",
            *targets(results, pids, planned),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    (folder / "snakemake.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"N = {n}: snakemake failed (exit {proc.returncode}); see {folder / 'snakemake.log'}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--patients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--planned", type=int, default=4, help="plan (and run the scenarios of) at most this many")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--grid-mm", type=float, default=5.0)
    ap.add_argument("--report-only", action="store_true", help="print the tables of earlier runs in WORKDIR")
    a = ap.parse_args()
    runs = [
        run_one(
            a.workdir.resolve(), n, planned_max=a.planned, cores=a.cores, grid_mm=a.grid_mm, report_only=a.report_only
        )
        for n in sorted(a.patients)
    ]
    pd.set_option("display.width", 200)
    print("== per run ==")
    rows = []
    for r in runs:
        b = r["benchmarks"]
        rows.append(
            {
                "patients": r["n"],
                "planned": r["planned"],
                "jobs": len(b),
                "wall_min": r["wall_s"] / 60,
                "cpu_min": b["cpu_s"].sum() / 60,
                "wall_s_per_patient": r["wall_s"] / r["n"],
                "cpu_utilisation": b["cpu_s"].sum() / (r["wall_s"] * a.cores),
                "peak_job_gb": b["max_rss_mb"].max() / 1024,
            }
        )
    print(pd.DataFrame(rows).round(2).to_string(index=False))

    allb = pd.concat([r["benchmarks"] for r in runs], ignore_index=True)
    # One patient's job per rule (scenario jobs: summed per patient).
    per_patient = (
        allb[allb["patient_id"].notna()]
        .groupby(["n", "rule", "patient_id"])
        .agg(s=("s", "sum"), cpu_s=("cpu_s", "sum"), rss=("max_rss_mb", "max"), gtv=("gtv_cc", "first"))
        .reset_index()
    )
    # Planning costs grow with the target (spots): the cohorts' first patients differ in GTV volume (the
    # generator draws a cohort of N), so those rules compare per 100 cm³ of GTV.
    per_patient["cpu_s_per_100cc"] = per_patient["cpu_s"] / per_patient["gtv"] * 100
    med = (
        per_patient.groupby(["rule", "n"])
        .agg(
            patients=("patient_id", "size"),
            median_wall_s=("s", "median"),
            median_cpu_s=("cpu_s", "median"),
            cpu_s_per_100cc=("cpu_s_per_100cc", "median"),
            gtv_cc=("gtv", "median"),
            peak_gb=("rss", lambda m: m.max() / 1024),
        )
        .reset_index()
    )
    planning = med["rule"].isin(GTV_BOUND)
    med.loc[~planning, ["cpu_s_per_100cc", "gtv_cc"]] = float("nan")
    per = med["median_cpu_s"].where(~planning, med["cpu_s_per_100cc"])
    # med is sorted by rule, then n: each rule's first row is its smallest cohort.
    med["cpu_ratio_to_smallest_n"] = per / per.groupby(med["rule"]).transform("first")
    med["wall_ratio_to_smallest_n"] = med["median_wall_s"] / med.groupby("rule")["median_wall_s"].transform("first")
    print(
        "\n== per patient and rule (median over the run's patients; scenario jobs summed per patient; the CPU "
        "ratio of the planning rules is per 100 cm³ of GTV) =="
    )
    print(med.sort_values(["rule", "n"]).round(2).to_string(index=False))
    cohort = allb[allb["patient_id"].isna()].groupby(["rule", "n"]).agg(s=("s", "sum"), cpu_s=("cpu_s", "sum"))
    if not cohort.empty:
        print("\n== cohort jobs ==")
        print(cohort.round(2).to_string())


if __name__ == "__main__":
    main()
