"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dosepaint import cohort, layout


def ingest_params(config_schema, pid="SYN001", **over):
    cfg = cohort.validate_config({"cohort": {"source": "synthetic"}}, config_schema)["ingest"]
    keys = [
        "required_modalities",
        "required_structures",
        "structure_aliases",
        "dose_grid_mm",
        "dose_grid_margin_mm",
        "slice_spacing_tolerance_mm",
        "default_pgse_delta_ms",
        "default_pgse_Delta_ms",
        "registration",
    ]
    return {"patient_id": pid, **{k: cfg[k] for k in keys}, **over}


def generate_tiny(dicom: Path, truth: Path, *, pid: str = "SYN001", index: int = 0) -> dict:
    """One patient of the tests' tiny synthetic cohort (seed 1729, 4 patients, α 0.087 Gy⁻¹, α/β 2 Gy,
    f_c 0.01); returns its truth record."""
    from dosepaint.synthetic.generate import generate_patient

    return generate_patient(dicom, truth, patient_id=pid, index=index, preset="tiny", seed=1729, n_patients=4,
                            alpha=0.087, alpha_beta=2.0, clonogenic_fraction=0.01)  # fmt: skip


def outputs_in(folder: Path) -> dict:
    return {k: str(folder / v) for k, v in layout.all_ingest_outputs().items()}


def checksums(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def dicompyler_dvh_check(results: Path, pid: str, plan: str = "uniform", structure: str = "CTV_HD") -> dict:
    """Our DVH metrics of ``plan`` vs dicompyler-core's DVH of the exported RTDOSE with the patient's
    own RTSTRUCT (the ROI that ingest mapped to ``structure``): relative differences of Dmean, D50, D95."""
    import pandas as pd
    import pydicom
    import pydicom.dicomio

    pydicom.dicomio.read_file = pydicom.dcmread  # dicompyler-core 0.5.6 still calls the pydicom 2 name
    from dicompylercore import dvhcalc

    from dosepaint.io import dicom as dcm
    from dosepaint.io import files

    qc = files.read_json(results / "patients" / pid / "ingest" / "qc.json")
    roi_name = qc["structures"]["roi_mapping"][structure]
    series, _ = dcm.scan_folder(results / "synthetic" / "dicom" / pid)
    rtss = next(Path(f) for s in series if s.kind == "RTSTRUCT" for f in s.files)
    ds = pydicom.dcmread(rtss)
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi_name)
    ref = dvhcalc.get_dvh(str(rtss), str(results / "patients" / pid / "plans" / plan / "rtdose.dcm"), number)
    ours = pd.read_csv(results / "patients" / pid / "plans" / "metrics.tsv", sep="\t").set_index("plan").loc[plan]
    return {
        "Dmean": ours[f"{structure}_Dmean"] / ref.mean - 1,
        "D50": ours[f"{structure}_D50"] / ref.D50.value - 1,
        "D95": ours[f"{structure}_D95"] / ref.D95.value - 1,
    }
