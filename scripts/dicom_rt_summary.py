"""Rule script: unpack snakemake's objects and call one stage function."""

from dosepaint.logs import logged
from dosepaint.stages.export import run_summary as run

with logged(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    run(
        dict(snakemake.input.items()),  # noqa: F821
        dict(snakemake.output.items()),  # noqa: F821
        params=dict(snakemake.params.items()),  # noqa: F821
    )
