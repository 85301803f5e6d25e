"""T2w → CT registration on the synthetic cohort: target registration error (TRE) per start and QC.

    python benchmarks/registration_tre.py WORKDIR [--preset default] [--patients N] [--slab 0.4]
                                          [--config config/config.yaml]

Generates the preset's patients into ``WORKDIR/dicom`` (kept between runs; the seed and the true
radiobiology of the config's ``synthetic`` section), reads each export as the
ingest does and registers its T2w onto the planning CT as the former version did (``moments``: body
centroid onto body centroid, the CT always the fixed image) and with the defaults (``auto``: the
multi-start, a slab registered the other way round); with ``--slab F`` the T2w is
first cut to a slab covering F of the CT's cranio-caudal extent, off the centre (a partial field of
view). It prints per patient the TRE over the true GTV (mean, mm, against the generator's true
misalignment), the final Mattes MI, the time, and the QC measures of the ``auto`` result
(:mod:`dosepaint.registration_qc`, with a second run from a 5 mm / 2° perturbed start), then the worst
and median TRE per start. Timings are single-threaded (ITK threads = 1) on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dosepaint import cohort
from dosepaint.io import dicom as dcm
from dosepaint.io import files
from dosepaint.registration import register_rigid, rigid_error
from dosepaint.registration_qc import perturbed, registration_qc
from dosepaint.stages.ingest import discover
from dosepaint.synthetic.generate import PRESETS, generate_patient

ROOT = Path(__file__).parents[1]


def load(folder: Path, pid: str):
    chosen, _, _ = discover(folder, patient=pid, required_modalities=["CT", "T2W"])
    ct, grid, _ = dcm.read_volume(chosen["CT"].files, patient=pid)
    t2, t2_grid, _ = dcm.read_volume(chosen["T2W"].files, patient=pid)
    return grid.image(ct), t2_grid.image(t2)


def slab_of(ct, t2, fraction: float):
    """The T2w cut to ``fraction`` of the CT's z-extent, centred 55 % of the way up the T2w."""
    n = max(2, int(round(fraction * ct.GetSize()[2] * ct.GetSpacing()[2] / t2.GetSpacing()[2])))
    k0 = max(0, int(0.55 * t2.GetSize()[2]) - n // 2)
    return t2[:, :, k0 : k0 + n]


def tre_mm(truth: Path, estimated) -> float:
    gtv, grid = files.read_array(truth / "masks" / "GTV.nii.gz")
    pts = np.stack([c[gtv > 0] for c in grid.world()], axis=1)[::20]
    return rigid_error(estimated, files.read_transform(truth / "mr_to_ct.tfm").GetInverse(), pts)["mean_mm"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--slab", type=float, default=None)
    ap.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    args = ap.parse_args()
    schema = cohort.load_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    syn = cohort.validate_config(cohort.load_yaml(args.config), schema)["synthetic"]
    preset = PRESETS[args.preset]
    n = args.patients or preset.n_patients
    rows = []
    for i in range(n):
        pid = f"SYN{i + 1:03d}"
        dicom, truth = args.workdir / "dicom" / pid, args.workdir / "truth" / pid
        if not (truth / "truth.json").exists():
            generate_patient(
                dicom,
                truth,
                patient_id=pid,
                index=i,
                preset=args.preset,
                n_patients=preset.n_patients,
                **cohort.synthetic_truth(syn),
            )
        ct, t2 = load(dicom, pid)
        if args.slab:
            t2 = slab_of(ct, t2, args.slab)
        row = {"patient_id": pid}
        for start in ("moments", "auto"):
            t = time.perf_counter()
            former = {"swap_below": 0.0} if start == "moments" else {}
            try:
                r = register_rigid(ct, t2, fixed_threshold=-400.0, initial=start, **former)
            except RuntimeError as exc:  # the former version could fail outright on a slab
                print(f"{pid} {start}: {str(exc).splitlines()[-1]}", flush=True)
                row.update({f"{start}_s": float("nan"), f"{start}_tre_mm": float("inf"), f"{start}_mi": float("nan")})
                continue
            row[f"{start}_s"] = time.perf_counter() - t
            row[f"{start}_tre_mm"] = tre_mm(truth, r.transform)
            row[f"{start}_mi"] = r.metric
        second = register_rigid(
            ct, t2, fixed_threshold=-400.0, initial=perturbed(r.transform, shift_mm=5.0, angle_deg=2.0)
        )
        row.update(
            registration_qc(ct, t2, r.transform, fixed_threshold=-400.0, moving_threshold=None, second=second.transform)
        )
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    df = pd.DataFrame(rows)
    for start in ("moments", "auto"):
        tre = df[f"{start}_tre_mm"]
        print(
            f"{start}: TRE median {tre.median():.2f} mm, worst {tre.max():.2f} mm "
            f"({df.loc[tre.idxmax(), 'patient_id']}), time median {df[f'{start}_s'].median():.1f} s"
        )
    print(
        f"QC of auto: body Dice min {df['body_dice'].min():.3f}, inside min {df['inside_fraction'].min():.3f}, "
        f"TRE proxy max {df['tre_proxy_mm'].max():.2f} mm, MI max {df['auto_mi'].max():.3f}"
    )
    df.to_csv(args.workdir / f"registration_tre{'_slab' if args.slab else ''}.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
