"""CPU time of three per-patient stages with and without a speed-up that leaves their numbers unchanged,
on a finished run's patients.

    python benchmarks/stage_speedups.py RESULTS_DIR [--patients SYN003 SYN008] [--repeat 2] [--stages synthesis …]
                                        [--config config/config.yaml] [--out WORKDIR]

- ``dwi``: the DWI stage (``stages.dwi.run``) with the likelihood's log-I0 correction by SciPy's ``i0e``
  everywhere (``dwi_posterior.SERIES_FROM`` = ∞, as before the series) against the asymptotic series
  from 15 on (the default). Prints whether the cell density, its interval, the clonogens and the QC row
  are the same to the bit, and how many voxels of the other maps differ and by how much (relative).
- ``influence``: the dose influence (``stages.plan.run_influence``) without and with pyRadPlan's beamlets
  printing as their class name (``planning.beamlet_repr``). Prints whether every array is the same.
- ``synthesis``: one synthetic patient (``stages.synthesize.run``, the config's ``synthetic`` section)
  with the structure set's ContourData set as a list (pydicom makes and validates a DS value of each
  number, as before) against its bytes encoded by ``io.dicom_write`` (the default). Prints whether every
  file written (DICOM, truth) is the same to the byte. ``RESULTS_DIR`` is not read.

Each variant runs in a fresh interpreter (as a Snakemake job would), alternating, ``--repeat`` times;
CPU seconds are the child's ``getrusage`` (user + system). Outputs go to ``WORKDIR`` (a temporary
folder by default); ``RESULTS_DIR`` is only read. Run it alone on the machine: CPU time depends on the load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
VARIANTS = {"dwi": ("i0e", "series"), "influence": ("plain", "short_reprs"), "synthesis": ("pydicom_ds", "raw_ds")}


def _config(path: Path) -> dict:
    from dosepaint import cohort

    schema = cohort.load_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    return cohort.validate_config(cohort.load_yaml(path), schema)


def _ingested(results: Path, pid: str, keys) -> dict:
    """The patient's ingest outputs ``keys`` (the rules' input names) as paths."""
    from dosepaint import layout

    names = layout.all_ingest_outputs()
    return {k: str(results / "patients" / pid / "ingest" / names[k]) for k in keys}


def _dwi_job(results: Path, pid: str, cfg: dict, out: Path) -> tuple:
    from dosepaint import layout
    from dosepaint.io import files

    inputs = _ingested(results, pid, ("dwi", "dwi_json", "t2w_to_ct", "dwi_to_t2w", "ct_dose", "masks_dose"))
    meta = files.read_json(inputs["dwi_json"])
    key = layout.protocol_key(meta["bvalues_s_per_mm2"], delta_ms=meta["pgse_delta_ms"], Delta_ms=meta["pgse_Delta_ms"])
    inputs["library"] = str(results / "libraries" / f"dwi_{key}.npz")
    outputs = {k: str(out / v) for k, v in layout.DWI_OUTPUTS.items()}
    keys = ("b_min", "min_points", "adc_weighting", "adc_max", "method", "prior_update", "point_estimate",
            "credible_level", "noise", "min_ess", "partial_volume_threshold", "adc_sigma", "knn_k",
            "clonogenic_fraction", "max_flagged_fraction_gtv")  # fmt: skip
    params = {k: cfg["dwi"][k] for k in keys} | {"patient_id": pid, "on_input_error": "stop"}
    return inputs, outputs, params


def _influence_job(results: Path, pid: str, cfg: dict, out: Path) -> tuple:
    pl = cfg["planning"]
    params = {"patient_id": pid, "engine": pl["engine"], "oars": list(pl["oar_limits_gy"]), "ring_mm": pl["ring_mm"],
              "body_step": pl["body_step"]}  # fmt: skip
    return _ingested(results, pid, ("ct_dose", "masks_dose")), {"influence": str(out / "influence.npz")}, params


def _synthesis_job(results: Path, pid: str, cfg: dict, out: Path) -> tuple:
    from dosepaint import cohort
    from dosepaint.synthetic.presets import PRESETS

    syn = cfg["synthetic"]
    n = syn["n_patients"] or PRESETS[syn["preset"]].n_patients
    pids = cohort.synthetic_patient_ids(prefix=syn["id_prefix"], n_patients=n)
    params = {"patient_id": pid, "index": pids.index(pid), "preset": syn["preset"], "n_patients": n,
              **cohort.synthetic_truth(syn)}  # fmt: skip
    return {}, {"dicom": str(out / "dicom"), "truth": str(out / "truth"), "row": str(out / "row.tsv")}, params


def _contour_item_as_list(pts, ct_refs, *, positions, normal):
    """``io.dicom_write._contour_item`` before its raw encoding: ContourData set as a list of strings."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from dosepaint.io.dicom_write import CT_IMAGE, referenced

    c = Dataset()
    c.ContourGeometricType = "CLOSED_PLANAR"
    c.NumberOfContourPoints = len(pts)
    with pydicom.config.disable_value_validation():
        c.ContourData = [f"{v:.3f}" for v in np.asarray(pts, float).ravel()]
    plane = float(np.dot(np.asarray(pts, float)[0], normal))
    c.ContourImageSequence = Sequence([referenced(CT_IMAGE, ct_refs[int(np.argmin(np.abs(positions - plane)))][0])])
    return c


JOBS = {"dwi": _dwi_job, "influence": _influence_job, "synthesis": _synthesis_job}


def one(stage: str, variant: str, results: Path, pid: str, config: Path, out: Path) -> None:
    """Run one stage once in this interpreter with ``variant`` in place."""
    import contextlib

    from dosepaint import dwi_posterior
    from dosepaint.io import dicom_write
    from dosepaint.planning import engine
    from dosepaint.stages import dwi, plan, synthesize

    cfg = _config(config)
    out.mkdir(parents=True, exist_ok=True)
    if variant == "i0e":
        dwi_posterior.SERIES_FROM = np.inf
    if variant == "plain":
        engine.short_beamlet_reprs = contextlib.nullcontext
    if variant == "pydicom_ds":
        dicom_write._contour_item = _contour_item_as_list
    inputs, outputs, params = JOBS[stage](results, pid, cfg, out)
    run = {"dwi": dwi.run, "influence": plan.run_influence, "synthesis": synthesize.run}[stage]
    run(inputs, outputs, params=params)


def _timed(args, stage: str, variant: str, pid: str, out: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, __file__, str(args.results), "--one", stage, variant, pid, "--out", str(out),
           "--config", str(args.config)]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _compare_dwi(a: Path, b: Path) -> str:
    from dosepaint import layout
    from dosepaint.io import files

    same = ("cell_density", "cell_density_lo", "cell_density_hi", "clonogens", "cell_density_dose")
    words = []
    for key, rel in layout.DWI_OUTPUTS.items():
        if not rel.endswith(".nii.gz"):
            continue
        x, y = files.read_array(a / rel)[0], files.read_array(b / rel)[0]
        differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        if key in same and differ.any():
            words.append(f"{key} DIFFERS in {int(differ.sum())} voxels")
        elif differ.any():
            rel_err = np.nanmax(np.abs(y[differ] / np.where(x[differ] == 0, 1, x[differ]) - 1))
            words.append(f"{key}: {int(differ.sum())} voxels, ≤ {rel_err:.1e}")
    qc_same = (a / layout.DWI_OUTPUTS["qc"]).read_bytes() == (b / layout.DWI_OUTPUTS["qc"]).read_bytes()
    head = "cell density, interval, clonogens the same to the bit" if not any("DIFFERS" in w for w in words) else ""
    return "; ".join([head, f"QC row {'the same' if qc_same else 'DIFFERS'}", *words]).strip("; ")


def _compare_influence(a: Path, b: Path) -> str:
    with np.load(a / "influence.npz") as x, np.load(b / "influence.npz") as y:
        keys = [k for k in x.files if k != "meta"]
        differ = [k for k in keys if not np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f")]
    return f"every array the same ({len(keys)})" if not differ else f"DIFFER: {', '.join(differ)}"


def _compare_files(a: Path, b: Path) -> str:
    """Whether every file under ``a`` and ``b`` (the same relative paths) is the same to the byte."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return "DIFFER: not the same files"
    differ = [str(r) for r in files_a if (a / r).read_bytes() != (b / r).read_bytes()]
    return f"every file the same to the byte ({len(files_a)})" if not differ else f"DIFFER: {', '.join(differ[:5])}"


COMPARE = {"dwi": _compare_dwi, "influence": _compare_influence, "synthesis": _compare_files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--patients", nargs="+", default=["SYN003", "SYN008"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stages", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--one", nargs=3, metavar=("STAGE", "VARIANT", "PID"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(*args.one[:2], args.results, args.one[2], args.config, args.out)
    work = args.out or Path(tempfile.mkdtemp(prefix="stage_speedups_"))
    print(f"outputs in {work}")
    for stage in args.stages:
        before, after = VARIANTS[stage]
        for pid in args.patients:
            cpu: dict = {before: [], after: []}
            for _ in range(args.repeat):
                for v in (before, after):
                    cpu[v].append(_timed(args, stage, v, pid, work / stage / pid / v))
            a, b = (work / stage / pid / v for v in (before, after))
            same = COMPARE[stage](a, b)
            m0, m1 = np.mean(cpu[before]), np.mean(cpu[after])
            print(json.dumps({"stage": stage, "patient": pid, before: [round(c, 1) for c in cpu[before]],
                              after: [round(c, 1) for c in cpu[after]], "ratio": round(m1 / m0, 3)}))  # fmt: skip
            print(f"  {stage} {pid}: {m0:.1f} → {m1:.1f} CPU s (× {m1 / m0:.2f}); {same}")


if __name__ == "__main__":
    main()
