# Plans on pyRadPlan dose influence: uniform, dose escalation (DE), dose redistribution (DR).


rule dose_influence:
    input:
        ct_dose=INGEST_FILES["ct_dose"],
        masks_dose=MASKS_DOSE,
        upstream=status("ingest"),
    output:
        influence=PLAN_INFLUENCE,
        status=status("dose_influence"),
    log:
        logs("dose_influence/{pid}"),
    benchmark:
        benchmarks("dose_influence/{pid}")
    conda:
        "../../envs/planning.yaml"
    resources:
        mem_mb=lambda wc, input: dp_resources.influence_mem_mb(input.masks_dose),
        runtime=60,
    params:
        patient_id=lambda wc: wc.pid,
        engine=CFG["planning"]["engine"],
        oars=list(CFG["planning"]["oar_limits_gy"]),
        ring_mm=CFG["planning"]["ring_mm"],
        body_step=CFG["planning"]["body_step"],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/dose_influence.py"


rule plan:
    input:
        unpack(plan_tcp_model),
        ct_dose=INGEST_FILES["ct_dose"],
        masks_dose=MASKS_DOSE,
        influence=PLAN_INFLUENCE,
        cell_density=DWI_FILES["cell_density_dose"],
        prescription_contours=PET_FILES["prescription_contours"],
        prescription_numbers=PET_FILES["prescription_numbers"],
        upstream=[status("dose_influence"), status("dwi"), status("pet")],
    output:
        **PLAN_FILES,
        status=status("plan"),
    log:
        logs("plan/{pid}"),
    benchmark:
        benchmarks("plan/{pid}")
    conda:
        "../../envs/planning.yaml"
    threads: CFG["planning"]["threads"]
    resources:
        mem_mb=lambda wc, input: dp_resources.plan_mem_mb(input.influence),
        runtime=90,
    params:
        patient_id=lambda wc: wc.pid,
        prescription_gy=CFG["planning"]["prescription_gy"],
        n_ld=CFG["planning"]["n_ld"],
        n_hd=CFG["planning"]["n_hd"],
        de_mean_fraction=CFG["planning"]["de_mean_fraction"],
        dr_mean_fraction=CFG["planning"]["dr_mean_fraction"],
        oar_limits_gy=CFG["planning"]["oar_limits_gy"],
        constant_rbe=CFG["planning"]["constant_rbe"],
        tcp=CFG["planning"]["tcp"],
        optimisation=CFG["planning"]["optimisation"],
        ring_mm=CFG["planning"]["ring_mm"],
        body_step=CFG["planning"]["body_step"],
        dvh_bin_gy=CFG["planning"]["dvh_bin_gy"],
        threads=CFG["planning"]["threads"],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/plan.py"


rule plan_summary:
    input:
        metrics=plan_metrics,
        failures=PLANNING_FAILURES,
    output:
        metrics=f"{RESULTS}/cohort/plan_metrics.tsv",
        summary=report(
            f"{RESULTS}/cohort/plan_summary.tsv",
            caption="../report/plan_summary.rst",
            category="Plans",
        ),
    log:
        logs("plan_summary"),
    conda:
        "../../envs/planning.yaml"
    script:
        "../../scripts/plan_summary.py"


rule plan_all:
    input:
        f"{RESULTS}/cohort/plan_summary.tsv",
