# Cohort-level rules: the train/test split (the TCP fit and statistics build on it).


checkpoint exclusions:
    input:
        checks=expand(INPUT_CHECK, pid=PIDS),
        statuses=imaging_statuses,
    output:
        excluded=report(
            EXCLUDED,
            caption="../report/excluded.rst",
            category="Ingest",
        ),
    log:
        logs("exclusions"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=PIDS,
    script:
        "../../scripts/exclusions.py"


checkpoint make_split:
    input:
        sheet=SHEET,
        excluded=EXCLUDED,
    output:
        split=f"{RESULTS}/cohort/split.tsv",
    log:
        logs("make_split"),
    conda:
        "../../envs/imaging.yaml"
    params:
        clinical_columns=CLINICAL_COLUMNS,
        dicom_root=DICOM_ROOT,
        n_test=CFG["cohort"]["n_test"],
        seed=CFG["cohort"]["split_seed"],
        schema=dp_cohort.load_yaml(_SCHEMAS / "patients.schema.yaml"),
    script:
        "../../scripts/make_split.py"


rule tcp_fit:
    input:
        unpack(tcp_fit_inputs),
    output:
        fit=TCP_FIT,
        patients=f"{RESULTS}/cohort/tcp_fit_patients.tsv",
    log:
        logs("tcp_fit"),
    benchmark:
        benchmarks("tcp_fit")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **CFG["tcp_fit"],
        patient_ids=training_patients,
    script:
        "../../scripts/tcp_fit.py"


checkpoint planning_failures:
    input:
        statuses=planning_statuses,
    output:
        excluded=report(
            PLANNING_FAILURES,
            caption="../report/planning_failures.rst",
            category="Plans",
        ),
    log:
        logs("planning_failures"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=PIDS,
    script:
        "../../scripts/exclusions.py"


rule provenance:
    input:
        sheet=SHEET,
        dicom=ALL_DICOM_DIRS,
    output:
        provenance=f"{RESULTS}/provenance.json",
    log:
        logs("provenance"),
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_ids=PIDS,
        config=CFG,
        workflow_dir=workflow.basedir,
    script:
        "../../scripts/provenance.py"


rule cohort_all:
    input:
        f"{RESULTS}/cohort/split.tsv",
        EXCLUDED,
        f"{RESULTS}/cohort/ingest_summary.tsv",
        [TCP_FIT] if {"RTDOSE", "DWI"} <= set(INGEST_REQUIRED) else [],
