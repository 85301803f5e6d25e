"""How many L-BFGS-B iterations a DE/DR augmented-Lagrangian round needs: planned TCP and DVH points
against the iterations per round, on a finished run's patients.

    python benchmarks/planning_rounds.py RESULTS_DIR [--patients SYN003 SYN011] [--rounds 80 40 20]
                                         [--config config/config.yaml]

For each held-out patient of ``RESULTS_DIR`` (or those given) it reads what the plan stage read (dose
influence, CT and masks on the dose grid, cell density, the fitted TCP model) and optimises the uniform,
DE and DR courses as the plan stage does (``stages.plan.optimise_courses``, one thread), once per
``planning.optimisation.round_iter`` value, the uniform course with the configured ``max_iter``. It prints
per patient, plan and value the iterations, the optimisation's CPU seconds, the TCP on the GTV's
influence rows (%, the fitted model) and D95 / D2 of the targets and D2 of the OARs (Gy(RBE), on their
influence rows) and the boost's objective, then the largest differences from the first value of
``--rounds``. These are the
optimiser's doses on the influence rows, not the plan stage's forward-calculated metrics: the
comparison is between optimiser settings on the same matrices.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dosepaint import cohort, layout
from dosepaint.radiobiology import poisson_tcp
from dosepaint.stages import plan as stage

ROOT = Path(__file__).parents[1]
TARGETS = ("GTV", "CTV_HD", "CTV_LD")


def _config(path: Path) -> dict:
    schema = cohort.load_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    return cohort.validate_config(cohort.load_yaml(path), schema)["planning"]


def _inputs(results: Path, pid: str) -> dict:
    pdir = results / "patients" / pid
    ingest = layout.ingest_outputs(["CT"]) | layout.INGEST_FOLDERS
    return {
        "tcp_model": results / "cohort" / "tcp_fit.json",
        "ct_dose": pdir / "ingest" / ingest["ct_dose"],
        "masks_dose": pdir / "ingest" / ingest["masks_dose"],
        "influence": pdir / "plans" / "influence.npz",
        "cell_density": pdir / "dwi" / layout.DWI_OUTPUTS["cell_density_dose"],
    }


def _course_rows(pt, name: str, course, *, oars, n_fx: int) -> dict:
    a = float(pt.tcp["alpha"])
    tcp = poisson_tcp(
        pt.n_gtv, course.dose[pt.rows["GTV"]], alpha=a, beta=a / float(pt.tcp["alpha_beta"]), n_fractions=n_fx
    )
    row = {"plan": name, "tcp_pct": 100 * tcp}
    for s, rr in pt.rows.items():
        if rr.size and s in TARGETS:
            row[f"{s}_D95"], row[f"{s}_D2"] = np.percentile(course.dose[rr], [5, 98])
        elif rr.size and s in oars:
            row[f"{s}_D2"] = float(np.percentile(course.dose[rr], 98))
    its = [r.iterations for k, r in course.results.items() if name == "uniform" or k == "phase2"]
    row["iterations"] = sum(its)
    row["objective"] = course.results["phase2"].objective  # the boost's (uniform: its second phase)
    return row


def _patient(results: Path, pid: str, pc: dict, rounds: list) -> list:
    params = {"patient_id": pid, "threads": 1} | {
        k: pc[k]
        for k in ("tcp", "oar_limits_gy", "ring_mm", "body_step", "constant_rbe", "de_mean_fraction",
                  "dr_mean_fraction", "prescription_gy", "n_ld", "n_hd", "optimisation")
    }  # fmt: skip
    out = []
    with threadpool_limits(limits=1):
        pt = stage.load_patient(_inputs(results, pid), params)
        for k in rounds:
            p = stage.course_params(params, pt.tcp) | {"round_iter": int(k)}
            c0 = time.process_time()
            courses, _, _ = stage.optimise_courses(pt, params=params, p=p)
            cpu = time.process_time() - c0
            for name, course in courses.items():
                row = _course_rows(pt, name, course, oars=pc["oar_limits_gy"], n_fx=pc["n_ld"] + pc["n_hd"])
                out.append({"patient_id": pid, "round_iter": int(k), "cpu_s": cpu} | row)
            print(pd.DataFrame(out[-3:]).round(3).to_string(index=False), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--patients", nargs="*")
    ap.add_argument("--rounds", nargs="+", type=int, default=[80, 40, 20])
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    a = ap.parse_args()
    pc = _config(a.config)
    split = pd.read_csv(a.results / "cohort" / "split.tsv", sep="\t")
    pids = a.patients or sorted(split.loc[split["split"] == "test", "patient_id"])
    table = pd.DataFrame([r for pid in pids for r in _patient(a.results, pid, pc, a.rounds)])
    ref = table[table["round_iter"] == a.rounds[0]].set_index(["patient_id", "plan"])
    metrics = [c for c in table.columns if c in ("tcp_pct", "objective") or c.endswith(("_D95", "_D2"))]
    print(f"\nDifference from round_iter {a.rounds[0]} (largest decrease, largest increase), DE and DR:")
    for k in a.rounds[1:]:
        cur = table[table["round_iter"] == k].set_index(["patient_id", "plan"])
        diff = (cur[metrics] - ref[metrics]).drop(index="uniform", level="plan")
        cpu = (cur["cpu_s"] / ref["cpu_s"]).groupby(level="patient_id").first()
        print(f"round_iter {k}: optimisation CPU × {cpu.min():.2f}–{cpu.max():.2f} of round_iter {a.rounds[0]}")
        print(pd.DataFrame({"min": diff.min(), "max": diff.max()}).round(3).T.to_string())


if __name__ == "__main__":
    main()
