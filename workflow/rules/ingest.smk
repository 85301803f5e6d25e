# Per-patient DICOM ingest onto the planning CT and the dose grid.


checkpoint ingest:
    input:
        dicom_dir=dicom_dir,
    output:
        **INGEST_FILES,
        masks_ct=directory(f"{RESULTS}/patients/{{pid}}/ingest/masks_ct"),
        masks_dose=directory(f"{RESULTS}/patients/{{pid}}/ingest/masks_dose"),
    log:
        f"{RESULTS}/logs/ingest/{{pid}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest/{{pid}}.tsv"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        patient_id=lambda wc: wc.pid,
        required_modalities=INGEST_REQUIRED,
        required_structures=CFG["ingest"]["required_structures"],
        structure_aliases=CFG["ingest"]["structure_aliases"],
        dose_grid_mm=CFG["ingest"]["dose_grid_mm"],
        dose_grid_margin_mm=CFG["ingest"]["dose_grid_margin_mm"],
        slice_spacing_tolerance_mm=CFG["ingest"]["slice_spacing_tolerance_mm"],
        default_pgse_delta_ms=CFG["ingest"]["default_pgse_delta_ms"],
        default_pgse_Delta_ms=CFG["ingest"]["default_pgse_Delta_ms"],
        registration=CFG["ingest"]["registration"],
    script:
        "../../scripts/ingest.py"


rule ingest_summary:
    input:
        qc=expand(f"{RESULTS}/patients/{{pid}}/ingest/qc.json", pid=PIDS),
    output:
        summary=report(
            f"{RESULTS}/cohort/ingest_summary.tsv",
            caption="../report/ingest_summary.rst",
            category="Ingest",
        ),
    log:
        f"{RESULTS}/logs/ingest_summary.log",
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/ingest_summary.py"


rule ingest_all:
    input:
        f"{RESULTS}/cohort/ingest_summary.tsv",
