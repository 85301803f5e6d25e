# The sweep's points (config sweep.table) and input functions of the sweep rules (sweep.smk).
from snakemake.utils import Paramspace

SWEEP = Paramspace(
    dp_cohort.read_sweep_points(CFG["sweep"]["table"]), filename_params="*"
)


def sweep_rows(wildcards):
    """Every sweep point's row of every held-out patient with plans."""
    return expand(
        f"{RESULTS}/sweeps/{{point}}/{{pid}}.tsv",
        point=SWEEP.instance_patterns,
        pid=heldout_planned(wildcards),
    )
