"""Each step of the DWI image chain against the truth of whole synthetic images.

Usage: python benchmarks/dwi_image_chain.py RESULTS_DIR [--config FILE]

For every synthetic patient of RESULTS_DIR whose ingest is done (e.g. ``config/foreign.yaml`` after
``snakemake ... dwi_all``), the DWI stage is rerun in a temporary folder with one setting changed at a
time from the configuration (the default unless ``--config``): the study's ADC lookup, the posterior
under the broad prior alone, without the partial-volume exclusion, with the noise from the fit
residuals instead of the background, the posterior mean as the point estimate; and scored against the
truth (``dosepaint.validation.dwi_errors``): voxel Spearman and coverage in the GTV, clonogen and TCP
errors, and the Spearman of patient-mean ρ across patients.  Prints one row per variant and its time.
"""

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import spearmanr

from dosepaint import cohort, layout
from dosepaint.io import files
from dosepaint.layout import protocol_key
from dosepaint.stages import dwi as stage
from dosepaint.validation import dwi_errors

VARIANTS = {
    "default": {},
    "study ADC lookup": {"method": "adc"},
    "broad prior only": {"prior_update": "none"},
    "partial volume kept": {"partial_volume_threshold": 0.0},
    "noise from residuals": {"noise": "residuals"},
    "posterior mean": {"point_estimate": "mean"},
}


def _config(path) -> dict:
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    user = yaml.safe_load(Path(path).read_text()) if path else {}
    return cohort.validate_config({**user, "cohort": {"source": "synthetic"}}, schema)["dwi"]


def _run_patient(ingest: Path, work: Path, cfg: dict, pid: str) -> None:
    meta = files.read_json(ingest / "dwi.json")
    key = protocol_key(meta["bvalues_s_per_mm2"], delta_ms=meta["pgse_delta_ms"], Delta_ms=meta["pgse_Delta_ms"])
    lib = work / f"dwi_{key}.npz"
    if not lib.exists():
        keys = ("b_min", "adc_weighting", "method", "prior", "library_model", "monte_carlo")
        stage.run_library({}, {"library": str(lib)}, params={"protocol": key, "grid": cfg["library"],
                                                             **{k: cfg[k] for k in keys}})  # fmt: skip
    names = {"dwi": "dwi.nii.gz", "dwi_json": "dwi.json", "t2w_to_ct": "t2w_to_ct.tfm",
             "dwi_to_t2w": "dwi_to_t2w.tfm", "ct_dose": "ct_dose.nii.gz", "masks_dose": "masks_dose"}  # fmt: skip
    inputs = {k: ingest / v for k, v in names.items()}
    out = {k: str(work / pid / v) for k, v in layout.DWI_OUTPUTS.items()}
    params = {"patient_id": pid, **{k: v for k, v in cfg.items() if k not in ("library", "prior", "monte_carlo")}}
    stage.run({**inputs, "library": lib}, out, params=params)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--config")
    a = ap.parse_args()
    base = _config(a.config)
    pids = sorted(p.name for p in (a.results / "patients").iterdir() if (p / "ingest" / "dwi.json").exists())
    rows = []
    for name, change in VARIANTS.items():
        cfg = {**base, **change}
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            errs = []
            for pid in pids:
                _run_patient(a.results / "patients" / pid / "ingest", Path(tmp), cfg, pid)
                errs.append(dwi_errors(a.results / "patients" / pid / "ingest", Path(tmp) / pid,
                                       a.results / "synthetic" / "truth" / pid))  # fmt: skip
            dt = time.perf_counter() - t
        df = pd.DataFrame(errs)
        rows.append({"variant": name, "voxel_spearman_median": df["spearman_rho_gtv"].median(),
                     "patient_mean_spearman": spearmanr(df["mean_rho_true"], df["mean_rho_est"])[0],
                     "coverage_90": df["coverage_90"].mean(),
                     "clonogen_error_median_abs_pct": df["clonogens_error_pct"].abs().median(),
                     "tcp_error_mean_abs_pp": df["tcp_diff_pp"].abs().mean(),
                     "tcp_error_max_abs_pp": df["tcp_diff_pp"].abs().max(),
                     "seconds_per_patient": dt / len(pids)})  # fmt: skip
        print(rows[-1], flush=True)
    span = df["mean_rho_true"].max() / df["mean_rho_true"].min()
    pd.set_option("display.width", 220)
    print(f"\n{len(pids)} patients, true patient-mean ρ spans {span:.1f}×")
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
