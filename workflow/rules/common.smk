# Thin adapter: validate the config and the patient sheet, expose patient ids
# and a few input functions. Logic with branches lives in dosepaint.cohort.
import sys
from pathlib import Path

# Light modules only: every parse imports them (no stage module, no SimpleITK, pydicom, matplotlib).
from dosepaint import cohort as dp_cohort
from dosepaint import layout as dp_layout
from dosepaint import resources as dp_resources
from dosepaint import robustness as dp_rob
from dosepaint.io import tables as dp_tables
from dosepaint.synthetic.presets import PRESETS

_SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
CFG = dp_cohort.validate_config(
    config, dp_cohort.load_yaml(_SCHEMAS / "config.schema.yaml")
)
RESULTS = CFG["results"]
SYNTHETIC = CFG["cohort"]["source"] == "synthetic"

if SYNTHETIC:
    _syn = CFG["synthetic"]
    N_SYNTHETIC = _syn["n_patients"] or PRESETS[_syn["preset"]].n_patients
    PIDS = dp_cohort.synthetic_patient_ids(
        prefix=_syn["id_prefix"], n_patients=N_SYNTHETIC
    )
    SHEET = f"{RESULTS}/synthetic/patients.tsv"
    CLINICAL_COLUMNS = ["age", "sex"]
    DICOM_ROOT = None
else:
    SHEET = CFG["cohort"]["sheet"]
    CLINICAL_COLUMNS = CFG["cohort"]["clinical_columns"]
    DICOM_ROOT = CFG["cohort"]["dicom_root"]
    _SHEET_DF = dp_cohort.read_sheet(
        SHEET,
        schema=dp_cohort.load_yaml(_SCHEMAS / "patients.schema.yaml"),
        clinical_columns=CLINICAL_COLUMNS,
        dicom_root=DICOM_ROOT,
    )
    PIDS = _SHEET_DF["patient_id"].tolist()
    _DICOM = dict(zip(_SHEET_DF["patient_id"], _SHEET_DF["dicom_path"]))


wildcard_constraints:
    pid="|".join(PIDS),


def dicom_dir(wildcards):
    """The patient's DICOM folder: generated (synthetic) or from the sheet."""
    if SYNTHETIC:
        return f"{RESULTS}/synthetic/dicom/{wildcards.pid}"
    return _DICOM[wildcards.pid]


ALL_DICOM_DIRS = [
    f"{RESULTS}/synthetic/dicom/{p}" if SYNTHETIC else _DICOM[p] for p in PIDS
]


INGEST_REQUIRED = CFG["ingest"]["required_modalities"]
INGEST_FILES = {
    name: f"{RESULTS}/patients/{{pid}}/ingest/{rel}"
    for name, rel in dp_layout.ingest_outputs(INGEST_REQUIRED).items()
}


DWI_FILES = {
    name: f"{RESULTS}/patients/{{pid}}/dwi/{rel}"
    for name, rel in dp_layout.DWI_OUTPUTS.items()
}


PET_FILES = {
    name: f"{RESULTS}/patients/{{pid}}/pet/{rel}"
    for name, rel in dp_layout.PET_OUTPUTS.items()
}


PET_REFERENCE_IS_TRUTH = SYNTHETIC and CFG["pet"]["reference"] == "auto"


def pet_truth(wildcards):
    """The synthetic truth (its active-volume mask is the reference), when there is one."""
    if PET_REFERENCE_IS_TRUTH:
        return {"truth": f"{RESULTS}/synthetic/truth/{wildcards.pid}"}
    return {}


def dwi_library(wildcards):
    """The library of the patient's DWI protocol, known once its input check has run (none where the
    check excluded the patient or found no DWI). Read from the check, not the ingest: read from the
    ingest checkpoint, every DWI job got Snakemake's placeholder for its library under
    `--forcerun dwi` on finished results (seen on the tiny cohort; cf. snakemake#3862).
    """
    check = checkpoints.check_inputs.get(pid=wildcards.pid).output.check
    key = dp_layout.check_library_key(dp_tables.read_json(check), path=check)
    return [] if key is None else f"{RESULTS}/libraries/dwi_{key}.npz"


PLAN_FILES = {
    name: f"{RESULTS}/patients/{{pid}}/plans/{rel}"
    for name, rel in dp_layout.PLAN_OUTPUTS.items()
}
PLAN_INFLUENCE = f"{RESULTS}/patients/{{pid}}/plans/influence.npz"


INPUT_CHECK = f"{RESULTS}/patients/{{pid}}/input_check.json"
EXCLUDED = f"{RESULTS}/cohort/excluded.tsv"
PLANNING_FAILURES = f"{RESULTS}/cohort/planning_failures.tsv"
ON_ERROR = CFG["cohort"]["on_input_error"]
MASKS_DOSE = f"{RESULTS}/patients/{{pid}}/ingest/masks_dose"
"""The ingest's masks on the dose grid (a folder of {structure}.nii.gz)."""


def logs(name):
    """A rule's log file, ``results/logs/{name}.log`` (``name`` may hold wildcards, e.g. plan/{pid})."""
    return f"{RESULTS}/logs/{name}.log"


def benchmarks(name):
    """A rule's benchmark table, ``results/benchmarks/{name}.tsv``."""
    return f"{RESULTS}/benchmarks/{name}.tsv"


def status(stage):
    """A per-patient stage's status record (dosepaint.stages.guard): ok, failed or skipped."""
    return f"{RESULTS}/patients/{{pid}}/status/{stage}.json"


IMAGING_STAGES = ["ingest"] + [
    stage
    for stage, needs in (("dwi", "DWI"), ("pet", "PT"))
    if needs in INGEST_REQUIRED
]


def imaging_statuses(wildcards):
    """The imaging stages' status records of the patients that passed the input check."""
    passed = []
    for p in PIDS:
        check = checkpoints.check_inputs.get(pid=p).output.check
        if dp_tables.read_json(check)["status"] == "included":
            passed.append(p)
    return [status(s).format(pid=p) for p in passed for s in IMAGING_STAGES]


def split_patients(which):
    """Patient ids of one side of the split (known once the split checkpoint has run)."""
    split = dp_tables.read_tsv(checkpoints.make_split.get().output.split)
    return split.loc[split["split"] == which, "patient_id"].tolist()


def included_patients():
    """Patients that passed the input check and completed the imaging stages, in sheet order
    (known once the exclusions checkpoint has run; the split holds exactly them)."""
    excluded = dp_tables.read_tsv(checkpoints.exclusions.get().output.excluded)
    return [p for p in PIDS if p not in set(excluded["patient_id"])]


def included_files(pattern):
    """An input function: ``pattern`` expanded over the patients that passed the input check."""

    def inputs(wildcards):
        return expand(pattern, pid=included_patients())

    return inputs


def training_patients(wildcards):
    return split_patients("train")


def tcp_fit_inputs(wildcards):
    """The TCP fit reads training patients only (leakage is impossible by construction)."""
    pids = training_patients(wildcards)
    return {
        "split": checkpoints.make_split.get().output.split,
        "rtdose": expand(INGEST_FILES["rtdose"], pid=pids),
        "cell_density": expand(DWI_FILES["cell_density_dose"], pid=pids),
        "masks_dose": expand(MASKS_DOSE, pid=pids),
    }


TCP_FIT = f"{RESULTS}/cohort/tcp_fit.json"


def plan_tcp_model(wildcards):
    """The fitted TCP model, when planning uses it (planning.tcp.source: fit)."""
    return {"tcp_model": TCP_FIT} if CFG["planning"]["tcp"]["source"] == "fit" else {}


def planned_patients(wildcards):
    """Patients to plan: the held-out split (known once the split exists), all, or a list."""
    choice = CFG["planning"]["patients"]
    if choice == "test":
        return split_patients("test")
    included = included_patients()
    if choice == "all":
        return included
    # A listed patient that was excluded is in excluded.tsv.
    return [p for p in choice if p in included]


def planning_statuses(wildcards):
    """The plan status of every planned patient and the robustness status of the held-out ones."""
    planned = planned_patients(wildcards)
    heldout = [p for p in split_patients("test") if p in set(planned)]
    return [status("plan").format(pid=p) for p in planned] + [
        status("robustness").format(pid=p) for p in heldout
    ]


def failed_planning():
    """Patients whose planning or robustness failed (known once the planning gate has run)."""
    table = dp_tables.read_tsv(checkpoints.planning_failures.get().output.excluded)
    return set(table["patient_id"])


def planned_ok(wildcards):
    """Planned patients whose plans completed."""
    failed = failed_planning()
    return [p for p in planned_patients(wildcards) if p not in failed]


def plan_metrics(wildcards):
    return expand(PLAN_FILES["metrics"], pid=planned_ok(wildcards))


def test_patients(wildcards):
    return split_patients("test")


def heldout_planned(wildcards):
    """Held-out patients with completed plans and robustness: the population of every held-out
    statistic (a patient whose planning failed is listed in planning_failures.tsv)."""
    planned = set(planned_ok(wildcards))
    return [p for p in split_patients("test") if p in planned]


def heldout_files(**patterns):
    """An input function: each pattern expanded over the held-out patients with plans."""

    def inputs(wildcards):
        pids = heldout_planned(wildcards)
        return {k: expand(v, pid=pids) for k, v in patterns.items()}

    return inputs


def tcp_heldout_inputs(wildcards):
    """The held-out TCP reads the fit and test patients only (leakage is impossible by construction)."""
    pids = test_patients(wildcards)
    return {
        "fit": TCP_FIT,
        "split": checkpoints.make_split.get().output.split,
        "sheet": SHEET,
        "rtdose": expand(INGEST_FILES["rtdose"], pid=pids),
        "cell_density": expand(DWI_FILES["cell_density_dose"], pid=pids),
        "masks_dose": expand(MASKS_DOSE, pid=pids),
    }


def survival_inputs(wildcards):
    """The training table too, when survival statistics include the training patients."""
    if CFG["statistics"]["survival"]["population"] == "all":
        return {"train": f"{RESULTS}/cohort/tcp_fit_patients.tsv", "fit": TCP_FIT}
    return {}


def say_exclusions():
    """At the end of a run: the patients left out, with their stage (also in the report)."""
    for table in (EXCLUDED, PLANNING_FAILURES):
        notice = dp_cohort.exclusion_notice(table)
        if notice:
            print(notice, file=sys.stderr)
