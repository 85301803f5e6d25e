# PET: SUV, segmentation methods scored with TG-211 metrics, dose-painting prescriptions.


rule pet:
    input:
        unpack(pet_truth),
        pet_ct=INGEST_FILES["pet_ct"],
        pet_dose=INGEST_FILES["pet_dose"],
        pet_json=INGEST_FILES["pet_json"],
        masks_ct=f"{RESULTS}/patients/{{pid}}/ingest/masks_ct",
        masks_dose=MASKS_DOSE,
        upstream=status("ingest"),
    output:
        **PET_FILES,
        masks=directory(f"{RESULTS}/patients/{{pid}}/pet/masks"),
        status=status("pet"),
    log:
        logs("pet/{pid}"),
    benchmark:
        benchmarks("pet/{pid}")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        patient_id=lambda wc: wc.pid,
        methods=CFG["pet"]["methods"],
        method_params=CFG["pet"]["method_params"],
        search_structure=CFG["pet"]["search_structure"],
        search_margin_mm=CFG["pet"]["search_margin_mm"],
        background_shell_mm=CFG["pet"]["background_shell_mm"],
        reference_structure=CFG["pet"]["reference_structure"],
        reference_mask="masks/PET_ACTIVE.nii.gz",
        prescription=CFG["pet"]["prescription"],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/pet.py"


rule pet_summary:
    input:
        metrics=included_files(PET_FILES["metrics"]),
    output:
        metrics=f"{RESULTS}/cohort/pet_metrics.tsv",
        summary=report(
            f"{RESULTS}/cohort/pet_summary.tsv",
            caption="../report/pet_summary.rst",
            category="PET",
        ),
        figure=report(
            f"{RESULTS}/cohort/pet_segmentation.png",
            caption="../report/pet_segmentation.rst",
            category="PET",
        ),
    log:
        logs("pet_summary"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/pet_summary.py"


rule pet_all:
    input:
        f"{RESULTS}/cohort/pet_summary.tsv",
        f"{RESULTS}/cohort/pet_segmentation.png",
