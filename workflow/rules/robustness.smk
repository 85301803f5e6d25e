# Robustness of the plans: cell-count scenarios and physical (setup x range) scenarios.


wildcard_constraints:
    scen=dp_rob.SCENARIO_PATTERN,


include: "robustness_functions.smk"


rule rmse_sigma:
    input:
        unpack(rmse_sigma_inputs),
    output:
        sigma=f"{RESULTS}/cohort/rmse_sigma.json",
    log:
        logs("rmse_sigma"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=training_patients,
        centring=ROB_CFG["centring"],
    script:
        "../../scripts/rmse_sigma.py"


if ROB_CFG["scenario_jobs"] == "patient":

    rule scenario_dose:
        input:
            **SCENARIO_INPUTS,
        output:
            doses=[f"{ROB}/scenarios/{s.name}.npz" for s in DOSE_SCENARIOS],
            status=status("scenario_dose"),
        log:
            logs("scenario_dose/{pid}"),
        benchmark:
            benchmarks("scenario_dose/{pid}")
        conda:
            "../../envs/planning.yaml"
        resources:
            mem_mb=lambda wc, input: dp_resources.scenario_mem_mb(input.masks_dose),
            runtime=max(60, 10 * len(DOSE_SCENARIOS)),  # ≤ 3.1 min a scenario measured (3 mm)
        params:
            **SCENARIO_PARAMS,
            scenarios=[s.name for s in DOSE_SCENARIOS],
        script:
            "../../scripts/scenario_doses.py"

else:

    rule scenario_dose:
        input:
            **SCENARIO_INPUTS,
        output:
            doses=f"{ROB}/scenarios/{{scen}}.npz",
            status=f"{RESULTS}/patients/{{pid}}/status/scenario_dose/{{scen}}.json",
        log:
            logs("scenario_dose/{pid}/{scen}"),
        benchmark:
            benchmarks("scenario_dose/{pid}/{scen}")
        conda:
            "../../envs/planning.yaml"
        resources:
            mem_mb=lambda wc, input: dp_resources.scenario_mem_mb(input.masks_dose),
            runtime=60,
        params:
            **SCENARIO_PARAMS,
            scenario=lambda wc: wc.scen,
        script:
            "../../scripts/scenario_dose.py"


rule scenario_shift:
    input:
        bases=shift_bases,
        ct_dose=INGEST_FILES["ct_dose"],
        upstream=shift_base_statuses,
    output:
        doses=[f"{ROB}/shifted/{s.name}.npz" for s in SHIFTED],
        status=status("scenario_shift"),
    log:
        logs("scenario_shift/{pid}"),
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        patient_id=lambda wc: wc.pid,
        scenarios=[s.name for s in SHIFTED],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/scenario_shift.py"


rule robustness:
    input:
        unpack(plan_tcp_model),
        unpack(robustness_sigma),
        scenarios=scenario_files,
        masks_dose=MASKS_DOSE,
        cell_density=DWI_FILES["cell_density_dose"],
        cell_density_lo=DWI_FILES["cell_density_lo_dose"],
        cell_density_hi=DWI_FILES["cell_density_hi_dose"],
        rmse=DWI_FILES["rmse_dose"],
        upstream=lambda wc: [status("plan").format(pid=wc.pid)] + scenario_statuses(wc),
    output:
        **ROBUSTNESS_FILES,
        status=status("robustness"),
    log:
        logs("robustness/{pid}"),
    benchmark:
        benchmarks("robustness/{pid}")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        patient_id=lambda wc: wc.pid,
        scenarios=[s.name for s in SCENARIOS],
        on_input_error=ON_ERROR,
        prescription_gy=CFG["planning"]["prescription_gy"],
        n_fractions=CFG["planning"]["n_ld"] + CFG["planning"]["n_hd"],
        oar_limits_gy=CFG["planning"]["oar_limits_gy"],
        tcp=CFG["planning"]["tcp"],
        centring=ROB_CFG["centring"],
        sigma_scope=ROB_CFG["sigma_scope"],
        dvh_bin_gy=ROB_CFG["dvh_bin_gy"],
    script:
        "../../scripts/robustness.py"


rule robustness_summary:
    input:
        voxels=robustness_outputs("voxels"),
        scenario_metrics=robustness_outputs("scenario_metrics"),
        cell_count_tcp=robustness_outputs("cell_count_tcp"),
    output:
        summary=report(
            f"{RESULTS}/cohort/robustness_summary.tsv",
            caption="../report/robustness_summary.rst",
            category="Robustness",
        ),
        tertiles=f"{RESULTS}/cohort/robustness_tertiles.tsv",
        tertile_thresholds=f"{RESULTS}/cohort/robustness_tertile_thresholds.json",
        scenarios=f"{RESULTS}/cohort/robustness_scenarios.tsv",
        cell_count=f"{RESULTS}/cohort/robustness_cell_count_tcp.tsv",
    log:
        logs("robustness_summary"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=heldout_planned,
        tertile_percentiles=ROB_CFG["tertile_percentiles"],
    script:
        "../../scripts/robustness_summary.py"


rule robustness_all:
    input:
        f"{RESULTS}/cohort/robustness_summary.tsv",
