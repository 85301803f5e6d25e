# dosepaint: biologically guided dose painting, from raw DICOM to the paper's tables.
# Run from the repository root:  snakemake --cores 2
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/dwi.smk"
include: "workflow/rules/pet.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/statistics.smk"
include: "workflow/rules/sweep.smk"


onsuccess:
    say_exclusions()


onerror:
    say_exclusions()


rule all:
    default_target: True
    input:
        rules.ingest_all.input,
        rules.dwi_all.input,
        rules.pet_all.input,
        rules.cohort_all.input,
        rules.plan_all.input,
        rules.robustness_all.input,
        rules.export_all.input,
        rules.statistics_all.input,
        rules.provenance.output,
