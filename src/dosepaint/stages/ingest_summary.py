"""Cohort table of the per-patient ingest QC records."""

from __future__ import annotations

import pandas as pd

from ..io import files


def run(inputs: dict, outputs: dict, *, params: dict | None = None) -> pd.DataFrame:
    rows = []
    for path in inputs["qc"]:
        qc = files.read_json(path)
        vol = qc["structures"]["volumes_cc"]
        row = {
            "patient_id": qc["patient_id"],
            "series": len(qc["series"]),
            "skipped_files": qc["skipped_non_dicom_files"],
            "ct_spacing_mm": "x".join(f"{s:g}" for s in qc["ct"]["spacing_mm"]),
            "patient_position": qc["ct"]["patient_position"],
            **{f"{k}_cc": vol.get(k) for k in ("GTV", "CTV_HD", "CTV_LD", "BODY")},
            "structures_absent": ",".join(qc["structures"]["absent"]),
            "oars_unconstrained": ",".join(qc["structures"].get("missing_oars", [])),
            "unmapped_rois": "; ".join(
                f"{roi} (maybe {qc['structures'].get('alias_suggestions', {})[roi]})"
                if roi in qc["structures"].get("alias_suggestions", {})
                else roi
                for roi in qc["structures"]["unmapped_rois"]
            ),
            "t2w_mi": qc.get("t2w", {}).get("registration", {}).get("metric_mattes_mi"),
            "dwi_mi": qc.get("dwi", {}).get("registration_to_t2w", {}).get("metric_mattes_mi"),
            "dwi_bvalues": ",".join(f"{b:g}" for b in qc.get("dwi", {}).get("bvalues", [])),
            "rtdose_type": qc.get("rtdose", {}).get("DoseType"),
        }
        # timings stay in qc.json and the benchmark files: the table reproduces byte for byte
        rows.append(row)
    df = pd.DataFrame(rows)
    files.write_tsv(df, outputs["summary"])
    return df
