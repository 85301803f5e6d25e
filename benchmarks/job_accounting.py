"""A run's CPU time by Linux process accounting: Snakemake's own process, its jobs by rule, and what the
benchmark files and the jobs' usage lines recorded of the same jobs.

Process accounting (Debian package ``acct``) records every process's user + system time when it ends,
with its parent; neither Snakemake's benchmark files (sampled every 30 s after a job's first 30 s) nor
``time -v`` (one sum) split a run this way. Run as root::

    accton /var/log/account/pacct
    snakemake --workflow-profile workflow/profiles/default > run.log 2>&1
    accton off
    python benchmarks/job_accounting.py run.log /var/log/account/pacct results

Jobs are matched to the accounting records of the Snakemake process's Python children by their start
time in the Snakemake log (to the second) and, where a benchmark file exists, its wall time. Nothing is
read from the jobs' outputs.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import subprocess
from pathlib import Path

import numpy as np
from pipeline_cost import read_benchmarks  # this folder's script: each job's benchmark file and usage line

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):")


def _when(text: str) -> float:
    return dt.datetime.strptime(text, "%a %b %d %H:%M:%S %Y").timestamp()


def log_jobs(log: Path) -> list[dict]:
    """Each job the Snakemake log started: rule, patient (or None) and start time (s since the epoch).

    Job ids are not used: Snakemake reuses them after its checkpoint updates.
    """
    jobs, stamp = [], None
    for line in log.read_text(errors="replace").splitlines():
        if m := _STAMP.match(line):
            stamp = _when(m.group(1))
        elif m := _RULE.match(line):
            jobs.append({"rule": m.group(1), "pid": None, "start": stamp})
        elif line.strip().startswith("wildcards:") and jobs and "pid=" in line:
            jobs[-1]["pid"] = line.split("pid=")[1].split(",")[0].strip()
    return jobs


def accounting(pacct: Path) -> list[dict]:
    """The records of ``dump-acct``: command, CPU s, elapsed s, pid, parent pid and start time."""
    out = subprocess.run(["dump-acct", str(pacct)], capture_output=True, text=True, check=True).stdout
    recs = []
    for line in out.splitlines():
        f = [x.strip() for x in line.split("|")]
        recs.append({"comm": f[0], "cpu": (float(f[2]) + float(f[3])) / 100, "elapsed": float(f[4]) / 100,
                     "pid": int(f[9]), "ppid": int(f[10]), "start": _when(f[14])})  # fmt: skip
    return recs


def match(jobs: list[dict], children: list[dict], results: Path) -> dict:
    """Per rule: [jobs, accounting CPU s, benchmark CPU s, benchmarked jobs, log CPU s, logged jobs]."""
    recorded = {(r.rule, r.patient_id): r for r in read_benchmarks(results).itertuples() if r.scenario is None}
    per_rule = collections.defaultdict(lambda: [0, 0.0, 0.0, 0, 0.0, 0])
    free = list(children)
    for job in sorted(jobs, key=lambda j: j["start"] or 0):
        r = recorded.get((job["rule"], job["pid"]))
        wall = None if r is None or np.isnan(r.s) else r.s
        bench_cpu = None if r is None or np.isnan(r.bench_cpu_s) else r.bench_cpu_s
        log_cpu = r.cpu_s if r is not None and r.cpu_from == "log" else None
        near = [r for r in free if abs(r["start"] - job["start"]) <= 3]
        if not near:
            continue
        rec = min(near, key=lambda r: abs(r["start"] - job["start"]) + abs(r["elapsed"] - (wall or r["elapsed"])))
        free.remove(rec)
        row = per_rule[job["rule"]]
        row[0], row[1] = row[0] + 1, row[1] + rec["cpu"]
        if bench_cpu is not None:
            row[2], row[3] = row[2] + bench_cpu, row[3] + 1
        if log_cpu is not None:
            row[4], row[5] = row[4] + log_cpu, row[5] + 1
    return per_rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path, help="Snakemake's output of the run")
    ap.add_argument("pacct", type=Path, help="the accounting file (accton's)")
    ap.add_argument("results", type=Path)
    a = ap.parse_args()
    recs = accounting(a.pacct)
    snakemake = max((r for r in recs if r["comm"] == "snakemake"), key=lambda r: r["elapsed"])
    children = [r for r in recs if r["ppid"] == snakemake["pid"] and r["comm"].startswith("python")]
    others = [r for r in recs if r["ppid"] == snakemake["pid"] and not r["comm"].startswith("python")]
    print(
        f"Snakemake's own process: {snakemake['cpu']:.0f} CPU s over {snakemake['elapsed']:.0f} s; its other "
        f"children ({len(others)}, e.g. the ILP scheduler's cbc): {sum(r['cpu'] for r in others):.0f} CPU s"
    )
    jobs = log_jobs(a.log)
    per_rule = match(jobs, children, a.results)
    matched = sum(v[0] for v in per_rule.values())
    print(f"jobs in the log {len(jobs)}, matched {matched}; the jobs' processes {len(children)}, "
          f"{sum(r['cpu'] for r in children) / 60:.2f} CPU min")  # fmt: skip
    print(f"{'rule':22s} {'jobs':>5s} {'CPU min':>9s} {'benchmark':>10s} {'(jobs)':>7s} {'logs':>8s} {'(jobs)':>7s}")
    for rule, v in sorted(per_rule.items(), key=lambda kv: -kv[1][1]):
        print(f"{rule:22s} {v[0]:5d} {v[1] / 60:9.2f} {v[2] / 60:10.2f} {v[3]:7d} {v[4] / 60:8.2f} {v[5]:7d}")
    print(f"all processes accounted: {sum(r['cpu'] for r in recs) / 60:.1f} CPU min")


if __name__ == "__main__":
    main()
