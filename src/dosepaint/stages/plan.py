"""Planning stage: dose influence (cached), uniform/DE/DR plans, evaluation and export .

``run_influence`` (rule ``dose_influence``): pyRadPlan dose influence of the spots placed on
CTV_LD for the voxels that matter — targets, OARs, a ring around CTV_LD and a regular subsample
of BODY — cached as ``plans/influence.npz``.

``run`` (rule ``plan``): our optimiser → uniform, DE and DR courses; whole-grid doses by
pyRadPlan forward calculation of the optimised spots; per plan ``{plan}/dose.nii.gz``
(total RBE-weighted dose, Gy(RBE)), ``{plan}/letd.nii.gz`` (keV/µm; carbon: on GTV ∪ CTV_HD only,
NaN elsewhere), ``{plan}/rtdose.dcm`` (DoseType EFFECTIVE), ``{plan}/dvh.tsv``, ``{plan}/weights.npz`` (spot
weights per fraction of both phases, for scenario recalculation);
``metrics.tsv`` (one row per plan, plus the beam-free references: the TCP-optimal water-filling
prescriptions at the DE and DR mean doses, and the PET prescriptions by contours and by numbers),
``qc.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import SimpleITK as sitk
from threadpoolctl import threadpool_limits

from .. import dwi
from .. import radiobiology as rb
from ..errors import DosepaintInputError
from ..geometry import Grid
from ..io import files
from ..io.dicom_write import export_rtdose
from ..io.records import read_tcp_model as tcp_model
from ..layout import PLAN_NAMES
from ..logs import timed
from ..planning import evaluate as ev
from ..planning.biology import letd as letd_of
from ..planning.engine import PyRadPlanEngine
from ..planning.influence import DoseInfluence
from ..planning.plans import course_doses, let_dose_matrix, painted_course, rbe_model, result_summary, uniform_course
from ..structures import PLANNING_STRUCTURES as STRUCTURES
from ..structures import expand

log = logging.getLogger(__name__)


def calc_voxels(masks: dict, grid: Grid, *, oars, ring_mm: float, body_step: int):
    """The voxels that matter (targets, OARs, a ring of ``ring_mm`` around CTV_LD, every
    ``body_step``-th BODY voxel along each axis), the ring itself and that BODY sample.
    """
    ctv = masks["CTV_LD"]
    body = masks["BODY"]
    ring = expand(ctv, grid, margin_mm=ring_mm) & ~ctv & body
    sample = np.zeros_like(body)
    sample[::body_step, ::body_step, ::body_step] = True
    sample &= body
    calc = ctv | ring | sample
    for o in oars:
        if o in masks:
            calc |= masks[o] & body
    return calc, ring, sample


#: Memory (MB) declared while a job's inputs do not exist yet (a dry run that reaches the job before its
#: patient's ingest): Snakemake evaluates the resources again when it schedules the job.
def run_influence(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Dose influence of one patient (``params``: patient_id, engine{…}, oars, ring_mm, body_step)."""
    pid = params["patient_id"]
    ct = files.read_image(inputs["ct_dose"])
    masks, grid = files.read_masks(
        inputs["masks_dose"],
        ["CTV_LD", "BODY", *params["oars"]],
        pid=pid,
        needed_by="planning",
        required=("CTV_LD", "BODY"),
    )
    calc, _, _ = calc_voxels(masks, grid, oars=params["oars"], ring_mm=params["ring_mm"], body_step=params["body_step"])
    e = params["engine"]
    engine = PyRadPlanEngine(
        modality=e["modality"],
        gantry_angles_deg=e["gantry_angles_deg"],
        couch_angles_deg=e.get("couch_angles_deg"),
        bixel_width_mm=e["bixel_width_mm"],
        layer_spacing_mm=e["layer_spacing_mm"],
        lateral_cutoff=e["lateral_cutoff"],
    )
    inf = engine.influence(ct, target=masks["CTV_LD"], calc_voxels=calc)
    with files.atomic_path(outputs["influence"], suffix=".npz") as tmp:
        inf.save(tmp)
    log.info(
        "%s: %d spots × %d voxels, %d non-zeros; stf %.1f s, dose influence %.1f s",
        pid,
        inf.n_spots,
        inf.n_voxels,
        inf.physical.nnz,
        inf.meta["stf_s"],
        inf.meta["dij_s"],
    )
    return inf.meta


def structure_rows(inf: DoseInfluence, masks: dict, *, ring: np.ndarray, body_sample: np.ndarray) -> dict:
    """Influence rows of each structure (its voxels that have rows), of the ring, of CTV_LD−CTV_HD
    (``LD_ONLY``) and of the BODY sample outside CTV_LD (``BODY``), as the planner's terms use them.
    """
    calc = inf.scatter(np.ones(inf.n_voxels), fill=0.0) > 0
    rows = {name: inf.rows_of(m & calc) for name, m in masks.items()}
    rows["RING"] = inf.rows_of(ring & calc)
    rows["LD_ONLY"] = inf.rows_of(masks["CTV_LD"] & ~masks["CTV_HD"])
    rows["BODY"] = inf.rows_of(body_sample & ~masks["CTV_LD"] & calc)
    return rows


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Plans of one patient; see the module docstring and ``config/README.md`` (planning).

    ``params["threads"]`` (default 1) fixes the sparse products' row blocks and the BLAS/OpenMP
    threads, whatever the executor's environment (``OMP_NUM_THREADS`` etc. follow the job's threads):
    the summation order, hence the plans to the last digit, depends on it.
    """
    with threadpool_limits(limits=int(params.get("threads", 1))):
        return _run(inputs, outputs, params=params)


@dataclass
class PlanPatient:
    """What one patient's planning reads: dose influence, CT and masks on the dose grid, the influence
    rows of each structure and the clonogens (per voxel, and per GTV influence row).
    """

    pid: str
    tcp: dict
    inf: DoseInfluence
    ct: sitk.Image
    masks: dict
    grid: Grid
    rows: dict
    clonogens: np.ndarray
    n_gtv: np.ndarray


def load_patient(inputs: dict, params: dict) -> PlanPatient:
    """A patient's planning inputs (the rule's ``inputs``: influence, CT and masks on the dose grid,
    cell density, TCP model), checked against each other; raises :class:`DosepaintInputError`.
    """
    pid = params["patient_id"]
    tcp = tcp_model(inputs, params["tcp"])
    inf = DoseInfluence.load(inputs["influence"])
    ct = files.read_image(inputs["ct_dose"])
    names = list(dict.fromkeys([*STRUCTURES, *params["oar_limits_gy"]]))
    masks, grid = files.read_masks(inputs["masks_dose"], names, pid=pid, needed_by="planning", required=STRUCTURES)
    if tuple(grid.shape) != tuple(inf.grid_shape):
        raise DosepaintInputError(
            f"dose influence grid {inf.grid_shape} differs from the dose grid {grid.shape}",
            patient=pid,
            path=inputs["influence"],
        )
    _, ring, sample = calc_voxels(
        masks, grid, oars=params["oar_limits_gy"], ring_mm=params["ring_mm"], body_step=params["body_step"]
    )
    rows = structure_rows(inf, masks, ring=ring, body_sample=sample)
    rho, rgrid = files.read_array(inputs["cell_density"])
    if tuple(rgrid.shape) != tuple(grid.shape):
        raise DosepaintInputError("cell density is not on the dose grid", patient=pid, path=inputs["cell_density"])
    clonogens = dwi.clonogens(
        np.where(masks["GTV"], rho, 0.0),
        voxel_volume_mm3=grid.voxel_volume,
        clonogenic_fraction=float(tcp["clonogenic_fraction"]),
    )
    n_gtv = clonogens.ravel()[inf.voxels[rows["GTV"]]]
    if not np.any(n_gtv > 0):
        raise DosepaintInputError(
            "no clonogens in the GTV (empty cell-density map)", patient=pid, path=inputs["cell_density"]
        )
    return PlanPatient(pid, tcp, inf, ct, masks, grid, rows, clonogens, n_gtv)


def course_params(params: dict, tcp: dict) -> dict:
    """What the course optimisers read: ``params["optimisation"]`` with the prescription, the fractions,
    the OAR limits and the patient's TCP model.
    """
    keys = ("prescription_gy", "n_ld", "n_hd", "oar_limits_gy")
    return params["optimisation"] | {k: params[k] for k in keys} | {"tcp": tcp}


def optimise_courses(pt: PlanPatient, *, params: dict, p: dict) -> tuple[dict, object, np.ndarray]:
    """The uniform, DE and DR courses by our optimiser; the LET·dose matrix and its rows."""
    model = rbe_model(pt.inf, constant_rbe=params["constant_rbe"], threads=int(params.get("threads", 1)))
    let_rows = np.union1d(pt.rows["GTV"], pt.rows["CTV_HD"])  # LETd is reported and optimised there only
    let_dose = let_dose_matrix(pt.inf, voxel_mm=float(np.mean(pt.grid.spacing)), rows=let_rows)
    courses = {"uniform": uniform_course(pt.inf, model, pt.rows, params=p)}
    for name, m in (("de", params["de_mean_fraction"]), ("dr", params["dr_mean_fraction"])):
        courses[name] = painted_course(
            pt.inf,
            model,
            pt.rows,
            courses["uniform"],
            clonogens_gtv=pt.n_gtv,
            mean_fraction=float(m),
            let_dose=let_dose,
            let_rows=let_rows,
            params=p,
        )
    return courses, let_dose, let_rows


def _course_letd(phase1: dict, phase2: dict, weights: np.ndarray, pt: PlanPatient, let_dose, let_rows) -> np.ndarray:
    """LETd of a course (keV/µm): pyRadPlan's (protons, whole grid) or our approximation (influence
    rows; LET·dose and dose are linear in the weights, so the course is one weight vector).
    """
    if "let" in phase1 and "let" in phase2:
        num = phase1["let"] * phase1["physical_total"] + phase2["let"] * phase2["physical_total"]
        den = phase1["physical_total"] + phase2["physical_total"]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)
    letd = np.full(pt.grid.shape, np.nan)
    if let_dose is not None:
        letd.flat[pt.inf.voxels[let_rows]] = letd_of(let_dose, sp.csr_array(pt.inf.physical[let_rows]), weights)
    return letd


def _write_plan(name: str, dose, letd, course, pt: PlanPatient, outputs: dict, *, params: dict) -> None:
    """A plan's dose and LETd (NIfTI), RT Dose, cumulative DVH and spot weights."""
    Path(outputs[f"{name}_dose"]).parent.mkdir(parents=True, exist_ok=True)
    body_dose = np.where(pt.masks["BODY"], dose, 0.0)
    files.write_array(body_dose, pt.grid, outputs[f"{name}_dose"])
    files.write_array(letd, pt.grid, outputs[f"{name}_letd"])
    # Ingest does not record the planning CT's FrameOfReferenceUID yet: a UID derived from the
    # pseudonym is used (DVH tools pair dose and RTSTRUCT without it; TPS import needs it).
    export_rtdose(
        outputs[f"{name}_rtdose"],
        body_dose,
        pt.grid,
        patient_id=pt.pid,
        frame_of_reference=None,
        description=f"dosepaint {name} plan",
    )
    bins = ev.dvh_bins(prescription_gy=params["prescription_gy"], bin_gy=params["dvh_bin_gy"])
    dvh = pd.DataFrame({"dose_gy": bins})
    for s in (*STRUCTURES, *[o for o in params["oar_limits_gy"] if o in pt.masks]):
        dvh[s] = ev.dvh_curve(dose, pt.masks[s], bins=bins)
    files.write_tsv(dvh, outputs[f"{name}_dvh"])
    files.write_spot_weights(
        outputs[f"{name}_weights"], phase1=course.phase1, phase2=course.phase2, n_ld=params["n_ld"], n_hd=params["n_hd"]
    )


def _forward_and_write(
    pt: PlanPatient, courses: dict, let_dose, let_rows, outputs: dict, *, params: dict, radio: dict
) -> tuple[list, dict]:
    """Whole-grid doses by forward calculation of each phase's spots (phase 1 is shared: all four
    weight vectors from one pyRadPlan calculation per beam); each plan written and evaluated.
    """
    engine = PyRadPlanEngine.from_influence(pt.inf)
    fwd = engine.forward_many(
        pt.ct, pt.inf, [courses["uniform"].phase1, *(courses[k].phase2 for k in PLAN_NAMES)], body=pt.masks["BODY"]
    )
    phase1 = course_doses(fwd[0], pt.inf, n_fx=params["n_ld"], constant_rbe=params["constant_rbe"])
    rows_out, plans_qc = [], {}
    for i, name in enumerate(PLAN_NAMES, start=1):
        c = courses[name]
        ph2 = course_doses(fwd[i], pt.inf, n_fx=params["n_hd"], constant_rbe=params["constant_rbe"])
        dose = phase1["rbe_total"] + ph2["rbe_total"]
        letd = _course_letd(phase1, ph2, params["n_ld"] * c.phase1 + params["n_hd"] * c.phase2, pt, let_dose, let_rows)
        _write_plan(name, dose, letd, c, pt, outputs, params=params)
        row = _evaluate(name, dose, letd, pt.masks, pt.clonogens, params=params, **radio)
        for k, v in result_summary(c.results["phase2"]).items():
            if k != "seconds":  # timings stay in qc.json: the metrics table reproduces byte for byte
                row[f"opt_{k}"] = v
        rows_out.append(row)
        plans_qc[name] = {"phase1": result_summary(c.results["phase1"]), "phase2": result_summary(c.results["phase2"])}
    return rows_out, plans_qc


def _references(pt: PlanPatient, inputs: dict, *, params: dict, p: dict, radio: dict) -> list:
    """Beam-free references: the TCP-optimal water-filling and the PET prescriptions, on the GTV."""
    g, dp, rows_out = pt.masks["GTV"], float(params["prescription_gy"]), []
    for name, m in (("ideal_de", params["de_mean_fraction"]), ("ideal_dr", params["dr_mean_fraction"])):
        d = np.full(pt.grid.shape, np.nan)
        d[g] = rb.tcp_optimal_dose(
            pt.clonogens[g],
            mean_dose=float(m) * dp,
            alpha=radio["alpha"],
            beta=radio["beta"],
            n_fractions=radio["n"],
            lower=p["gtv_lower"] * dp,
            upper=p["gtv_upper"] * dp,
        )
        rows_out.append(_evaluate(name, d, None, {"GTV": g}, pt.clonogens, params=params, **radio))
    for name in ("prescription_contours", "prescription_numbers"):
        if inputs.get(name):
            d, _ = files.read_array(inputs[name])
            d = np.where(g, np.asarray(d, float), np.nan)
            rows_out.append(
                _evaluate(f"pet_{name.split('_')[1]}", d, None, {"GTV": g}, pt.clonogens, params=params, **radio)
            )
    return rows_out


def _run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    seconds: dict = {}
    with timed(seconds, "total_s"):
        pt = load_patient(inputs, params)
        p = course_params(params, pt.tcp)
        alpha = float(pt.tcp["alpha"])
        radio = {
            "alpha": alpha,
            "beta": alpha / float(pt.tcp["alpha_beta"]),
            "n": int(params["n_ld"]) + int(params["n_hd"]),
        }
        with timed(seconds, "optimisation_s"):
            courses, let_dose, let_rows = optimise_courses(pt, params=params, p=p)
        with timed(seconds, "forward_and_export_s"):
            rows_out, plans_qc = _forward_and_write(
                pt, courses, let_dose, let_rows, outputs, params=params, radio=radio
            )
        rows_out += _references(pt, inputs, params=params, p=p, radio=radio)
        table = pd.DataFrame(rows_out)
        table.insert(0, "patient_id", pt.pid)
        files.write_tsv(table, outputs["metrics"])
    qc = {
        "patient_id": pt.pid,
        "plans": plans_qc,
        "timings": {k: seconds[k] for k in ("optimisation_s", "forward_and_export_s", "total_s")},
        "influence": {
            k: pt.inf.meta[k]
            for k in ("n_spots", "n_voxels", "nnz", "dij_s", "stf_s", "peak_rss_mb")
            if k in pt.inf.meta
        },
        "tcp_model": pt.tcp,
    }
    files.write_json(qc, outputs["qc"])
    log.info("%s: plans done in %.1f s (optimisation %.1f s)", pt.pid, seconds["total_s"], seconds["optimisation_s"])
    return table


def _evaluate(name, dose, letd, masks, clonogens, *, params, alpha, beta, n) -> dict:
    dp = float(params["prescription_gy"])
    row = {"plan": name}
    metrics = {}
    for s, m in masks.items():
        if s == "BODY":
            continue
        for k, v in ev.dvh_metrics(dose, m).items():
            metrics[f"{s}_{k}"] = v
        if letd is not None and s in ("GTV", "CTV_HD"):
            for k, v in ev.dvh_metrics(letd, m, prefix="L").items():
                metrics[f"{s}_{k}"] = v
    row.update(metrics)
    row.update(ev.tcp_metrics(clonogens[masks["GTV"]], dose[masks["GTV"]], alpha=alpha, beta=beta, n_fractions=n))
    if name in PLAN_NAMES:  # beam-free references have no whole-body dose to check goals on
        goals = ev.clinical_goals(
            metrics, prescription_gy=dp, oar_limits=params["oar_limits_gy"], escalated=name in ("de", "dr")
        )
        row.update({f"goal_{k}": v for k, v in goals.items()})
        row["goals_met"] = int(sum(goals.values()))
        row["goals_total"] = len(goals)
        row["unconstrained_oars"] = ",".join(o for o in params["oar_limits_gy"] if o not in masks)
    return row


def run_summary(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Cohort table of plan metrics (``plan_metrics.tsv``) and a per-plan summary (``plan_summary.tsv``):
    TCP mean ± SD (%), ΔTCP against the uniform plan (pp), GTV mean dose, clinical goals met.
    """
    table = pd.concat([files.read_tsv(p) for p in files.as_paths(inputs["metrics"])], ignore_index=True)
    files.write_tsv(table, outputs["metrics"])
    uni = table[table["plan"] == "uniform"].set_index("patient_id")["tcp"]
    rows = []
    for plan, g in table.groupby("plan", sort=False):
        t = g.set_index("patient_id")["tcp"]
        delta = 100.0 * (t - uni.reindex(t.index))
        row = {
            "plan": plan,
            "n_patients": int(t.size),
            "tcp_mean_pct": 100.0 * t.mean(),
            "tcp_sd_pct": 100.0 * t.std(ddof=1) if t.size > 1 else np.nan,
            "delta_tcp_vs_uniform_mean_pp": delta.mean(),
            "delta_tcp_vs_uniform_sd_pp": delta.std(ddof=1) if t.size > 1 else np.nan,
            "gtv_dmean_gy_median": g["GTV_Dmean"].median(),
        }
        if "goals_met" in g and g["goals_total"].notna().any():
            row["goals_met_fraction"] = float(g["goals_met"].sum() / g["goals_total"].sum())
        rows.append(row)
    summary = pd.DataFrame(rows)
    files.write_tsv(summary, outputs["summary"])
    return summary
