# DWI -> ADC -> microstructure -> cell density and clonogens (docs/method.md §3).


rule dwi_library:
    output:
        library=f"{RESULTS}/libraries/dwi_{{protocol}}.npz",
    log:
        logs("dwi_library/{protocol}"),
    benchmark:
        benchmarks("dwi_library/{protocol}")
    wildcard_constraints:
        protocol="b[0-9p-]+_d[0-9p]+_D[0-9p]+",
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        protocol=lambda wc: wc.protocol,
        b_min=CFG["dwi"]["b_min"],
        adc_weighting=CFG["dwi"]["adc_weighting"],
        method=CFG["dwi"]["method"],
        grid=CFG["dwi"]["library"],
        prior=CFG["dwi"]["prior"],
        library_model=CFG["dwi"]["library_model"],
        monte_carlo=CFG["dwi"]["monte_carlo"],
    script:
        "../../scripts/dwi_library.py"


rule dwi:
    input:
        dwi=INGEST_FILES["dwi"],
        dwi_json=INGEST_FILES["dwi_json"],
        t2w_to_ct=INGEST_FILES["t2w_to_ct"],
        dwi_to_t2w=INGEST_FILES["dwi_to_t2w"],
        ct_dose=INGEST_FILES["ct_dose"],
        masks_dose=MASKS_DOSE,
        library=dwi_library,
        upstream=status("ingest"),
    output:
        **DWI_FILES,
        status=status("dwi"),
    log:
        logs("dwi/{pid}"),
    benchmark:
        benchmarks("dwi/{pid}")
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        patient_id=lambda wc: wc.pid,
        b_min=CFG["dwi"]["b_min"],
        min_points=CFG["dwi"]["min_points"],
        adc_weighting=CFG["dwi"]["adc_weighting"],
        adc_max=CFG["dwi"]["adc_max"],
        method=CFG["dwi"]["method"],
        prior_update=CFG["dwi"]["prior_update"],
        point_estimate=CFG["dwi"]["point_estimate"],
        credible_level=CFG["dwi"]["credible_level"],
        noise=CFG["dwi"]["noise"],
        min_ess=CFG["dwi"]["min_ess"],
        partial_volume_threshold=CFG["dwi"]["partial_volume_threshold"],
        adc_sigma=CFG["dwi"]["adc_sigma"],
        knn_k=CFG["dwi"]["knn_k"],
        clonogenic_fraction=CFG["dwi"]["clonogenic_fraction"],
        max_flagged_fraction_gtv=CFG["dwi"]["max_flagged_fraction_gtv"],
        on_input_error=ON_ERROR,
    script:
        "../../scripts/dwi.py"


rule dwi_summary:
    input:
        qc=included_files(f"{RESULTS}/patients/{{pid}}/dwi/qc.tsv"),
    output:
        summary=report(
            f"{RESULTS}/cohort/dwi_summary.tsv",
            caption="../report/dwi_summary.rst",
            category="DWI",
        ),
    log:
        logs("dwi_summary"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/dwi_summary.py"


rule dwi_all:
    input:
        f"{RESULTS}/cohort/dwi_summary.tsv",
