"""Figures stage: the paper's figures from the held-out patients' plans, robustness and survival.

Inputs (lists in the order of ``params["patient_ids"]``, the held-out patients): ``metrics``,
``uniform_dvh``, ``de_dvh``, ``uniform_dose``, ``de_dose``, ``de_letd``, ``cell_density``, ``rmse``,
``masks_dose``, ``robustness_qc``, and for the maps on the anatomy ``ct``, ``masks_ct``, ``dr_dose``,
``de_worst_dose``; cohort tables ``cell_count_tcp``, ``tertiles``, ``km``, ``survival``
(JSON), and for the calibration plot ``train`` (cohort/tcp_fit_patients.tsv), ``test``
(cohort/tcp_heldout.tsv), ``fit`` and optionally ``recovery`` (synthetic truth per patient).
Outputs: ``{name}_png`` and ``{name}_pdf`` for each figure name (fig1a_oar, fig1b_dvh, fig1c_slices,
fig2a_tcp, fig2b_tertiles, fig3_scenarios, fig3b_worst_case, km, calibration).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .. import dwi
from .. import figures as fg
from .. import figures_anatomy as fa
from .. import robustness as rob
from ..geometry import resample
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
    keys = ("uniform_dose", "de_dose", "dr_dose", "de_letd", "cell_density", "rmse", "masks_dose", "robustness_qc",
            "ct", "masks_ct", "de_worst_dose")  # fmt: skip
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


class _OnCt:
    """The representative patient's CT reoriented to LPS (display orientation), and volumes moved onto it."""

    def __init__(self, r: dict, *, pid: str):
        self.image = sitk.DICOMOrient(files.read_image(r["pick"]["ct"]), "LPS")
        self.ct = sitk.GetArrayFromImage(self.image).astype(np.float32)
        self.spacing = self.image.GetSpacing()
        self.dose_grid = r["grid"]
        names = [n for n in fa.CONTOUR_COLOURS if (Path(r["pick"]["masks_ct"]) / f"{n}.nii.gz").exists()]
        masks, grid = files.read_masks(r["pick"]["masks_ct"], names, pid=pid, needed_by="the figures")
        self.masks = {n: self.move(m, grid, "nearest", 0.0) > 0.5 for n, m in masks.items()}
        self.de_dose = self.move(r["de_dose"])  # on all three figures

    def move(self, array, grid=None, interpolator: str = "linear", default: float = 0.0) -> np.ndarray:
        """``array`` (on ``grid``, the dose grid by default) resampled onto the LPS CT."""
        src = (grid or self.dose_grid).image(np.asarray(array, np.float32))
        return sitk.GetArrayFromImage(resample(src, self.image, interpolator=interpolator, default=default))


def _slices_figure(r: dict, pid: str, on_ct: _OnCt, *, prescription_gy: float):
    """Figure 1c: each plan's dose, DE − uniform, the DE LETd and the clonogen density over the CT."""
    doses = {p: on_ct.move(files.read_array(r["pick"][f"{p}_dose"])[0]) for p in ("uniform", "dr")}
    doses["de"] = on_ct.de_dose
    density = np.where(r["masks"]["GTV"], r["clon"] / r["grid"].voxel_volume, np.nan)
    letd = files.read_array(r["pick"]["de_letd"])[0]
    return fa.slices_on_ct(ct=on_ct.ct, doses=doses, letd=on_ct.move(letd, None, "nearest", np.nan),
                           clonogen_density=on_ct.move(density, None, "nearest", np.nan), masks=on_ct.masks,
                           prescription_gy=prescription_gy, spacing=on_ct.spacing, patient=pid)  # fmt: skip


def _worst_figure(r: dict, pid: str, on_ct: _OnCt, *, prescription_gy: float):
    """The DE plan's nominal and voxel-wise worst-case dose over the CT (the robustness stage evaluates a
    subset of the voxels and writes 0 elsewhere: shown blank).
    """
    worst = files.read_array(r["pick"]["de_worst_dose"])[0]
    worst = on_ct.move(np.where(worst > 0, worst, np.nan), None, "nearest", np.nan)
    return fa.worst_case_on_ct(ct=on_ct.ct, nominal=on_ct.de_dose, worst=worst, masks=on_ct.masks,
                               prescription_gy=prescription_gy, spacing=on_ct.spacing, patient=pid)  # fmt: skip


def _scenarios_figure(r: dict, pid: str, on_ct: _OnCt, *, n_fractions: int, prescription_gy: float):
    """Figure 3: clonogens and voxel TCP of the DE plan under the nominal, best and worst cell counts."""
    rmse, _ = files.read_array(r["pick"]["rmse"])
    cell = r["qc"]["cell_count"]
    best, worst = rob.cell_count_weights(rmse, sigma=float(cell["sigma"]), centre=float(cell["centre"]))
    weights = {"nominal": np.ones_like(best), "best": best, "worst": worst}
    maps = fg.scenario_volumes(dose=r["de_dose"], cells=r["clon"], weights=weights, alpha=r["alpha"], beta=r["beta"],
                               n_fractions=n_fractions, gtv=r["masks"]["GTV"])  # fmt: skip
    moved = {s: tuple(on_ct.move(v, None, "nearest", np.nan) for v in pair) for s, pair in maps.items()}
    gtv_w = {s: on_ct.move(np.where(r["masks"]["GTV"], w, np.nan), None, "nearest", np.nan) for s, w in weights.items()}
    return fa.scenarios_on_ct(ct=on_ct.ct, dose=on_ct.de_dose, weights=gtv_w, maps=moved, masks=on_ct.masks,
                              prescription_gy=prescription_gy, spacing=on_ct.spacing, patient=pid)  # fmt: skip


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
    on_ct, dp = _OnCt(r, pid=pid), float(params["prescription_gy"])
    _save(_slices_figure(r, pid, on_ct, prescription_gy=dp), outputs, "fig1c_slices")
    _save(_worst_figure(r, pid, on_ct, prescription_gy=dp), outputs, "fig3b_worst_case")
    _save(fg.tcp_per_patient(files.read_tsv(inputs["cell_count_tcp"])), outputs, "fig2a_tcp")
    _save(fg.tertile_bars(files.read_tsv(inputs["tertiles"])), outputs, "fig2b_tertiles")
    _save(_scenarios_figure(r, pid, on_ct, n_fractions=int(params["n_fractions"]), prescription_gy=dp), outputs,
          "fig3_scenarios")  # fmt: skip
    surv = files.read_json(inputs["survival"])
    km = fg.kaplan_meier_plot(files.read_tsv(inputs["km"]), logrank=surv["logrank"], threshold=surv["tcp_threshold"],
                              population=surv["population"])  # fmt: skip
    _save(km, outputs, "km")
    _save(fg.calibration_plot(_calibration_tables(inputs)), outputs, "calibration")
    log.info("figures written; representative patient %s", pid)
    return {"representative": pid}
