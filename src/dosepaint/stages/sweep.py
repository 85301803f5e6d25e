"""Parameter sweeps over cohort-level parameters (``config/sweep.tsv``, one row per point, expanded with
Snakemake's ``Paramspace`` into ``results/sweeps/{point}/``).

Swept per point: ``de_mean_fraction`` (the DE GTV mean-dose target, × D_P), ``alpha_beta`` (Gy, fixed in the
TCP fit, so the model is refitted on the training split at each value) and ``sigma_scale`` (multiplies σ of
the cell-count scenario weights). The plans are not re-optimised: each held-out patient's delivered uniform
plan is kept, and the dose painting is the beam-free TCP-optimal redistribution (water-filling) at the swept
mean, which the beam plans reach within 0.02 pp of TCP on the default cohort (the ideal_de rows beside
the plans in metrics.tsv); so a sweep costs seconds per patient and point, and says how the headline
gain depends on the parameters, not how a deliverable plan would change.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import dwi
from .. import figures as fg
from .. import radiobiology as rb
from .. import robustness as rob
from ..cohort import SWEEP_COLUMNS
from ..io import files
from ..planning import evaluate as ev
from .heldout import check_heldout

log = logging.getLogger(__name__)


def run_patient(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """One held-out patient at one sweep point: TCP of the uniform plan and of the TCP-optimal DE at the
    swept mean, nominal and best/worst cell counts with the scaled σ.

    Inputs: ``split``, ``fit`` (the TCP model refitted at the point's α/β), ``sigma`` (cohort/rmse_sigma.json),
    ``uniform_dose``, ``cell_density``, ``rmse``, ``masks_dose``. ``params``: patient_id, point (dict of
    :data:`SWEEP_COLUMNS`), prescription_gy, n_fractions, gtv_lower, gtv_upper.
    """
    pid = params["patient_id"]
    fit = files.read_json(inputs["fit"])
    check_heldout([pid], split_path=inputs["split"], fit=fit)
    model = fit["model"]
    point = {k: float(params["point"][k]) for k in SWEEP_COLUMNS}
    if abs(model["alpha_beta"] - point["alpha_beta"]) > 1e-9:
        raise ValueError(f"the fit has alpha/beta {model['alpha_beta']}, the point {point['alpha_beta']}")
    alpha, beta = float(model["alpha"]), float(model["alpha"]) / float(model["alpha_beta"])
    n, dp = int(params["n_fractions"]), float(params["prescription_gy"])
    masks, grid = files.read_masks(inputs["masks_dose"], ["GTV"], pid=pid, needed_by="the sweep")
    g = masks["GTV"]
    dose, _ = files.read_array(inputs["uniform_dose"])
    rho, _ = files.read_array(inputs["cell_density"])
    rmse, _ = files.read_array(inputs["rmse"])
    clon = dwi.clonogens(
        np.where(g, rho, 0.0),
        voxel_volume_mm3=grid.voxel_volume,
        clonogenic_fraction=float(model["clonogenic_fraction"]),
    )[g]
    sig = files.read_json(inputs["sigma"])
    best, worst = rob.cell_count_weights(
        rmse[g], sigma=point["sigma_scale"] * float(sig["sigma"]), centre=float(sig["centre"])
    )
    de = rb.tcp_optimal_dose(
        clon,
        mean_dose=point["de_mean_fraction"] * dp,
        alpha=alpha,
        beta=beta,
        n_fractions=n,
        lower=float(params["gtv_lower"]) * dp,
        upper=float(params["gtv_upper"]) * dp,
    )
    row = {"patient_id": pid, **point, "alpha": alpha, "clonogenic_fraction": model["clonogenic_fraction"]}
    for plan, d in (("uniform", np.asarray(dose, float)[g]), ("ideal_de", de)):
        for scen, w in (("nominal", 1.0), ("best", best), ("worst", worst)):
            row[f"tcp_{plan}_{scen}"] = ev.tcp_metrics(clon * w, d, alpha=alpha, beta=beta, n_fractions=n)["tcp"]
    out = pd.DataFrame([row])
    files.write_tsv(out, outputs["row"])
    return out


def run_summary(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per point: mean ± SD over patients of TCP (uniform, ideal DE) and of the DE gain (pp), and the
    cell-count range of the gain; a figure of the gain against each swept parameter.
    """
    rows = pd.concat([files.read_tsv(p) for p in files.as_paths(inputs["rows"])], ignore_index=True)
    for scen in ("nominal", "best", "worst"):
        rows[f"gain_{scen}_pp"] = 100.0 * (rows[f"tcp_ideal_de_{scen}"] - rows[f"tcp_uniform_{scen}"])
    agg = {
        "n_patients": ("patient_id", "nunique"),
        "alpha": ("alpha", "first"),
        "tcp_uniform_mean_pct": ("tcp_uniform_nominal", lambda s: 100 * s.mean()),
        "tcp_de_mean_pct": ("tcp_ideal_de_nominal", lambda s: 100 * s.mean()),
        "gain_mean_pp": ("gain_nominal_pp", "mean"),
        "gain_sd_pp": ("gain_nominal_pp", "std"),
        "gain_worst_mean_pp": ("gain_worst_pp", "mean"),
        "gain_best_mean_pp": ("gain_best_pp", "mean"),
    }
    summary = rows.groupby(list(SWEEP_COLUMNS), sort=True).agg(**agg).reset_index()
    files.write_tsv(summary, outputs["summary"])
    files.write_tsv(rows, outputs["rows"])

    fig = fg.sweep_gain(summary, columns=SWEEP_COLUMNS, default={k: float(v) for k, v in params["default"].items()})
    with files.atomic_path(outputs["figure"]) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    fg.plt.close(fig)
    return summary
