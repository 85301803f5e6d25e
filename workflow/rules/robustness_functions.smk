# Input functions and path tables of the robustness rules (robustness.smk), beside them;
# Snakemake's linter wants functions and rules in separate files.
ROB = f"{RESULTS}/patients/{{pid}}/robustness"
ROB_CFG = CFG["robustness"]
SCENARIOS = dp_rob.scenario_grid(
    ROB_CFG["setup_shifts_mm"], ROB_CFG["range_errors_pct"]
)
ROBUSTNESS_FILES = {
    name: f"{ROB}/{rel}" for name, rel in dp_layout.ROBUSTNESS_OUTPUTS.items()
}


SHIFTED = [
    s
    for s in SCENARIOS
    if dp_rob.scenario_folder(s, setup_method=ROB_CFG["setup_method"]) == "shifted"
]
"""Setup scenarios made by the rigid-shift approximation (none with ``setup_method: recalculate``)."""
# The scenarios made by scenario_dose jobs (the nominal, which copies the plans' doses, and those recalculated).
DOSE_SCENARIOS = [s for s in SCENARIOS if s not in SHIFTED]
SCENARIO_INPUTS = {
    **{
        k: v
        for k, v in PLAN_FILES.items()
        if k.endswith("_weights") or k.endswith("_dose")
    },
    "ct_dose": INGEST_FILES["ct_dose"],
    "masks_dose": MASKS_DOSE,
    "influence": PLAN_INFLUENCE,
    "upstream": status("plan"),
}
SCENARIO_PARAMS = dict(
    patient_id=lambda wc: wc.pid,
    setup_shifts_mm=ROB_CFG["setup_shifts_mm"],
    setup_method=ROB_CFG["setup_method"],
    oar_limits_gy=CFG["planning"]["oar_limits_gy"],
    constant_rbe=CFG["planning"]["constant_rbe"],
    on_input_error=ON_ERROR,
)


def scenario_dose_statuses(pid, names):
    """The status records of the scenario_dose jobs that make the scenarios ``names`` of a patient:
    one per patient (``robustness.scenario_jobs: patient``) or one per scenario."""
    if ROB_CFG["scenario_jobs"] == "patient":
        return [status("scenario_dose").format(pid=pid)] if names else []
    return [f"{RESULTS}/patients/{pid}/status/scenario_dose/{n}.json" for n in names]


def scenario_statuses(wildcards):
    """The status records of the jobs that make a patient's scenario doses."""
    out = scenario_dose_statuses(wildcards.pid, [s.name for s in DOSE_SCENARIOS])
    if SHIFTED:
        out.append(status("scenario_shift").format(pid=wildcards.pid))
    return out


def shift_base_statuses(wildcards):
    """The status records of the scenario jobs a rigid-shift job moves."""
    return scenario_dose_statuses(
        wildcards.pid, list(dict.fromkeys(s.base().name for s in SHIFTED))
    )


def scenario_files(wildcards):
    """Every scenario's doses of one patient, each from the rule that makes it."""
    return [
        f"{RESULTS}/patients/{wildcards.pid}/robustness/"
        f"{dp_rob.scenario_folder(s, setup_method=ROB_CFG['setup_method'])}/{s.name}.npz"
        for s in SCENARIOS
    ]


def shift_bases(wildcards):
    """The same-range scenarios that the rigid-shift scenarios of a patient move."""
    names = dict.fromkeys(s.base().name for s in SHIFTED)
    return [
        f"{RESULTS}/patients/{wildcards.pid}/robustness/scenarios/{n}.npz"
        for n in names
    ]


def rmse_sigma_inputs(wildcards):
    """σ of the cell-count weights reads training patients only."""
    pids = training_patients(wildcards)
    return {
        "rmse": expand(DWI_FILES["rmse_dose"], pid=pids),
        "masks_dose": expand(MASKS_DOSE, pid=pids),
    }


def robustness_sigma(wildcards):
    if ROB_CFG["sigma_scope"] == "training":
        return {"sigma": f"{RESULTS}/cohort/rmse_sigma.json"}
    return {}


def robustness_outputs(name):
    def inputs(wildcards):
        return expand(ROBUSTNESS_FILES[name], pid=heldout_planned(wildcards))

    return inputs


def dicom_rt_worst_doses(wildcards):
    """The robustness stage's worst-case doses, for a held-out patient (robustness runs on those only)."""
    if wildcards.pid not in split_patients("test"):
        return {}
    return {
        f"{plan}_worst_dose": f"{ROB}/{plan}_worst_dose.nii.gz".format(
            pid=wildcards.pid
        )
        for plan in dp_layout.PLAN_NAMES
    }
