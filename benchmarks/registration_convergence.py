"""The input check's registrations at two convergence values of the gradient descent: CPU time, TRE, shift.

    python benchmarks/registration_convergence.py WORKDIR [--patients 11] [--values 1e-7 1e-6]
                                                  [--config config/config.yaml]

Generates the default preset's first ``--patients`` patients (the config's ``synthetic`` seed and
truth) into ``WORKDIR/dicom`` and ``WORKDIR/truth`` (kept between runs; an existing ``WORKDIR/dicom/<id>``
is used as it is), reads each export as the input check does and runs its registrations with their QC
(T2w → CT, DWI → T2w, each with the second run from a perturbed start:
:func:`dosepaint.stages.register.register_export`) once per value of
``ingest.registration.convergence_minimum_value``, all else from ``--config``. Prints per patient and
value the CPU seconds of the registrations, the TRE of both results against the generator's truth
(mean over the true GTV, mm) and the TRE proxy; then, against the first value, the CPU ratio, whether
each transform is the same to the bit and how far it moved (mean over the GTV, mm). ITK runs on one
thread (the config's default), so the results reproduce bit for bit; run it alone on the machine for
the CPU times.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dosepaint import cohort
from dosepaint.io import files
from dosepaint.registration import rigid_error
from dosepaint.stages.ingest import read_export
from dosepaint.stages.register import register_export, transform_from
from dosepaint.synthetic.generate import PRESETS, generate_patient

ROOT = Path(__file__).parents[1]
KEYS = ("t2w_to_ct", "dwi_to_t2w")


def ingest_params(cfg: dict, pid: str) -> dict:
    ig = cfg["ingest"]
    keep = ("required_modalities", "required_structures", "structure_aliases", "slice_spacing_tolerance_mm")
    return {**{k: ig[k] for k in keep}, "planned_oars": list(cfg["planning"]["oar_limits_gy"]),
            "optional_oars": cfg["planning"]["optional_oars"], "patient_id": pid}  # fmt: skip


def truth_maps(truth: Path) -> dict:
    """The true fixed → moving maps of both registrations and the GTV points (mm) in each fixed space."""
    mr_to_ct = files.read_transform(truth / "mr_to_ct.tfm")
    gtv, grid = files.read_array(truth / "masks" / "GTV.nii.gz")
    pts_ct = np.stack([c[gtv > 0] for c in grid.world()], axis=1)[::20]
    ct_to_mr = mr_to_ct.GetInverse()
    pts_mr = np.array([ct_to_mr.TransformPoint(tuple(p)) for p in pts_ct])
    t2_to_dwi = files.read_transform(truth / "dwi_to_t2w.tfm").GetInverse()
    return {"t2w_to_ct": (ct_to_mr, pts_ct), "dwi_to_t2w": (t2_to_dwi, pts_mr)}


def run_once(ex, pid: str, reg: dict, value: float, truth: dict) -> dict:
    t = time.process_time()
    rec = register_export(ex, patient=pid, reg={**reg, "convergence_minimum_value": value})
    row = {"cpu_s": time.process_time() - t}
    for key in KEYS:
        tr = transform_from(rec[key]["transform"])
        row[key] = {"transform": tr, "tre_mm": rigid_error(tr, *truth[key])["mean_mm"],
                    "proxy_mm": rec[key]["qc"]["tre_proxy_mm"]}  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--patients", type=int, default=11)
    ap.add_argument("--values", type=float, nargs="+", default=[1e-7, 1e-6])
    ap.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    args = ap.parse_args()
    schema = cohort.load_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    cfg = cohort.validate_config(cohort.load_yaml(args.config), schema)
    syn, n_default = cfg["synthetic"], PRESETS["default"].n_patients
    ratios, moved, same = [], {k: [] for k in KEYS}, {k: 0 for k in KEYS}
    tre = {v: {k: [] for k in KEYS} for v in args.values}
    for i in range(args.patients):
        pid = f"SYN{i + 1:03d}"
        dicom, truth = args.workdir / "dicom" / pid, args.workdir / "truth" / pid
        if not (truth / "truth.json").exists():
            generate_patient(dicom, truth, patient_id=pid, index=i, preset="default", n_patients=n_default,
                             **cohort.synthetic_truth(syn))  # fmt: skip
        ex, maps = read_export(dicom, patient=pid, params=ingest_params(cfg, pid)), truth_maps(truth)
        rows = {v: run_once(ex, pid, cfg["ingest"]["registration"], v, maps) for v in args.values}
        base = rows[args.values[0]]
        for v, row in rows.items():
            text = " ".join(f"{k} TRE {row[k]['tre_mm']:.3f} proxy {row[k]['proxy_mm']:.3f}" for k in KEYS)
            print(f"{pid} {v:g}: {row['cpu_s']:.1f} CPU s, {text}", flush=True)
            for k in KEYS:
                tre[v][k].append(row[k]["tre_mm"])
        last = rows[args.values[-1]]
        ratios.append(last["cpu_s"] / base["cpu_s"])
        for k in KEYS:
            a, b = last[k]["transform"], base[k]["transform"]
            same[k] += a.GetParameters() == b.GetParameters()
            moved[k].append(rigid_error(a, b, maps[k][1])["mean_mm"])
    n, (v0, v1) = args.patients, (args.values[0], args.values[-1])
    print(f"\n{v1:g} against {v0:g} on {n} patients: CPU × {np.median(ratios):.2f} median "
          f"({min(ratios):.2f}–{max(ratios):.2f})")  # fmt: skip
    for k in KEYS:
        print(f"  {k}: {same[k]} of {n} the same to the bit, moved median {np.median(moved[k]):.3f} mm, "
              f"max {max(moved[k]):.3f} mm; TRE median {np.median(tre[v0][k]):.3f} → {np.median(tre[v1][k]):.3f} mm, "
              f"worst {max(tre[v0][k]):.3f} → {max(tre[v1][k]):.3f} mm")  # fmt: skip


if __name__ == "__main__":
    main()
