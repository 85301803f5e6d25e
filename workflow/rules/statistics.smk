# Held-out statistics: TCP of the delivered plans, Table 1 and tests, survival, figures.
# Every per-patient input expands over the test split only (heldout_*): no training patient
# reaches these rules; the stages check it again against the split and the fit's IDs.

STATS = CFG["statistics"]
FIG = f"{RESULTS}/cohort/figures"
_PLAN_DIR = f"{RESULTS}/patients/{{pid}}/plans"


rule tcp_heldout:
    input:
        unpack(tcp_heldout_inputs),
    output:
        patients=report(
            f"{RESULTS}/cohort/tcp_heldout.tsv",
            caption="../report/tcp_heldout.rst",
            category="TCP model",
        ),
        evaluation=f"{RESULTS}/cohort/tcp_evaluation.json",
    log:
        logs("tcp_heldout"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=test_patients,
    script:
        "../../scripts/tcp_heldout.py"


if SYNTHETIC:

    rule tcp_recovery:
        input:
            fit=TCP_FIT,
            train=f"{RESULTS}/cohort/tcp_fit_patients.tsv",
            test=f"{RESULTS}/cohort/tcp_heldout.tsv",
            truth=expand(f"{RESULTS}/synthetic/truth/{{pid}}", pid=PIDS),
        output:
            recovery=f"{RESULTS}/cohort/tcp_recovery.json",
            patients=report(
                f"{RESULTS}/cohort/tcp_recovery.tsv",
                caption="../report/tcp_recovery.rst",
                category="TCP model",
            ),
        log:
            logs("tcp_recovery"),
        conda:
            "../../envs/imaging.yaml"
        script:
            "../../scripts/tcp_recovery.py"


rule heldout_statistics:
    input:
        unpack(
            heldout_files(
                metrics=PLAN_FILES["metrics"],
                masks_dose=MASKS_DOSE,
                **{
                    f"{plan}_{kind}": PLAN_FILES[f"{plan}_{kind}"]
                    for plan in dp_layout.PLAN_NAMES
                    for kind in ("dose", "letd")
                },
            )
        ),
        split=f"{RESULTS}/cohort/split.tsv",
        cell_count_tcp=f"{RESULTS}/cohort/robustness_cell_count_tcp.tsv",
        tertiles=f"{RESULTS}/cohort/robustness_tertiles.tsv",
    output:
        table1=report(
            f"{RESULTS}/cohort/table1.tsv",
            caption="../report/table1.rst",
            category="Held-out statistics",
        ),
        table1_md=f"{RESULTS}/cohort/table1.md",
        table1_tex=f"{RESULTS}/cohort/table1.tex",
        tests=report(
            f"{RESULTS}/cohort/plan_tests.tsv",
            caption="../report/plan_tests.rst",
            category="Held-out statistics",
        ),
        tcp_scenarios=report(
            f"{RESULTS}/cohort/tcp_scenarios.tsv",
            caption="../report/tcp_scenarios.rst",
            category="Held-out statistics",
        ),
        tertiles=report(
            f"{RESULTS}/cohort/tertile_summary.tsv",
            caption="../report/tertile_summary.rst",
            category="Held-out statistics",
        ),
        summary=f"{RESULTS}/cohort/statistics.json",
    log:
        logs("heldout_statistics"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=heldout_planned,
        digits=STATS["table_digits"],
    script:
        "../../scripts/heldout_statistics.py"


rule survival:
    input:
        unpack(survival_inputs),
        split=f"{RESULTS}/cohort/split.tsv",
        sheet=SHEET,
        test=f"{RESULTS}/cohort/tcp_heldout.tsv",
    output:
        km=f"{RESULTS}/cohort/survival_km.tsv",
        cox=report(
            f"{RESULTS}/cohort/survival_cox.tsv",
            caption="../report/survival_cox.rst",
            category="Survival",
        ),
        tests=f"{RESULTS}/cohort/survival.json",
    log:
        logs("survival"),
    conda:
        "../../envs/imaging.yaml"
    params:
        **STATS["survival"],
    script:
        "../../scripts/survival.py"


_FIGURE_CATEGORY = {
    "fig1a_oar": "Plans",
    "fig1b_dvh": "Plans",
    "fig1c_slices": "Plans",
    "fig2a_tcp": "Robustness",
    "fig2b_tertiles": "Robustness",
    "fig3_scenarios": "Robustness",
    "fig3b_worst_case": "Robustness",
    "km": "Survival",
    "calibration": "TCP model",
}


rule figures:
    input:
        unpack(
            heldout_files(
                metrics=PLAN_FILES["metrics"],
                uniform_dvh=PLAN_FILES["uniform_dvh"],
                de_dvh=PLAN_FILES["de_dvh"],
                uniform_dose=PLAN_FILES["uniform_dose"],
                de_dose=PLAN_FILES["de_dose"],
                dr_dose=PLAN_FILES["dr_dose"],
                de_letd=PLAN_FILES["de_letd"],
                ct=INGEST_FILES["ct"],
                masks_ct=f"{RESULTS}/patients/{{pid}}/ingest/masks_ct",
                de_worst_dose=ROBUSTNESS_FILES["de_worst_dose"],
                cell_density=DWI_FILES["cell_density_dose"],
                rmse=DWI_FILES["rmse_dose"],
                masks_dose=MASKS_DOSE,
                robustness_qc=ROBUSTNESS_FILES["qc"],
            )
        ),
        split=f"{RESULTS}/cohort/split.tsv",
        cell_count_tcp=f"{RESULTS}/cohort/robustness_cell_count_tcp.tsv",
        tertiles=f"{RESULTS}/cohort/robustness_tertiles.tsv",
        km=f"{RESULTS}/cohort/survival_km.tsv",
        survival=f"{RESULTS}/cohort/survival.json",
        fit=TCP_FIT,
        train=f"{RESULTS}/cohort/tcp_fit_patients.tsv",
        test=f"{RESULTS}/cohort/tcp_heldout.tsv",
        recovery=[f"{RESULTS}/cohort/tcp_recovery.tsv"] if SYNTHETIC else [],
    output:
        **{
            f"{name}_png": report(
                f"{FIG}/{name}.png",
                caption=f"../report/{name}.rst",
                category=cat,
            )
            for name, cat in _FIGURE_CATEGORY.items()
        },
        **{f"{name}_pdf": f"{FIG}/{name}.pdf" for name in _FIGURE_CATEGORY},
    log:
        logs("figures"),
    benchmark:
        benchmarks("figures")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        patient_ids=heldout_planned,
        oar_limits_gy=CFG["planning"]["oar_limits_gy"],
        representative=STATS["representative_patient"],
        n_fractions=CFG["planning"]["n_ld"] + CFG["planning"]["n_hd"],
        prescription_gy=CFG["planning"]["prescription_gy"],
    script:
        "../../scripts/figures.py"


rule cohort_summary:
    input:
        statistics=f"{RESULTS}/cohort/statistics.json",
        table1=f"{RESULTS}/cohort/table1.tsv",
        tests=f"{RESULTS}/cohort/plan_tests.tsv",
        tcp_scenarios=f"{RESULTS}/cohort/tcp_scenarios.tsv",
        tertiles=f"{RESULTS}/cohort/tertile_summary.tsv",
        evaluation=f"{RESULTS}/cohort/tcp_evaluation.json",
        fit=TCP_FIT,
        survival=f"{RESULTS}/cohort/survival.json",
        cox=f"{RESULTS}/cohort/survival_cox.tsv",
        recovery=[f"{RESULTS}/cohort/tcp_recovery.json"] if SYNTHETIC else [],
        excluded=EXCLUDED,
        planning_failures=PLANNING_FAILURES,
        ingest_summary=f"{RESULTS}/cohort/ingest_summary.tsv",
    output:
        headline=f"{RESULTS}/cohort/headline.tsv",
        html=report(
            f"{RESULTS}/cohort/summary.html",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        logs("cohort_summary"),
    conda:
        "../../envs/imaging.yaml"
    params:
        digits=STATS["table_digits"],
    script:
        "../../scripts/cohort_summary.py"


rule statistics_all:
    input:
        f"{RESULTS}/cohort/summary.html",
        f"{RESULTS}/cohort/statistics.json",
        f"{RESULTS}/cohort/survival.json",
        f"{RESULTS}/cohort/tcp_evaluation.json",
        [f"{RESULTS}/cohort/tcp_recovery.json"] if SYNTHETIC else [],
        expand(f"{FIG}/{{name}}.png", name=_FIGURE_CATEGORY),
