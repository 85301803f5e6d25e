# The embedded synthetic cohort: DICOM exports with ground truth kept apart.


if SYNTHETIC:

    rule synthesize_patient:
        output:
            dicom=directory(f"{RESULTS}/synthetic/dicom/{{pid}}"),
            truth=directory(f"{RESULTS}/synthetic/truth/{{pid}}"),
            row=f"{RESULTS}/synthetic/rows/{{pid}}.tsv",
        log:
            logs("synthesize_patient/{pid}"),
        benchmark:
            benchmarks("synthesize_patient/{pid}")
        conda:
            "../../envs/imaging.yaml"
        resources:
            mem_mb=6000,
            runtime=20,
        params:
            **dp_cohort.synthetic_truth(CFG["synthetic"]),
            patient_id=lambda wc: wc.pid,
            index=lambda wc: PIDS.index(wc.pid),
            preset=CFG["synthetic"]["preset"],
            n_patients=N_SYNTHETIC,
        script:
            "../../scripts/synthesize_patient.py"

    rule synthesize_cohort:
        input:
            rows=expand(f"{RESULTS}/synthetic/rows/{{pid}}.tsv", pid=PIDS),
        output:
            sheet=SHEET,
        log:
            logs("synthesize_cohort"),
        conda:
            "../../envs/imaging.yaml"
        script:
            "../../scripts/synthesize_cohort.py"
