"""TCP fit stage: the Poisson TCP model fitted on the training split only (docs/method.md §2).

Inputs, per training patient (lists in the order of ``params["patient_ids"]``): the delivered dose
``ingest/rtdose.nii.gz`` (Gy(RBE), dose grid), the cell density ``dwi/cell_density_dose.nii.gz``
(cells/mm³, dose grid) and ``ingest/masks_dose/`` (its GTV); and ``cohort/split.tsv`` for outcomes.

Outputs: ``cohort/tcp_fit.json`` (the model planning and statistics use, both estimators with bootstrap
CIs, AUC and Brier score on the training patients, and the IDs used) and ``cohort/tcp_fit_patients.tsv``
(per training patient: outcome, GTV clonogens at the fitted f_c, predicted TCP).

Leakage guard: every patient must be ``train`` in the split; the rule's inputs expand over training
patients only, and this stage refuses anything else.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .. import dwi
from .. import tcp_fit as tf
from ..errors import DosepaintInputError
from ..io import files

log = logging.getLogger(__name__)


def patient_dose(
    pid: str, rtdose, cell_density, masks_dose, *, alpha_beta: float, n_fractions: int, bin_gy: float
) -> tuple[tf.PatientDose, dict]:
    """One patient's GTV cells (f_c = 1) and delivered dose, binned for the fit, and a row of GTV
    figures (cells, volume, mean cell density, dose mean and minimum).
    """
    dose, grid = files.read_array(rtdose)
    rho, rgrid = files.read_array(cell_density)
    masks, mgrid = files.read_masks(masks_dose, ["GTV"], pid=pid, needed_by="the TCP fit")
    for path, g in ((cell_density, rgrid), (masks_dose, mgrid)):
        if not g.same_as(grid):
            raise DosepaintInputError(f"not on the delivered dose's grid {grid.shape}", patient=pid, path=path)
    gtv = masks["GTV"]
    # cells per voxel ρ·v (f_c = 1): f_c is what the fit estimates
    cells = dwi.clonogens(np.where(gtv, rho, 0.0), voxel_volume_mm3=grid.voxel_volume, clonogenic_fraction=1.0)
    if not np.any(cells > 0):
        raise DosepaintInputError("no cells in the GTV (empty cell-density map)", patient=pid, path=cell_density)
    d = np.asarray(dose, np.float64)[gtv]
    volume_mm3 = float(gtv.sum()) * grid.voxel_volume
    row = {
        "gtv_cells": float(cells.sum()),
        "gtv_cc": volume_mm3 / 1000.0,
        "gtv_cell_density_mean": float(cells.sum()) / volume_mm3,
        "gtv_dose_mean_gy": float(d.mean()),
        "gtv_dose_min_gy": float(d.min()),
    }
    return tf.PatientDose.from_arrays(cells[gtv], d, alpha_beta=alpha_beta, n_fractions=n_fractions, bin_gy=bin_gy), row


def patient_doses(
    ids, inputs: dict, split: pd.DataFrame, *, alpha_beta: float, n_fractions: int, bin_gy: float
) -> tuple[list, pd.DataFrame]:
    """:func:`patient_dose` of each patient of ``ids`` from the lists ``inputs["rtdose"]``,
    ``["cell_density"]``, ``["masks_dose"]`` (same order), and their table with the outcome from ``split``
    (indexed by patient_id): patient_id, event, local_control, then the GTV figures.
    """
    lists = {key: files.as_paths(inputs[key]) for key in ("rtdose", "cell_density", "masks_dose")}
    for key, paths in lists.items():
        if len(paths) != len(ids):
            raise ValueError(f"{len(paths)} {key} inputs for {len(ids)} patients")
    patients, rows = [], []
    for pid, rd, rho, masks in zip(ids, *lists.values()):
        p, row = patient_dose(pid, rd, rho, masks, alpha_beta=alpha_beta, n_fractions=n_fractions, bin_gy=bin_gy)
        patients.append(p)
        event = int(split.loc[pid, "event"])
        rows.append({"patient_id": pid, "event": event, "local_control": 1 - event, **row})
    return patients, pd.DataFrame(rows)


def _check_training(ids: list, split: pd.DataFrame, *, path) -> None:
    for pid in ids:
        if pid not in split.index or split.loc[pid, "split"] != "train":
            raise DosepaintInputError("the TCP fit reads training patients only; this one is not in the training "
                                      "split", patient=pid, path=path)  # fmt: skip


def _estimate(est: str, patients, y, table: pd.DataFrame, *, rng, n_boot: int, bounds: dict) -> dict:
    """One estimator's fit, bootstrap CIs and training-side AUC and Brier score (its predictions → table)."""
    f = tf.fit(patients, y, estimator=est, **bounds)
    pred = tf.predict(patients, alpha=f.alpha, log10_fc=f.log10_fc)
    table[f"tcp_{est}"] = pred
    boot = tf.bootstrap(patients, y, rng=rng, n_boot=n_boot, estimator=est, **bounds) if n_boot else None
    e = {
        "alpha": f.alpha, "log10_fc": f.log10_fc, "clonogenic_fraction": f.clonogenic_fraction,
        "objective": f.objective, "converged": f.success, "message": f.message,
        "alpha_ci95": None if boot is None else list(boot["alpha"]),
        "log10_fc_ci95": None if boot is None else list(boot["log10_fc"]),
        "train_auc": tf.auc(pred, y), "train_brier": tf.brier(pred, y), "train_mean_tcp": float(pred.mean()),
    }  # fmt: skip
    log.info("%s: alpha %.4f Gy^-1, log10 f_c %.2f, train AUC %.3f, Brier %.3f", est, f.alpha, f.log10_fc,
             e["train_auc"], e["train_brier"])  # fmt: skip
    return e


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Fit and write; ``params``: patient_ids, alpha_beta, n_fractions, estimator, alpha_bounds,
    log10_fc_bounds, bootstrap, seed, bin_gy (see ``config/README.md``, tcp_fit).
    """
    ids = list(params["patient_ids"])
    split = files.read_tsv(inputs["split"]).set_index("patient_id")
    _check_training(ids, split, path=inputs["split"])
    ab, n, bin_gy = float(params["alpha_beta"]), int(params["n_fractions"]), float(params["bin_gy"])
    patients, table = patient_doses(ids, inputs, split, alpha_beta=ab, n_fractions=n, bin_gy=bin_gy)
    y = table["local_control"].to_numpy(float)
    if y.min() == y.max():
        raise DosepaintInputError(
            "every training patient has the same outcome: the TCP model cannot be fitted", path=inputs["split"]
        )
    bounds: dict[str, Any] = {
        "alpha_bounds": tuple(params["alpha_bounds"]),
        "log10_fc_bounds": tuple(params["log10_fc_bounds"]),
    }
    rng = np.random.default_rng(params["seed"])  # one stream, drawn by the estimators in turn
    estimates = {est: _estimate(est, patients, y, table, rng=rng, n_boot=int(params["bootstrap"]), bounds=bounds)
                 for est in tf.ESTIMATORS}  # fmt: skip
    profile = tf.profile_alpha(patients, y, **bounds)  # the Bernoulli likelihood's profile of α
    estimates["maximum_likelihood"]["alpha_ci95_profile"] = profile["ci"]
    for e in estimates.values():
        e["identifiability_flags"] = tf.identifiability_flags(e, **bounds)
    open_sides = [side for side, ok in zip(("below", "above"), profile["closed_by_data"]) if not ok]
    if open_sides:  # the interval ends where f_c meets its bounds, or at α's own: α is not identified
        estimates["maximum_likelihood"]["identifiability_flags"].append(
            "profile-likelihood 95 % interval of alpha not closed by the outcomes "
            + " and ".join(open_sides)
            + " (held by the bounds of alpha or f_c)"
        )
    chosen = estimates[params["estimator"]]
    flags = chosen["identifiability_flags"]
    if flags:
        log.warning("DEGENERATE TCP MODEL (%s): %s; planning uses it, the report says so", params["estimator"],
                    "; ".join(flags))  # fmt: skip
    table["clonogens"] = table["gtv_cells"] * chosen["clonogenic_fraction"]
    model = {"estimator": params["estimator"], "alpha": chosen["alpha"], "alpha_beta": ab,
             "beta": chosen["alpha"] / ab, "clonogenic_fraction": chosen["clonogenic_fraction"],
             "n_fractions_delivered": n}  # fmt: skip
    result = {"model": model, "estimates": estimates, "profile_likelihood_alpha": profile,
              "bootstrap": {"n": int(params["bootstrap"]), "seed": params["seed"], "level": 0.95},
              "degenerate": bool(flags), "warnings": flags, "train_ids": ids, "n_train": len(ids),
              "n_local_control": int(y.sum()), "bounds": bounds, "bin_gy": bin_gy}  # fmt: skip
    files.write_tsv(table, outputs["patients"])
    files.write_json(result, outputs["fit"])
    return result
