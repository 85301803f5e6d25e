# Parameter sweeps (config sweep.table, one point per row) over cohort-level parameters; target
# sweep_all. A point's path names its values, so adding a row runs that point's jobs only, and the
# TCP model is refitted once per α/β, not once per point.


wildcard_constraints:
    ab=r"[0-9]+(\.[0-9]+)?",
    de_mean_fraction=r"[0-9]+(\.[0-9]+)?",
    alpha_beta=r"[0-9]+(\.[0-9]+)?",
    sigma_scale=r"[0-9]+(\.[0-9]+)?",


include: "sweep_functions.smk"


rule sweep_tcp_fit:
    input:
        unpack(tcp_fit_inputs),
    output:
        fit=f"{RESULTS}/sweeps/fits/alpha_beta~{{ab}}/tcp_fit.json",
        patients=f"{RESULTS}/sweeps/fits/alpha_beta~{{ab}}/tcp_fit_patients.tsv",
    log:
        logs("sweep_tcp_fit/alpha_beta~{ab}"),
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    # the main fit's settings, at the point's α/β and without bootstrap
    params:
        **(CFG["tcp_fit"] | {"alpha_beta": lambda wc: float(wc.ab), "bootstrap": 0}),
        patient_ids=training_patients,
    script:
        "../../scripts/tcp_fit.py"


rule sweep_patient:
    input:
        split=f"{RESULTS}/cohort/split.tsv",
        fit=f"{RESULTS}/sweeps/fits/alpha_beta~{{alpha_beta}}/tcp_fit.json",
        sigma=f"{RESULTS}/cohort/rmse_sigma.json",
        uniform_dose=PLAN_FILES["uniform_dose"],
        cell_density=DWI_FILES["cell_density_dose"],
        rmse=DWI_FILES["rmse_dose"],
        masks_dose=MASKS_DOSE,
    output:
        row=f"{RESULTS}/sweeps/{SWEEP.wildcard_pattern}/{{pid}}.tsv",
    log:
        f"{RESULTS}/logs/sweep_patient/{SWEEP.wildcard_pattern}/{{pid}}.log",
    conda:
        "../../envs/imaging.yaml"
    params:
        patient_id=lambda wc: wc.pid,
        point=SWEEP.instance,
        prescription_gy=CFG["planning"]["prescription_gy"],
        n_fractions=CFG["planning"]["n_ld"] + CFG["planning"]["n_hd"],
        gtv_lower=CFG["planning"]["optimisation"]["gtv_lower"],
        gtv_upper=CFG["planning"]["optimisation"]["gtv_upper"],
    script:
        "../../scripts/sweep_patient.py"


rule sweep_summary:
    input:
        rows=sweep_rows,
    output:
        summary=f"{RESULTS}/sweeps/summary.tsv",
        rows=f"{RESULTS}/sweeps/patients.tsv",
        figure=report(
            f"{RESULTS}/sweeps/tcp_gain.png",
            caption="../report/sweep.rst",
            category="Sweeps",
        ),
    log:
        logs("sweep_summary"),
    conda:
        "../../envs/imaging.yaml"
    params:
        default={
            "de_mean_fraction": CFG["planning"]["de_mean_fraction"],
            "alpha_beta": CFG["tcp_fit"]["alpha_beta"],
            "sigma_scale": 1.0,
        },
    script:
        "../../scripts/sweep_summary.py"


rule sweep_all:
    input:
        f"{RESULTS}/sweeps/summary.tsv",
