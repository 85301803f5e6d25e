"""The results layout that other stages and users rely on.

``results/patients/{pid}/ingest/…``, ``…/dwi/…``, ``…/pet/…``,
``…/plans/{strategy}/…``, ``…/robustness/…``, ``results/cohort/…``,
``results/report.html``.
"""

from __future__ import annotations

# Modality -> ingest outputs that exist only when that modality is ingested.
_INGEST_BY_MODALITY = {
    "T2W": {"t2w": "t2w.nii.gz", "t2w_to_ct": "t2w_to_ct.tfm"},
    "DWI": {
        "dwi": "dwi.nii.gz",
        "dwi_json": "dwi.json",
        "dwi_to_t2w": "dwi_to_t2w.tfm",
        "dwi_dose": "dwi_dose.nii.gz",
        "dwi_b0_ct": "dwi_b0_ct.nii.gz",
    },
    "PT": {"pet": "pet.nii.gz", "pet_ct": "pet_ct.nii.gz", "pet_dose": "pet_dose.nii.gz", "pet_json": "pet.json"},
    "RTDOSE": {"rtdose": "rtdose.nii.gz"},
}
_INGEST_ALWAYS = {"ct": "ct.nii.gz", "ct_dose": "ct_dose.nii.gz", "qc": "qc.json"}
INGEST_FOLDERS = {"masks_ct": "masks_ct", "masks_dose": "masks_dose"}


def ingest_outputs(required_modalities) -> dict[str, str]:
    """File outputs of the ingest stage, relative to ``patients/{pid}/ingest``.

    Outputs of optional modalities are produced when the series exists but
    are only declared (and so only guaranteed) for required modalities.
    """
    out = dict(_INGEST_ALWAYS)
    for modality in required_modalities:
        out.update(_INGEST_BY_MODALITY.get(modality, {}))
    return out


def all_ingest_outputs() -> dict[str, str]:
    """Every ingest output name, whether or not its modality is required."""
    return ingest_outputs(_INGEST_BY_MODALITY) | INGEST_FOLDERS


DWI_OUTPUTS = {
    "adc": "adc.nii.gz",
    "s0": "s0.nii.gz",
    "flags": "flags.nii.gz",
    "cell_radius": "cell_radius.nii.gz",
    "vf": "vf.nii.gz",
    "cell_density": "cell_density.nii.gz",
    "rmse": "rmse.nii.gz",
    "cell_density_lo": "cell_density_lo.nii.gz",
    "cell_density_hi": "cell_density_hi.nii.gz",
    "sd_log_cell_density": "sd_log_cell_density.nii.gz",
    "cell_density_dose": "cell_density_dose.nii.gz",
    "cell_density_lo_dose": "cell_density_lo_dose.nii.gz",
    "cell_density_hi_dose": "cell_density_hi_dose.nii.gz",
    "rmse_dose": "rmse_dose.nii.gz",
    "clonogens": "clonogens.nii.gz",
    "qc": "qc.tsv",
}
"""Outputs of the DWI stage, relative to ``patients/{pid}/dwi``."""


PET_OUTPUTS = {
    "suv": "suv.nii.gz",
    "suv_dose": "suv_dose.nii.gz",
    "metrics": "metrics.tsv",
    "btv_dose": "btv_dose.nii.gz",
    "prescription_contours": "prescription_contours.nii.gz",
    "prescription_numbers": "prescription_numbers.nii.gz",
    "qc": "qc.json",
}
"""File outputs of the PET stage, relative to ``patients/{pid}/pet``; plus the folder ``masks/``."""


PLAN_NAMES = ("uniform", "de", "dr")
PLAN_OUTPUTS = {"metrics": "metrics.tsv", "qc": "qc.json"} | {
    f"{plan}_{kind}": f"{plan}/{name}"
    for plan in PLAN_NAMES
    for kind, name in (
        ("dose", "dose.nii.gz"),
        ("letd", "letd.nii.gz"),
        ("rtdose", "rtdose.dcm"),
        ("dvh", "dvh.tsv"),
        ("weights", "weights.npz"),
    )
}
"""Outputs of the plan stage, relative to ``patients/{pid}/plans``; the cached dose influence is
``plans/influence.npz``."""


ROBUSTNESS_OUTPUTS = (
    {
        "scenario_metrics": "scenario_metrics.tsv",
        "dvh_bands": "dvh_bands.tsv",
        "cell_count_tcp": "cell_count_tcp.tsv",
        "voxels": "voxels.npz",
        "qc": "qc.json",
    }
    | {f"{plan}_worst_dose": f"{plan}_worst_dose.nii.gz" for plan in PLAN_NAMES}
    | {f"{plan}_{kind}": f"{plan}_{kind}.nii.gz" for plan in ("de", "dr") for kind in ("dtcp", "dlntcp")}
)
"""Outputs of the robustness stage, relative to ``patients/{pid}/robustness``; scenario doses are
``robustness/scenarios/{scenario}.npz`` (recalculated or nominal) and
``robustness/shifted/{scenario}.npz`` (rigid-shift approximation)."""


def protocol_key(bvalues, *, delta_ms: float, Delta_ms: float) -> str:
    """Readable, invertible key of an acquisition protocol: ``b0-100-1000_d20_D40``."""

    def num(v):
        return f"{float(v):g}".replace(".", "p")

    return "b" + "-".join(num(b) for b in sorted(bvalues)) + f"_d{num(delta_ms)}_D{num(Delta_ms)}"


def check_library_key(check: dict, *, path) -> str | None:
    """The DWI library key of an input-check record (``input_check.json``, :mod:`dosepaint.stages.check`).

    None where the check excluded the patient or found no DWI. Raises ValueError, naming ``path``, for
    a record written before the check recorded the DWI protocol (``--rerun-triggers mtime`` keeps such
    records; rerun the check).
    """
    if check.get("status") != "included":
        return None
    if "dwi_protocol" not in check:
        raise ValueError(
            f"{path} was written before the input check recorded the DWI protocol: rerun the input check "
            "(snakemake --forcerun check_inputs)"
        )
    protocol = check["dwi_protocol"]
    if protocol is None:
        return None
    return protocol_key(
        protocol["bvalues_s_per_mm2"], delta_ms=protocol["pgse_delta_ms"], Delta_ms=protocol["pgse_Delta_ms"]
    )
