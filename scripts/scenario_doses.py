"""Rule script: unpack snakemake's objects and call one stage function, failure-isolated (stages.guard)."""

from dosepaint.logs import logged
from dosepaint.stages.guard import run_guarded
from dosepaint.stages.robustness import run_scenarios as run

with logged(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    run_guarded(
        run,
        dict(snakemake.input.items()),  # noqa: F821
        dict(snakemake.output.items()),  # noqa: F821
        params=dict(snakemake.params.items()),  # noqa: F821
        stage="scenario_dose",
    )
