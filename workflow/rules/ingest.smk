# Per-patient input check, then DICOM ingest onto the planning CT and the dose grid.

# What reading an export needs: the check and the ingest read it with the same function.
EXPORT_PARAMS = dict(
    required_modalities=INGEST_REQUIRED,
    required_structures=CFG["ingest"]["required_structures"],
    structure_aliases=CFG["ingest"]["structure_aliases"],
    slice_spacing_tolerance_mm=CFG["ingest"]["slice_spacing_tolerance_mm"],
    planned_oars=list(CFG["planning"]["oar_limits_gy"]),
    optional_oars=CFG["planning"]["optional_oars"],
    # the DWI protocol (its library's name) is recorded by the check, written by the ingest
    default_pgse_delta_ms=CFG["ingest"]["default_pgse_delta_ms"],
    default_pgse_Delta_ms=CFG["ingest"]["default_pgse_Delta_ms"],
)


checkpoint check_inputs:
    input:
        dicom_dir=dicom_dir,
    output:
        check=INPUT_CHECK,
    log:
        logs("check_inputs/{pid}"),
    benchmark:
        benchmarks("check_inputs/{pid}")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=2000,  # 0.7 GB measured on the default cohort
        runtime=15,
    params:
        **EXPORT_PARAMS,
        patient_id=lambda wc: wc.pid,
        on_input_error=CFG["cohort"]["on_input_error"],
        registration=CFG["ingest"]["registration"],
    script:
        "../../scripts/check_inputs.py"


rule ingest:
    input:
        dicom_dir=dicom_dir,
        check=INPUT_CHECK,
    output:
        **INGEST_FILES,
        masks_ct=directory(f"{RESULTS}/patients/{{pid}}/ingest/masks_ct"),
        masks_dose=directory(MASKS_DOSE),
        status=status("ingest"),
    log:
        logs("ingest/{pid}"),
    benchmark:
        benchmarks("ingest/{pid}")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        **EXPORT_PARAMS,
        patient_id=lambda wc: wc.pid,
        dose_grid_mm=CFG["ingest"]["dose_grid_mm"],
        dose_grid_margin_mm=CFG["ingest"]["dose_grid_margin_mm"],
        registration=CFG["ingest"]["registration"],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/ingest.py"


rule ingest_summary:
    input:
        qc=included_files(f"{RESULTS}/patients/{{pid}}/ingest/qc.json"),
    output:
        summary=report(
            f"{RESULTS}/cohort/ingest_summary.tsv",
            caption="../report/ingest_summary.rst",
            category="Ingest",
        ),
    log:
        logs("ingest_summary"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/ingest_summary.py"


rule ingest_all:
    input:
        f"{RESULTS}/cohort/ingest_summary.tsv",
