"""Figures stage: the paper's figures from the held-out patients' plans, robustness and survival.

Inputs (lists in the order of ``params["patient_ids"]``, the held-out patients): ``metrics``,
``uniform_dvh``, ``de_dvh``, ``uniform_dose``, ``de_dose``, ``de_letd``, ``cell_density``, ``rmse``,
``masks_dose``, ``robustness_qc``; cohort tables ``cell_count_tcp``, ``tertiles``, ``km``, ``survival``
(JSON), and for the calibration plot ``train`` (cohort/tcp_fit_patients.tsv), ``test``
(cohort/tcp_heldout.tsv), ``fit`` and optionally ``recovery`` (synthetic truth per patient).
Outputs: ``{name}_png`` and ``{name}_pdf`` for each figure name (fig1a_oar, fig1b_dvh, fig1c_slices,
fig2a_tcp, fig2b_tertiles, fig3_scenarios, km, calibration).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import dwi
from .. import figures as fg
from .. import robustness as rob
from ..io import files
from .heldout import check_heldout

log = logging.getLogger(__name__)


def representative(metrics: pd.DataFrame, choice: str) -> str:
    """``choice`` itself, or for ``auto`` the patient whose DE TCP gain over uniform is the median one
    (the lower middle for an even count).
    """
    if choice != "auto":
        if choice not in set(metrics["patient_id"]):
            raise ValueError(f"statistics.representative_patient {choice!r} is not a held-out patient with plans")
        return choice
    t = metrics.pivot(index="patient_id", columns="plan", values="tcp")
    gain = (t["de"] - t["uniform"]).sort_values()
    return str(gain.index[(len(gain) - 1) // 2])


def _save(fig, outputs, name):
    with files.atomic_path(outputs[f"{name}_png"]) as png, files.atomic_path(outputs[f"{name}_pdf"]) as pdf:
        fg.save(fig, png, pdf)


def _representative_data(inputs: dict, ids: list, pid: str) -> dict:
    """The representative patient's files, masks, grid, clonogens and TCP model."""
    k = ids.index(pid)
    keys = ("uniform_dose", "de_dose", "de_letd", "cell_density", "rmse", "masks_dose", "robustness_qc")
    pick = {key: files.as_paths(inputs[key])[k] for key in keys}
    masks, grid = files.read_masks(pick["masks_dose"], ["GTV", "CTV_HD"], pid=pid, needed_by="the figures")
    rho, _ = files.read_array(pick["cell_density"])
    qc = files.read_json(pick["robustness_qc"])
    tcp = qc["tcp_model"]
    alpha = float(tcp["alpha"])
    cells = dwi.clonogens(np.nan_to_num(rho), voxel_volume_mm3=grid.voxel_volume,
                          clonogenic_fraction=float(tcp["clonogenic_fraction"]))  # fmt: skip
    return {"pick": pick, "masks": masks, "grid": grid, "qc": qc, "alpha": alpha,
            "beta": alpha / float(tcp["alpha_beta"]), "clon": np.where(masks["GTV"], cells, 0.0),
            "de_dose": files.read_array(pick["de_dose"])[0]}  # fmt: skip


def _slices_figure(r: dict, pid: str):
    """Figure 1c: uniform and DE dose, DE LETd and clonogens on the representative patient's slices."""
    return fg.representative_slices(
        dose_uniform=files.read_array(r["pick"]["uniform_dose"])[0], dose_de=r["de_dose"],
        letd_de=files.read_array(r["pick"]["de_letd"])[0], cells=r["clon"], gtv=r["masks"]["GTV"],
        ctv_hd=r["masks"]["CTV_HD"], spacing=r["grid"].spacing, patient=pid,
    )  # fmt: skip


def _scenarios_figure(r: dict, pid: str, *, n_fractions: int):
    """Figure 3: ΔTCP maps of the DE plan under the nominal, best and worst cell counts."""
    rmse, _ = files.read_array(r["pick"]["rmse"])
    cell = r["qc"]["cell_count"]
    best, worst = rob.cell_count_weights(rmse, sigma=float(cell["sigma"]), centre=float(cell["centre"]))
    return fg.scenario_maps(
        dose=r["de_dose"], cells=r["clon"], weights={"nominal": np.ones_like(best), "best": best, "worst": worst},
        alpha=r["alpha"], beta=r["beta"], n_fractions=n_fractions, gtv=r["masks"]["GTV"],
        spacing=r["grid"].spacing, patient=pid,
    )  # fmt: skip


def _calibration_tables(inputs: dict) -> dict:
    """Predicted TCP and local control of the training and held-out patients (and the true TCP if known)."""
    est = files.read_json(inputs["fit"])["model"]["estimator"]
    tables = {}
    for split in ("train", "test"):
        t = files.read_tsv(inputs[split])
        tables[split] = pd.DataFrame(
            {"patient_id": t["patient_id"], "tcp_predicted": t[f"tcp_{est}"], "local_control": t["local_control"]}
        )
    recovery = files.as_paths(inputs.get("recovery") or [])
    if recovery:
        truth = files.read_tsv(recovery[0]).set_index("patient_id")["tcp_true"]
        for t in tables.values():
            t["tcp_true"] = t["patient_id"].map(truth)
    return tables


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Every figure; ``params``: patient_ids, oar_limits_gy, representative, n_fractions."""
    ids = list(params["patient_ids"])
    check_heldout(ids, split_path=inputs["split"])
    metrics = pd.concat([files.read_tsv(p) for p in files.as_paths(inputs["metrics"])], ignore_index=True)
    metrics = metrics[metrics["plan"].isin(["uniform", "de", "dr"])]
    _save(fg.oar_boxplots(metrics, limits=params["oar_limits_gy"]), outputs, "fig1a_oar")
    dvhs = {plan: [files.read_tsv(p) for p in files.as_paths(inputs[f"{plan}_dvh"])] for plan in ("uniform", "de")}
    _save(fg.mean_dvh(dvhs), outputs, "fig1b_dvh")
    pid = representative(metrics, params["representative"])
    r = _representative_data(inputs, ids, pid)
    _save(_slices_figure(r, pid), outputs, "fig1c_slices")
    _save(fg.tcp_per_patient(files.read_tsv(inputs["cell_count_tcp"])), outputs, "fig2a_tcp")
    _save(fg.tertile_bars(files.read_tsv(inputs["tertiles"])), outputs, "fig2b_tertiles")
    _save(_scenarios_figure(r, pid, n_fractions=int(params["n_fractions"])), outputs, "fig3_scenarios")
    surv = files.read_json(inputs["survival"])
    km = fg.kaplan_meier_plot(files.read_tsv(inputs["km"]), logrank=surv["logrank"], threshold=surv["tcp_threshold"],
                              population=surv["population"])  # fmt: skip
    _save(km, outputs, "km")
    _save(fg.calibration_plot(_calibration_tables(inputs)), outputs, "calibration")
    log.info("figures written; representative patient %s", pid)
    return {"representative": pid}
