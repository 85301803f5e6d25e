"""Robustness stage (docs/method.md §3, §5): cell-count scenarios and physical (setup × range) scenarios.

Rules and their stage functions:

``rmse_sigma`` → :func:`run_sigma` (cohort): centre and σ of the cell-count scenario weights from
the DWI-match RMSE in the GTVs of the training patients only (``cohort/rmse_sigma.json``).

``scenario_dose`` → :func:`run_scenarios` (patient: its recalculated scenarios in one job,
``robustness.scenario_jobs: patient``) or :func:`run_scenario` (patient × scenario, ``scenario``): the
plans' doses in each physical scenario, by pyRadPlan forward calculation of each plan's spot weights
with the isocentre moved and the stopping powers scaled (:meth:`PyRadPlanEngine.forward_scenarios`);
the nominal scenario is the plan stage's dose. ``scenario_shift`` → :func:`run_shift` (patient): the
labelled fast approximation of setup errors, the scenario of the same range error moved rigidly
(``robustness.setup_method: rigid_shift``), all of a patient's shifts in one job. Both write
``{scenario}.npz``: per plan the total course dose (Gy(RBE), float32) on the evaluation voxels (targets
and OARs expanded by the largest shift and a voxel).

``robustness`` → :func:`run_patient`: per-scenario DVH metrics, TCP and goals
(``scenario_metrics.tsv``), DVH bands (``dvh_bands.tsv``), voxel-wise worst-case dose per plan
(``{plan}_worst_dose.nii.gz``), TCP under nominal/best/worst cell counts (``cell_count_tcp.tsv``),
ΔTCP maps of DE and DR against uniform in both forms of Eq. 5 (``{plan}_dtcp.nii.gz``,
``{plan}_dlntcp.nii.gz``), and the GTV voxel arrays that the cohort tertiles need
(``voxels.npz``).

``robustness_summary`` → :func:`run_summary` (cohort, held-out patients): tertile cut-offs of the
pooled held-out GTV cell counts, ΔTCP by tertile, the TCP range under cell-count uncertainty and the
worst-case GTV D95 over the physical scenarios.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import dwi
from .. import robustness as rob
from ..errors import DosepaintInputError
from ..geometry import Grid
from ..io import files
from ..io.records import read_tcp_model as tcp_model
from ..layout import PLAN_NAMES
from ..planning import evaluate as ev
from ..planning.engine import PyRadPlanEngine
from ..planning.influence import DoseInfluence
from ..planning.plans import course_doses
from ..structures import PLANNING_STRUCTURES as STRUCTURES
from ..structures import expand

log = logging.getLogger(__name__)

TARGETS = ("GTV", "CTV_HD", "CTV_LD")


# -- σ of the cell-count weights -----------------------------------------------------------------------


def _gtv_rmse(rmse_path, masks_dir, *, pid: str) -> np.ndarray:
    rmse, grid = files.read_array(rmse_path)
    masks, mgrid = files.read_masks(masks_dir, ["GTV"], pid=pid, needed_by="robustness", required=("GTV",))
    if tuple(grid.shape) != tuple(mgrid.shape):
        raise DosepaintInputError("RMSE map is not on the dose grid", patient=pid, path=rmse_path)
    v = rmse[masks["GTV"]]
    return v[np.isfinite(v)]


def run_sigma(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """σ (and centre) of the cell-count weights from the training patients' GTV RMSE values."""
    pids = list(params["patient_ids"])
    rmse, masks = files.as_paths(inputs["rmse"]), files.as_paths(inputs["masks_dose"])
    if not (len(pids) == len(rmse) == len(masks)):
        raise ValueError("one RMSE map and one masks folder per training patient are needed")
    values = np.concatenate([_gtv_rmse(r, m, pid=p) for p, r, m in zip(pids, rmse, masks)])
    centre, sigma = rob.rmse_spread(values, centring=params["centring"])
    out = {
        "centring": params["centring"],
        "centre": centre,
        "sigma": sigma,
        "n_voxels": int(values.size),
        "patient_ids": pids,
        "scope": "training GTV voxels, pooled",
    }
    files.write_json(out, outputs["sigma"])
    log.info(
        "σ of the GTV RMSE over %d training patients (%d voxels): %.4g (centre %.4g)",
        len(pids),
        values.size,
        sigma,
        centre,
    )
    return out


# -- physical scenarios ----------------------------------------------------------------------------------


def eval_mask(masks: dict, grid, *, margin_mm: float) -> np.ndarray:
    """Voxels whose scenario doses are kept: targets and OARs expanded by ``margin_mm``, in BODY."""
    m = np.zeros(grid.shape, bool)
    for name, mk in masks.items():
        if name != "BODY":
            m |= mk
    return expand(m, grid, margin_mm=margin_mm) & masks["BODY"]


def _margin_mm(params: dict, grid) -> float:
    """The evaluation voxels' margin around the structures: the largest setup shift and a voxel where the
    setup scenarios are rigid shifts of these doses; none where every scenario is recalculated (its dose
    is computed where it is read: a range scenario of SYN003 on the 5 mm grid, 63 k → 40 k voxels,
    79 → 69 CPU s, the same doses there).
    """
    if params["setup_method"] == "recalculate":
        return 0.0
    shifts = np.asarray(params["setup_shifts_mm"], float).reshape(-1, 3)
    return float(np.abs(shifts).max(initial=0.0) + max(grid.spacing))


def _read_plan_masks(inputs, params, pid):
    names = list(dict.fromkeys([*STRUCTURES, *params["oar_limits_gy"]]))
    return files.read_masks(inputs["masks_dose"], names, pid=pid, needed_by="robustness", required=STRUCTURES)


def run_scenario(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Doses of the plans in one physical scenario (``params["scenario"]``, a scenario name) into
    ``outputs["doses"]``: :func:`run_scenarios` for one scenario (``robustness.scenario_jobs: scenario``).
    """
    one = {k: v for k, v in params.items() if k != "scenario"} | {"scenarios": [params["scenario"]]}
    return run_scenarios(inputs, {**outputs, "doses": [outputs["doses"]]}, params=one)[params["scenario"]]


def run_scenarios(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Doses of the plans in each physical scenario of ``params["scenarios"]`` (names), one file each
    (``outputs["doses"]``, in that order).

    Nominal: the plan stage's doses.  Otherwise a pyRadPlan forward calculation of both phases of
    every plan (phase 1 is shared) with the isocentre shift and the stopping-power scale.  A patient's
    scenarios in one job (``robustness.scenario_jobs: patient``) read the inputs, start pyRadPlan and
    place the spots once (:meth:`PyRadPlanEngine.forward_scenarios`), the same doses as one job each.
    """
    pid, names = params["patient_id"], list(params["scenarios"])
    targets = files.as_paths(outputs["doses"])
    if len(names) != len(targets):
        raise ValueError(f"{len(names)} scenario names for {len(targets)} output files")
    scens = [rob.Scenario.from_name(n) for n in names]
    masks, grid = _read_plan_masks(inputs, params, pid)
    keep = eval_mask(masks, grid, margin_mm=_margin_mm(params, grid))
    voxels = np.flatnonzero(keep.ravel())
    recalculated = [s for s in scens if not s.nominal]
    # the recalculation's inputs read and checked before any file is written; its doses come scenario by scenario
    doses_of = _recalculated_doses(inputs, keep, recalculated, params=params, pid=pid) if recalculated else iter(())
    out, t0 = {}, time.perf_counter()
    for scen, target in zip(scens, targets):
        if scen.nominal:
            doses, method = _nominal_doses(inputs, grid, voxels, pid=pid), "nominal"
        else:
            doses, method = {p: d.ravel()[voxels] for p, d in next(doses_of).items()}, "recalculated"
        _write_scenario(target, voxels, grid, doses, method=method, scenario=scen.name)
        out[scen.name] = {"method": method, "seconds": time.perf_counter() - t0}
        log.info("%s %s: %s in %.1f s", pid, scen.name, method, out[scen.name]["seconds"])
        t0 = time.perf_counter()
    return out


def _nominal_doses(inputs: dict, grid, voxels, *, pid: str) -> dict:
    """The plan stage's doses on the evaluation voxels."""
    doses = {}
    for plan in PLAN_NAMES:
        d, dgrid = files.read_array(inputs[f"{plan}_dose"])
        if tuple(dgrid.shape) != tuple(grid.shape):
            raise DosepaintInputError("plan dose is not on the dose grid", patient=pid, path=inputs[f"{plan}_dose"])
        doses[plan] = d.ravel()[voxels]
    return doses


def _plan_weights(inputs: dict, inf: DoseInfluence, *, pid: str) -> dict:
    """Each plan's spot weights, checked against the cached dose influence."""
    weights = {plan: files.read_spot_weights(inputs[f"{plan}_weights"]) for plan in PLAN_NAMES}
    for plan, w in weights.items():
        if w["phase1"].size != inf.n_spots or w["phase2"].size != inf.n_spots:
            raise DosepaintInputError(
                f"{plan} spot weights do not match the cached dose influence "
                f"({w['phase1'].size} vs {inf.n_spots} spots)",
                patient=pid,
                path=inputs[f"{plan}_weights"],
            )
    return weights


def _recalculated_doses(inputs: dict, keep: np.ndarray, scens: list, *, params: dict, pid: str):
    """An iterator over ``scens`` of each plan's course dose (Gy(RBE), the whole grid); the inputs are
    read and checked before it is returned.

    Every distinct weight vector (DE/DR keep the uniform phase 1) from one pyRadPlan calculation per
    beam and scenario.
    """
    inf = DoseInfluence.load(inputs["influence"], matrices=False)
    ct = files.read_image(inputs["ct_dose"])
    weights = _plan_weights(inputs, inf, pid=pid)
    vectors, index = [], {}  # type: list, dict
    for plan, w in weights.items():
        for phase in ("phase1", "phase2"):
            j = next((i for i, v in enumerate(vectors) if np.array_equal(v, w[phase])), None)
            if j is None:
                vectors.append(w[phase])
                j = len(vectors) - 1
            index[plan, phase] = j
    rbe = float(params["constant_rbe"])
    engine = PyRadPlanEngine.from_influence(inf)
    pairs = [(s.shift_mm, s.range_scale) for s in scens]

    def course(fwd, plan, w):
        low, high = (
            course_doses(fwd[index[plan, phase]], inf, n_fx=w[n_key], constant_rbe=rbe)["rbe_total"]
            for phase, n_key in (("phase1", "n_ld"), ("phase2", "n_hd"))
        )
        return low + high

    return (
        {plan: course(fwd, plan, w) for plan, w in weights.items()}
        for fwd in engine.forward_scenarios(ct, inf, vectors, body=keep, scenarios=pairs)
    )


def _write_scenario(path, voxels, grid, doses, *, method, scenario):
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            voxels=voxels.astype(np.int64),
            grid_shape=np.asarray(grid.shape),
            method=method,
            scenario=scenario,
            **{f"dose_{k}": np.asarray(v, np.float32) for k, v in doses.items()},
        )


def _read_scenario(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {
            "voxels": z["voxels"],
            "grid_shape": tuple(int(v) for v in z["grid_shape"]),
            "method": str(z["method"]),
            "scenario": str(z["scenario"]),
            "doses": {k[5:]: z[k].astype(np.float64) for k in z.files if k.startswith("dose_")},
        }


def run_shift(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """A patient's setup scenarios as rigid shifts of the same-range scenarios' doses (labelled
    approximation).

    ``inputs``: ``bases`` (the zero-shift scenario files, any order), ``ct_dose``; ``outputs``:
    ``doses``, one file per name of ``params["scenarios"]``, in that order.  One job per patient, not
    per scenario: a shift takes milliseconds, a job's start seconds.
    """
    pid = params["patient_id"]
    names = list(params["scenarios"])
    targets = files.as_paths(outputs["doses"])
    if len(names) != len(targets):
        raise ValueError(f"{len(names)} scenario names for {len(targets)} output files")
    _, grid = files.read_array(inputs["ct_dose"])  # the dose grid's geometry
    bases = {}
    for path in files.as_paths(inputs["bases"]):
        b = _read_scenario(path)
        if tuple(grid.shape) != tuple(b["grid_shape"]):
            raise DosepaintInputError("scenario doses are not on the dose grid", patient=pid, path=path)
        bases[b["scenario"]] = b
    shifts = {}
    for name, target in zip(names, targets):
        scen = rob.Scenario.from_name(name)
        base_name = scen.base().name
        if base_name not in bases:
            raise DosepaintInputError(
                f"no doses of scenario {base_name} to shift for {name}", patient=pid, path=inputs["bases"]
            )
        base = bases[base_name]
        vox = rob.shift_to_voxels(scen.shift_mm, direction=grid.matrix, spacing_zyx=tuple(grid.spacing)[::-1])
        doses = {
            plan: rob.rigid_shift(_full(d, base["voxels"], grid), vox).ravel()[base["voxels"]]
            for plan, d in base["doses"].items()
        }
        _write_scenario(target, base["voxels"], grid, doses, method="rigid_shift", scenario=scen.name)
        shifts[name] = vox.tolist()
    return {"method": "rigid_shift", "shift_vox": shifts}


# -- per patient -------------------------------------------------------------------------------------------


@dataclass
class _Gtv:
    """A held-out patient's GTV biology: cells and clonogens per GTV voxel, RMSE, TCP model parameters."""

    masks: dict
    grid: Grid
    cells: np.ndarray
    clon: np.ndarray
    rmse: np.ndarray
    tcp: dict
    kw: dict
    quantile_cells: dict


def _read_gtv(inputs: dict, params: dict, pid: str) -> _Gtv:
    tcp = tcp_model(inputs, params["tcp"])
    alpha = float(tcp["alpha"])
    kw = {"alpha": alpha, "beta": alpha / float(tcp["alpha_beta"]), "n_fractions": int(params["n_fractions"])}
    masks, grid = _read_plan_masks(inputs, params, pid)
    rho, rgrid = files.read_array(inputs["cell_density"])
    rmse, egrid = files.read_array(inputs["rmse"])
    if tuple(rgrid.shape) != tuple(grid.shape) or tuple(egrid.shape) != tuple(grid.shape):
        raise DosepaintInputError("cell density or RMSE is not on the dose grid", patient=pid,
                                  path=inputs["cell_density"])  # fmt: skip
    g = masks["GTV"]
    cells = dwi.clonogens(rho[g], voxel_volume_mm3=grid.voxel_volume, clonogenic_fraction=1.0)  # cells per voxel
    clon = float(tcp["clonogenic_fraction"]) * cells
    return _Gtv(masks, grid, cells, clon, rmse[g], tcp, kw, _quantile_cells(inputs, g, grid))


def _quantile_cells(inputs: dict, g, grid: Grid) -> dict:
    """Cells per GTV voxel at the posterior's interval ends (docs/method.md §3); none without them (the
    ADC-lookup and signal-match methods). A GTV voxel without a density counts 0 cells, as in the
    nominal count.
    """
    out = {}
    for name, key in (("posterior_lo", "cell_density_lo"), ("posterior_hi", "cell_density_hi")):
        if key not in inputs:
            return {}
        rho = files.read_array(inputs[key])[0][g]
        if not np.isfinite(rho).any():
            return {}
        out[name] = dwi.clonogens(rho, voxel_volume_mm3=grid.voxel_volume, clonogenic_fraction=1.0)
    return out


def _read_scenarios(inputs: dict, params: dict, pid: str, pt: _Gtv) -> tuple[list, np.ndarray, dict]:
    """The scenario doses (checked against their names), the evaluation voxels and the structures on them."""
    paths = files.as_paths(inputs["scenarios"])
    scen = [_read_scenario(p) for p in paths]
    for path, s, name in zip(paths, scen, list(params["scenarios"]), strict=True):
        if s["scenario"] != name:
            raise DosepaintInputError(f"scenario file holds {s['scenario']!r}, expected {name!r}", patient=pid,
                                      path=path)  # fmt: skip
    voxels = scen[0]["voxels"]
    pos = np.full(int(np.prod(pt.grid.shape)), -1, np.int64)
    pos[voxels] = np.arange(voxels.size)
    structs = {s: m for s, m in pt.masks.items() if s != "BODY" and m.any()}
    for s, m in structs.items():
        if np.any(pos[np.flatnonzero(m.ravel())] < 0):
            raise DosepaintInputError(
                f"{s} is not inside the scenario evaluation voxels (masks changed after the scenario doses were "
                "computed?)",
                patient=pid,
                path=paths[0],
            )
    return scen, pos, structs


def _scenario_rows(plan: str, stack, scen: list, pt: _Gtv, structs: dict, *, params: dict, pid: str) -> list:
    """One metrics row per scenario of a plan: DVH metrics, TCP and clinical goals met."""
    dp, voxels, rows = float(params["prescription_gy"]), scen[0]["voxels"], []
    for k, s in enumerate(scen):
        dose = _full(stack[k], voxels, pt.grid)
        metrics = {f"{st}_{key}": v for st, m in structs.items() for key, v in ev.dvh_metrics(dose, m).items()}
        goals = ev.clinical_goals(metrics, prescription_gy=dp, oar_limits=params["oar_limits_gy"],
                                  escalated=plan in ("de", "dr"))  # fmt: skip
        rows.append({"patient_id": pid, "plan": plan, "scenario": s["scenario"], "method": s["method"], **metrics,
                     "tcp": ev.tcp_metrics(pt.clon, dose[pt.masks["GTV"]], **pt.kw)["tcp"],
                     "goals_met": int(sum(goals.values())), "goals_total": len(goals)})  # fmt: skip
    return rows


def _dvh_bands(plan: str, stack, voxels, pos, pt: _Gtv, structs: dict, *, bins) -> list:
    """Per structure, the band of the scenarios' DVHs and the nominal DVH (% volume)."""
    nominal_dose = _full(stack[0], voxels, pt.grid)
    bands = []
    for st, m in structs.items():
        lo, hi = rob.dvh_band(stack[:, pos[np.flatnonzero(m.ravel())]], bins=bins)
        bands.append(pd.DataFrame({"plan": plan, "structure": st, "dose_gy": bins, "volume_min_pct": lo,
                                   "volume_max_pct": hi,
                                   "volume_nominal_pct": ev.dvh_curve(nominal_dose, m, bins=bins)}))  # fmt: skip
    return bands


def _physical_scenarios(scen, pos, structs, pt: _Gtv, outputs: dict, *, params: dict, pid: str) -> pd.DataFrame:
    """Scenario metrics and DVH bands of every plan, and its voxel-wise worst-case dose, written."""
    voxels, rows, bands = scen[0]["voxels"], [], []
    bins = ev.dvh_bins(prescription_gy=float(params["prescription_gy"]), bin_gy=params["dvh_bin_gy"])
    target_any = np.zeros(voxels.size, bool)
    for t in TARGETS:
        target_any |= pt.masks[t].ravel()[voxels]
    for plan in PLAN_NAMES:
        stack = np.stack([s["doses"][plan] for s in scen])  # (n_scen, n_eval)
        rows += _scenario_rows(plan, stack, scen, pt, structs, params=params, pid=pid)
        bands += _dvh_bands(plan, stack, voxels, pos, pt, structs, bins=bins)
        worst = _full(rob.worst_case_dose(stack, target_any), voxels, pt.grid)
        files.write_array(np.where(pt.masks["BODY"], worst, 0.0), pt.grid, outputs[f"{plan}_worst_dose"])
    table = pd.DataFrame(rows)
    files.write_tsv(table, outputs["scenario_metrics"])
    files.write_tsv(pd.concat(bands, ignore_index=True), outputs["dvh_bands"])
    return table


def _cell_count_tcp(nominal: dict, pt: _Gtv, inputs: dict, outputs: dict, *, params: dict, pid: str) -> dict:
    """TCP of each plan's nominal dose with the nominal, best and worst cell counts; the σ record."""
    if params["sigma_scope"] == "patient":
        centre, sigma = rob.rmse_spread(pt.rmse, centring=params["centring"])
    else:
        sig = files.read_json(inputs["sigma"])
        centre, sigma = float(sig["centre"]), float(sig["sigma"])
    best, worst = rob.cell_count_weights(pt.rmse, sigma=sigma, centre=centre)
    fc = float(pt.tcp["clonogenic_fraction"])
    counts = {"nominal": pt.clon, "best": pt.clon * best, "worst": pt.clon * worst,
              **{name: fc * cells for name, cells in pt.quantile_cells.items()}}  # fmt: skip
    cc = [
        {"patient_id": pid, "plan": plan, "cell_count": name, "tcp": ev.tcp_metrics(n, nominal[plan], **pt.kw)["tcp"]}
        for plan in PLAN_NAMES
        for name, n in counts.items()
    ]
    files.write_tsv(pd.DataFrame(cc), outputs["cell_count_tcp"])
    return {"centre": centre, "sigma": sigma, "scope": params["sigma_scope"], "centring": params["centring"]}


def _write_delta_tcp(nominal: dict, pt: _Gtv, outputs: dict) -> None:
    """ΔTCP maps (Eq. 5, both forms) and the GTV voxel arrays for the cohort tertiles."""
    g = pt.masks["GTV"]
    arrays: dict[str, Any] = {"cells_per_voxel": pt.cells}
    for plan in PLAN_NAMES:
        arrays[f"survivors_{plan}"] = rob.voxel_survivors(pt.clon, nominal[plan], **pt.kw)
    for plan in ("de", "dr"):
        dtcp, dln = rob.delta_tcp_voxels(pt.clon, nominal[plan], nominal["uniform"], **pt.kw)
        for key, values in (("dtcp", dtcp), ("dlntcp", dln)):
            m = np.full(pt.grid.shape, np.nan)
            m[g] = values
            files.write_array(m, pt.grid, outputs[f"{plan}_{key}"])
    with files.atomic_path(outputs["voxels"], suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def run_patient(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Scenario metrics, DVH bands, worst case, cell-count TCPs and ΔTCP maps of one patient."""
    pid = params["patient_id"]
    pt = _read_gtv(inputs, params, pid)
    scen, pos, structs = _read_scenarios(inputs, params, pid, pt)
    table = _physical_scenarios(scen, pos, structs, pt, outputs, params=params, pid=pid)
    voxels = scen[0]["voxels"]
    nominal = {plan: _full(scen[0]["doses"][plan], voxels, pt.grid)[pt.masks["GTV"]] for plan in PLAN_NAMES}
    cell_count = _cell_count_tcp(nominal, pt, inputs, outputs, params=params, pid=pid)
    _write_delta_tcp(nominal, pt, outputs)
    qc = {"patient_id": pid, "tcp_model": pt.tcp, "cell_count": cell_count,
          "scenarios": {s["scenario"]: s["method"] for s in scen}}  # fmt: skip
    files.write_json(qc, outputs["qc"])
    return table


def _full(values, voxels, grid):
    out = np.zeros(grid.shape)
    out.flat[voxels] = values
    return out


# -- cohort (held-out patients) ----------------------------------------------------------------------------


def _tertile_rows(pids: list, vox: list, thresholds) -> pd.DataFrame:
    """ΔTCP of the painted plans per patient and cell-count tertile (sub-volume, voxel mean, Δ ln TCP)."""
    rows = []
    for pid, v in zip(pids, vox):
        t = rob.tertile_of(v["cells_per_voxel"], thresholds)
        for plan in ("de", "dr"):
            out = rob.delta_tcp_by_tertile(v[f"survivors_{plan}"], v["survivors_uniform"], t)
            rows += [
                {"patient_id": pid, "plan": plan, "tertile": label, "n_voxels": int(np.sum(t == k)),
                 "delta_tcp_subvolume_pp": 100.0 * out["subvolume"][k],
                 "delta_tcp_voxel_mean_pp": 100.0 * out["voxel_mean"][k], "delta_ln_tcp": out["dlntcp"][k]}
                for k, label in enumerate(("low", "medium", "high"))
            ]  # fmt: skip
    return pd.DataFrame(rows)


def _plan_summary(plan: str, cc: pd.DataFrame, scen: pd.DataFrame, tert: pd.DataFrame) -> dict:
    """One plan's cohort row: TCP range under cell-count uncertainty, GTV D95 over scenarios, tertile ΔTCP."""
    c = cc[cc["plan"] == plan].pivot(index="patient_id", columns="cell_count", values="tcp")
    s = scen[scen["plan"] == plan]
    worst_d95 = s.groupby("patient_id")["GTV_D95"].min()
    nominal_d95 = s[s["scenario"] == s["scenario"].iloc[0]].set_index("patient_id")["GTV_D95"]
    row = {
        "plan": plan,
        "n_patients": int(c.shape[0]),
        "tcp_nominal_mean_pct": 100 * c["nominal"].mean(),
        "tcp_best_minus_nominal_pp_mean": 100 * (c["best"] - c["nominal"]).mean(),
        "tcp_best_minus_nominal_pp_max": 100 * (c["best"] - c["nominal"]).max(),
        "tcp_worst_minus_nominal_pp_mean": 100 * (c["worst"] - c["nominal"]).mean(),
        "tcp_worst_minus_nominal_pp_min": 100 * (c["worst"] - c["nominal"]).min(),
        "gtv_d95_nominal_median_gy": nominal_d95.median(),
        "gtv_d95_worst_scenario_median_gy": worst_d95.median(),
        "gtv_d95_worst_scenario_min_gy": worst_d95.min(),
        "n_scenarios": int(s["scenario"].nunique()),
        "scenario_goals_met_fraction": float(s["goals_met"].sum() / s["goals_total"].sum()),
    }
    if plan != "uniform":
        for label in ("low", "medium", "high"):
            sub = tert[(tert["plan"] == plan) & (tert["tertile"] == label)]["delta_tcp_subvolume_pp"]
            row[f"delta_tcp_{label}_tertile_pp_mean"] = sub.mean()
            row[f"delta_tcp_{label}_tertile_pp_sd"] = sub.std(ddof=1) if sub.size > 1 else np.nan
    return row


def _concat(paths) -> pd.DataFrame:
    return pd.concat([files.read_tsv(p) for p in files.as_paths(paths)], ignore_index=True)


def run_summary(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Tertile ΔTCP, TCP range under cell-count uncertainty and worst-case GTV D95 over the
    held-out patients (``params["patient_ids"]``, in the order of the input lists).
    """
    pids = list(params["patient_ids"])
    vox = [dict(np.load(p)) for p in files.as_paths(inputs["voxels"])]
    thresholds = rob.tertile_thresholds(
        np.concatenate([v["cells_per_voxel"] for v in vox]), percentiles=tuple(params["tertile_percentiles"])
    )
    tert = _tertile_rows(pids, vox, thresholds)
    files.write_tsv(tert, outputs["tertiles"])
    scen, cc = _concat(inputs["scenario_metrics"]), _concat(inputs["cell_count_tcp"])
    files.write_tsv(scen, outputs["scenarios"])
    files.write_tsv(cc, outputs["cell_count"])
    summary = pd.DataFrame([_plan_summary(plan, cc, scen, tert) for plan in PLAN_NAMES])
    files.write_tsv(summary, outputs["summary"])
    record = {"tertile_thresholds_cells_per_voxel": list(thresholds),
              "tertile_percentiles": list(params["tertile_percentiles"]), "patient_ids": pids}  # fmt: skip
    files.write_json(record, outputs["tertile_thresholds"])
    return summary
