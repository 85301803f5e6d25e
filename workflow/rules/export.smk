# The DICOM RT package per planned patient: the plans handed back to the clinic's tools.


rule dicom_rt:
    input:
        unpack(dicom_rt_worst_doses),
        **{
            k: v
            for k, v in PLAN_FILES.items()
            if k.endswith("_weights") or k.endswith("_dose")
        },
        ct=INGEST_FILES["ct"],
        ct_dose=INGEST_FILES["ct_dose"],
        ingest_qc=INGEST_FILES["qc"],
        masks_ct=f"{RESULTS}/patients/{{pid}}/ingest/masks_ct",
        masks_dose=MASKS_DOSE,
        pet_masks=f"{RESULTS}/patients/{{pid}}/pet/masks",
        clonogens=DWI_FILES["clonogens"],
        influence=PLAN_INFLUENCE,
        upstream=status("plan"),
    output:
        package=directory(f"{RESULTS}/patients/{{pid}}/dicom_rt"),
        manifest=f"{RESULTS}/patients/{{pid}}/dicom_rt.json",
        status=status("dicom_rt"),
    log:
        logs("dicom_rt/{pid}"),
    benchmark:
        benchmarks("dicom_rt/{pid}")
    conda:
        "../../envs/planning.yaml"
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        patient_id=lambda wc: wc.pid,
        retain_uids=CFG["export"]["retain_uids"],
        dicom_dir=lambda wc: dicom_dir(wc) if CFG["export"]["retain_uids"] else "",
        on_input_error=ON_ERROR,
    script:
        "../../scripts/dicom_rt.py"


rule dicom_rt_summary:
    input:
        manifests=lambda wc: expand(
            f"{RESULTS}/patients/{{pid}}/dicom_rt.json", pid=planned_ok(wc)
        ),
        statuses=lambda wc: expand(status("dicom_rt"), pid=planned_ok(wc)),
    output:
        summary=report(
            f"{RESULTS}/cohort/dicom_rt.tsv",
            caption="../report/dicom_rt.rst",
            category="DICOM RT export",
        ),
    log:
        logs("dicom_rt_summary"),
    conda:
        "../../envs/planning.yaml"
    script:
        "../../scripts/dicom_rt_summary.py"


rule export_all:
    input:
        f"{RESULTS}/cohort/dicom_rt.tsv" if CFG["export"]["dicom_rt"] else [],
