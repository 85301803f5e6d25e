"""Where the main job's time goes, from Snakemake's benchmark files and the jobs' logs, and what other runs
would cost.

    python benchmarks/pipeline_cost.py RESULTS_DIR [--cores 2] [--nodes 16] [--cores-per-node 16]

Reads every ``RESULTS_DIR/benchmarks/**.tsv`` (one per job: wall seconds ``s``, peak ``max_rss`` MB) and
every job log's usage line under ``RESULTS_DIR/logs`` (the job's CPU seconds, exact; the benchmark
files' ``cpu_time`` is sampled every 30 s and stands in only where a log has no usage line) and prints,
per rule: jobs, total and median wall time, total CPU time, peak memory; per patient: the time of each
per-patient stage against the GTV volume (from ``cohort/ingest_summary.tsv``); and estimates of the
wall time of

* the same run on ``--cores`` cores: the larger of the total CPU time over the cores and the longest
  per-patient chain of CPU times (the critical path);
* ``config/paper.yaml`` (3 mm dose grid instead of 5 mm, every setup scenario recalculated rather than
  moved rigidly): the recalculated range scenarios measured here stand in for the setup ones, and the
  planning rules' CPU times are scaled by ``--paper-factors`` (3 mm over 5 mm, measured on one patient);
* a cluster of ``--nodes`` nodes with ``--cores-per-node`` cores each.

These are estimates from the jobs of one run, not measurements of the other set-ups; per-job times on a
loaded 2-core machine include contention.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dosepaint.logs import read_usage
from dosepaint.robustness import Scenario

PER_PATIENT_CHAIN = ("synthesize_patient", "check_inputs", "ingest", "dwi", "pet", "dose_influence", "plan")
#: Time on the study's 3 mm dose grid over that on the default 5 mm one: wall-time ratios measured on one
#: patient (466 cm³ GTV, same code, busy 2-core machine): influence 85/76 s, plans 372/159 s, a range
#: scenario 59/54 s (peak memory 6.5, 5.6 and 0.8 GB at 3 mm).
PAPER_FACTORS = {"dose_influence": 1.1, "plan": 2.3, "scenario_dose": 1.1}


def _job_key(rel: Path) -> tuple[str, str | None, str | None]:
    """Rule, patient and scenario of a job from its benchmark or log file's path below its folder."""
    rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    pid = rel.parts[1] if len(rel.parts) > 2 else (rel.stem if len(rel.parts) == 2 else None)
    scen = rel.stem if len(rel.parts) > 2 else None
    return rule, pid, scen


def read_benchmarks(results: Path) -> pd.DataFrame:
    """One row per job: wall ``s`` and peak ``max_rss_mb`` from its benchmark file; ``cpu_s`` from its
    log's last usage line (:func:`dosepaint.logs.usage_line`, ``cpu_from`` "log"), else from the benchmark
    file (``cpu_from`` "benchmark": sampled every 30 s after a job's first 30 s, so up to 30 s short per job);
    ``bench_cpu_s`` the benchmark file's. Jobs with a usage line but no benchmark file (the cohort tables)
    have no ``s``."""
    rows = {}
    for p in sorted((results / "benchmarks").rglob("*.tsv")):
        t = pd.read_csv(p, sep="\t")
        if t.empty:
            continue
        bench_cpu = float(t["cpu_time"].iloc[-1]) if "cpu_time" in t else float(t["s"].iloc[-1])
        rows[_job_key(p.relative_to(results / "benchmarks"))] = {
            "s": float(t["s"].iloc[-1]),
            "bench_cpu_s": bench_cpu,
            "max_rss_mb": float(t["max_rss"].iloc[-1]) if "max_rss" in t else np.nan,
        }
    for p in sorted((results / "logs").rglob("*.log")):
        usage = read_usage(p)
        if usage is not None:
            row = rows.setdefault(_job_key(p.relative_to(results / "logs")), {"s": np.nan, "bench_cpu_s": np.nan})
            row.update(cpu_s=usage["cpu_s"], cpu_from="log")
            if np.isnan(row.get("max_rss_mb", np.nan)):  # no benchmark file: the largest process's peak
                row["max_rss_mb"] = usage["max_rss_mb"]
    out = []
    for (rule, pid, scen), row in rows.items():
        if "cpu_s" not in row:
            row.update(cpu_s=row["bench_cpu_s"], cpu_from="benchmark")
        out.append({"rule": rule, "patient_id": pid, "scenario": scen, **row})
    return pd.DataFrame(out, columns=["rule", "patient_id", "scenario", "s", "cpu_s", "cpu_from", "bench_cpu_s",
                                      "max_rss_mb"])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--cores-per-node", type=int, default=16)
    ap.add_argument(
        "--paper-factors",
        default=",".join(f"{k}={v}" for k, v in PAPER_FACTORS.items()),
        help="RULE=FACTOR,…: CPU time on the 3 mm grid of config/paper.yaml over this run's",
    )
    a = ap.parse_args()
    b = read_benchmarks(a.results)
    if b.empty:
        raise SystemExit(f"no benchmark files or job logs under {a.results}")
    per_rule = b.groupby("rule").agg(
        jobs=("cpu_s", "size"),
        total_min=("s", lambda s: s.sum() / 60),
        cpu_min=("cpu_s", lambda s: s.sum() / 60),
        median_s=("s", "median"),
        max_s=("s", "max"),
        peak_rss_gb=("max_rss_mb", lambda m: m.max() / 1024),
    )
    per_rule = per_rule.sort_values("total_min", ascending=False)
    pd.set_option("display.width", 200)
    print("== per rule (wall time of each job as measured) ==")
    print(per_rule.round(2).to_string())
    total_cpu_h = b["cpu_s"].sum() / 3600
    print(
        f"\ntotal CPU time of the jobs: {total_cpu_h:.2f} h (wall time of the benchmarked jobs summed: "
        f"{b['s'].sum() / 3600:.2f} h)"
    )
    print_cpu_sources(b)

    chain = b[b["rule"].isin(PER_PATIENT_CHAIN)].pivot_table(index="patient_id", columns="rule", values="s")
    scen = b[b["rule"] == "scenario_dose"].groupby("patient_id")["s"].agg(["sum", "max", "size"])
    summary = a.results / "cohort" / "ingest_summary.tsv"
    if summary.exists():
        ing = pd.read_csv(summary, sep="\t", dtype={"patient_id": str}).set_index("patient_id")
        gtv_col = next((c for c in ing.columns if c.lower().startswith("gtv") and "cc" in c.lower()), None)
        if gtv_col:
            chain["gtv_cc"] = ing[gtv_col]
    print("\n== per patient (s) ==")
    if not scen.empty:
        chain["scenario_dose_sum"] = scen["sum"]
    print(chain.round(1).to_string())
    if "gtv_cc" in chain and "plan" in chain:
        planned = chain.dropna(subset=["plan"])
        if len(planned) > 2:
            k = np.polyfit(planned["gtv_cc"], planned["plan"] + planned.get("dose_influence", 0), 1)
            print(
                f"\ninfluence + plan time ≈ {k[1]:.0f} s + {k[0]:.2f} s per cm³ of GTV "
                f"(linear fit over {len(planned)} planned patients)"
            )

    # A lower bound, like the CPU bound: each job of the chain needs at least its CPU time (single-threaded
    # jobs); wall times on a busy machine include waiting for the other jobs' cores.
    cpu_chain = b[b["rule"].isin(PER_PATIENT_CHAIN)].pivot_table(index="patient_id", columns="rule", values="cpu_s")
    crit = cpu_chain.sum(axis=1)
    rec = recalculated(b, a.results)
    if not rec.empty:
        crit = crit.add(rec["longest_cpu_s"], fill_value=0)
    crit_h = float(crit.max()) / 3600 if len(crit) else 0.0
    est = max(total_cpu_h / a.cores, crit_h)
    print(
        f"\nthis run on {a.cores} cores: ≥ {est:.2f} h (CPU {total_cpu_h:.2f} h / {a.cores} cores; longest "
        f"per-patient chain {crit_h:.2f} h)"
    )

    paper_estimate(b, rec, a)


def print_cpu_sources(b: pd.DataFrame) -> None:
    """Say where the CPU times came from, and how far short the benchmark files' samples fall."""
    from_log = b["cpu_from"] == "log"
    both = from_log & b["bench_cpu_s"].notna()
    print(
        f"CPU time from the jobs' logs (usage line) for {int(from_log.sum())} jobs, from benchmark files alone "
        f"for {int((~from_log).sum())} (logs written before the usage line, or killed jobs)"
    )
    if both.any():
        short = b.loc[both, "cpu_s"] - b.loc[both, "bench_cpu_s"]
        print(
            f"on the {int(both.sum())} jobs with both: the benchmark files record "
            f"{b.loc[both, 'bench_cpu_s'].sum() / 60:.1f} of {b.loc[both, 'cpu_s'].sum() / 60:.1f} CPU min "
            f"(at most {short.max():.1f} s short per job: they sample every 30 s; the logs miss the interpreter's "
            f"exit, up to {max(-short.min(), 0.0):.1f} s here)"
        )


def recalculated(b: pd.DataFrame, results: Path) -> pd.DataFrame:
    """Per patient, its recalculated scenarios: CPU s (summed), how many, how many with a setup shift, and
    the CPU s of its longest scenario job. One job per scenario (``robustness.scenario_jobs: scenario``)
    names its scenario; a patient's job (``patient``) made the files of ``patients/{pid}/robustness/scenarios``
    (its nominal scenario, a copy of the plans' doses, is counted in its CPU time).
    """
    rows = []
    for pid, g in b[b["rule"] == "scenario_dose"].groupby("patient_id"):
        if g["scenario"].notna().all():
            g = g[~g["scenario"].map(lambda n: Scenario.from_name(n).nominal)]
            names, cpu, longest = list(g["scenario"]), g["cpu_s"].sum(), g["cpu_s"].max()
        else:
            folder = results / "patients" / pid / "robustness" / "scenarios"
            names = [p.stem for p in sorted(folder.glob("*.npz")) if not Scenario.from_name(p.stem).nominal]
            cpu = longest = g["cpu_s"].sum()
        if names:
            n_setup = sum(Scenario.from_name(n).shifted for n in names)
            rows.append(
                {"patient_id": pid, "cpu_s": cpu, "n": len(names), "n_setup": n_setup, "longest_cpu_s": longest}
            )
    return pd.DataFrame(rows, columns=["patient_id", "cpu_s", "n", "n_setup", "longest_cpu_s"]).set_index("patient_id")


def paper_estimate(b: pd.DataFrame, rec: pd.DataFrame, a: argparse.Namespace) -> None:
    """Print the estimate for ``config/paper.yaml`` from a default run's jobs (none for a run that
    recalculated its setup scenarios: it measured what the estimate would guess). ``rec``: :func:`recalculated`."""
    if rec.empty:
        return
    per_rec = rec["cpu_s"] / rec["n"]
    if rec["n_setup"].sum():
        print(
            f"config/paper.yaml: this run recalculated {int(rec['n_setup'].sum())} setup scenarios "
            f"({per_rec.mean():.0f} CPU s per recalculated scenario on average): measured above, not estimated"
        )
        return
    factors = {k: float(v) for k, v in (kv.split("=") for kv in a.paper_factors.split(",") if kv)}
    scaled = b["cpu_s"] * b["rule"].map(factors).fillna(1.0)
    per_rec = per_rec * factors.get("scenario_dose", 1.0)
    n_setup = 18  # 6 shifts × 3 ranges recalculated instead of moved
    extra_h = float((per_rec * n_setup).sum()) / 3600
    paper_cpu = float(scaled.sum()) / 3600 + extra_h
    # On a cluster (robustness.scenario_jobs: scenario) the scenarios of a patient run side by side: its
    # chain is synthesis … plan and one scenario.
    chain3 = (
        b[b["rule"].isin(PER_PATIENT_CHAIN)]
        .assign(c=scaled)
        .groupby("patient_id")["c"]
        .sum()
        .add(per_rec, fill_value=0.0)
    )
    crit3 = float(chain3.max()) / 3600
    cluster_cores = a.nodes * a.cores_per_node
    print(
        f"config/paper.yaml (planning CPU × {factors} for the 3 mm grid): + {n_setup} recalculated "
        f"setup scenarios per held-out patient ({per_rec.mean():.0f} CPU s each on average) = "
        f"+ {extra_h:.2f} CPU h; total {paper_cpu:.2f} CPU h: ≥ {paper_cpu / a.cores:.1f} h on {a.cores} "
        f"cores, ≥ {max(paper_cpu / cluster_cores, crit3):.2f} h on {a.nodes} nodes × {a.cores_per_node} "
        f"cores with one job per scenario (the longest per-patient chain, its scenarios in parallel: {crit3:.2f} h)"
    )


if __name__ == "__main__":
    main()
