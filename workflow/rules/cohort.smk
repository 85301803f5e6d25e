# Cohort-level rules: the train/test split (the TCP fit and statistics build on it).


checkpoint make_split:
    input:
        sheet=SHEET,
    output:
        split=f"{RESULTS}/cohort/split.tsv",
    log:
        f"{RESULTS}/logs/make_split.log",
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


rule cohort_all:
    input:
        f"{RESULTS}/cohort/split.tsv",
        f"{RESULTS}/cohort/ingest_summary.tsv",
