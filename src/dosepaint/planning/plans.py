"""Uniform, dose-escalation (DE) and dose-redistribution (DR) plans of one patient (docs/method.md §1).

Sequential course: phase 1 treats CTV_LD for ``n_ld`` fractions, phase 2 boosts CTV_HD for
``n_hd`` fractions, each at ``D_P/n`` Gy(RBE) per fraction (73.6 Gy(RBE) in 9 + 7 fractions).
Uniform: both phases by squared deviation to their prescriptions with OAR and fall-off
penalties.  DE/DR keep the uniform phase 1 and re-optimise the boost for the total dose:
minimise ln S_ROI on the GTV (fitted TCP model) subject to GTV voxel doses in
[lower, upper]·D_P and GTV mean = m·D_P (DE m = 1.03, DR m = 1.00), CTV_HD−GTV uniform at
D_P, OAR limits, and a low-weighted min-LETd objective on the GTV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .biology import RbeModel, rbe_dose_from_effect, residual_range_let_dose
from .influence import DoseInfluence, column_max, subset_shared
from .optimise import Constraints, DoseTerm, LetTerm, OptResult, PhaseProblem, TcpTerm, scale_to_mean

log = logging.getLogger(__name__)


@dataclass
class CourseSolution:
    """Spot weights per phase and the total dose on the influence rows."""

    phase1: np.ndarray
    phase2: np.ndarray
    dose: np.ndarray  # total Gy(RBE) on rows
    results: dict  # phase name -> OptResult
    boost_spots: np.ndarray | None = None  # columns the boost may use


def rbe_model(inf: DoseInfluence, *, constant_rbe: float, threads: int = 1) -> RbeModel:
    """The influence's RBE model: LEM α/√β for carbon, a constant RBE otherwise (docs/method.md §1).

    Parameters
    ----------
    inf : DoseInfluence
        The patient's dose influence.
    constant_rbe : float
        RBE when the influence has no LEM matrices (protons).
    threads : int
        Row blocks of the sparse products.

    Returns
    -------
    RbeModel
        Per-fraction RBE-weighted dose of spot weights and its gradient.
    """
    if inf.alpha_dose is not None and inf.sqrt_beta_dose is not None:
        return RbeModel(
            physical=inf.physical,
            alpha_dose=inf.alpha_dose,
            sqrt_beta_dose=inf.sqrt_beta_dose,
            alpha_x=inf.alpha_x,
            beta_x=inf.beta_x,
            threads=threads,
        )
    return RbeModel(physical=inf.physical, constant_rbe=constant_rbe, threads=threads)


def let_dose_matrix(inf: DoseInfluence, *, voxel_mm: float, rows: np.ndarray):
    """LET·dose on some influence ``rows``: pyRadPlan's (protons) or the residual-range approximation
    (carbon; computing it costs about as much as a few hundred products, so only the rows that LET is
    reported or optimised on).

    Parameters
    ----------
    inf : DoseInfluence
        The patient's dose influence.
    voxel_mm : float
        Voxel size, mm.
    rows : ndarray of int
        Increasing influence rows.

    Returns
    -------
    scipy.sparse.csr_array or None
        (len(rows), n_spots), keV/µm · Gy per unit weight; None when the influence cannot give LET.
    """
    if inf.let_dose is not None:
        return sp.csr_array(inf.let_dose[rows])
    if inf.radiological_depth is None:
        return None
    return residual_range_let_dose(inf, voxel_mm=voxel_mm, rows=rows)


def oar_terms(
    rows: dict, limits: dict, *, margin: float, fraction_of_course: float, weight: float, scale: float
) -> list[DoseTerm]:
    """OAR overdose terms of the objective (docs/method.md §1).

    Every voxel of each OAR in ``rows`` above ``margin`` × its near-max limit (× ``fraction_of_course``
    for a phase that delivers part of the course) is penalised: per voxel, so stricter than the D2 goal;
    the margin (< 1) absorbs what a soft penalty lets through at its threshold (SYN032 SIGMA D2
    62.3 Gy(RBE) for a 62.0 limit with margin 1).

    Parameters
    ----------
    rows : dict
        Structure → influence rows.
    limits : dict
        OAR → near-max limit, Gy(RBE).
    margin : float
        Fraction of the limit where the penalty starts.
    fraction_of_course : float
        Share of the course the phase delivers.
    weight : float
        Weight of each term.
    scale : float
        Dose scale of the terms, Gy(RBE).

    Returns
    -------
    list of DoseTerm
        One per OAR present in ``rows``.
    """
    return [
        DoseTerm(rows[o], "overdose", float(lim) * margin * fraction_of_course, weight, scale, name=f"{o}_overdose")
        for o, lim in limits.items()
        if o in rows and rows[o].size
    ]


def _oar_terms(rows: dict, params: dict, *, fraction_of_course: float, scale: float) -> list[DoseTerm]:
    return oar_terms(
        rows,
        params["oar_limits_gy"],
        margin=float(params["oar_margin_fraction"]),
        fraction_of_course=fraction_of_course,
        weight=params["weights"]["oar"],
        scale=scale,
    )


def uniform_course(inf: DoseInfluence, model: RbeModel, rows: dict, *, params: dict) -> CourseSolution:
    """The uniform plan: phase 1 to CTV_LD, then the CTV_HD boost, each by squared deviation (docs/method.md §1).

    Parameters
    ----------
    inf : DoseInfluence
        The patient's dose influence.
    model : RbeModel
        From :func:`rbe_model`.
    rows : dict
        Structure → influence rows (targets, shells, ring, body sample, OARs).
    params : dict
        Prescription, fractions, weights, OAR limits and optimiser settings (``planning``).

    Returns
    -------
    CourseSolution
        Spot weights per fraction of both phases, the total dose on the rows (Gy(RBE)) and the
        optimiser's results.
    """
    dp, n_ld, n_hd = float(params["prescription_gy"]), int(params["n_ld"]), int(params["n_hd"])
    n = n_ld + n_hd
    d_fx = dp / n
    wts = params["weights"]
    zero = np.zeros(inf.n_voxels)
    d_ld = d_fx * n_ld
    t1 = [
        DoseTerm(rows["CTV_LD"], "deviation", d_ld, wts["target"], dp, name="CTV_LD_deviation"),
        DoseTerm(rows["RING"], "overdose", params["ring_max_fraction"] * d_ld, wts["ring"], dp, name="ring"),
        DoseTerm(rows["BODY"], "overdose", params["body_max_fraction"] * d_ld, wts["body"], dp, name="body"),
    ]
    t1 += _oar_terms(rows, params, fraction_of_course=n_ld / n, scale=dp)
    w0 = scale_to_mean(model, np.ones(inf.n_spots), rows["CTV_LD"], dose_per_fraction=d_fx)
    r1 = PhaseProblem(model, n_fx=n_ld, fixed_dose=zero, terms=t1).solve(w0, max_iter=params["max_iter"])
    d1 = r1.dose
    t2 = [
        DoseTerm(rows["CTV_HD"], "deviation", dp, wts["target"], dp, name="CTV_HD_deviation"),
        *_goal_terms(rows["CTV_HD"], params),
        DoseTerm(rows["LD_ONLY"], "overdose", d_ld * params["ld_max_fraction"], wts["ring"], dp, name="ld_only"),
        DoseTerm(rows["RING"], "overdose", params["ring_max_fraction"] * dp, wts["ring"], dp, name="ring"),
        DoseTerm(rows["BODY"], "overdose", params["body_max_fraction"] * d_ld, wts["body"], dp, name="body"),
    ]
    t2 += _oar_terms(rows, params, fraction_of_course=1.0, scale=dp)
    cols = _spots_reaching(inf, rows["CTV_HD"])  # the boost only needs spots reaching CTV_HD
    w0 = np.zeros(inf.n_spots)
    w0[cols] = 1.0
    w0 = scale_to_mean(model, w0, rows["CTV_HD"], dose_per_fraction=d_fx)
    r2 = PhaseProblem(model, n_fx=n_hd, fixed_dose=d1, terms=t2, cols=cols).solve(w0, max_iter=params["max_iter"])
    return CourseSolution(
        phase1=r1.weights, phase2=r2.weights, dose=r2.dose, results={"phase1": r1, "phase2": r2}, boost_spots=cols
    )


def _goal_terms(rows: np.ndarray, params: dict) -> list[DoseTerm]:
    """Guards of the clinical goals on non-escalated target rows: underdose below
    ``coverage_fraction``·D_P (for D95 > 0.95 D_P) and overdose above ``hotspot_fraction``·D_P (for
    D1 < 1.05 D_P), at the target weight; a squared deviation alone tolerates both tails.
    """
    dp, w = float(params["prescription_gy"]), params["weights"]["target"]
    return [
        DoseTerm(rows, "underdose", params["coverage_fraction"] * dp, w, dp, name="coverage"),
        DoseTerm(rows, "overdose", params["hotspot_fraction"] * dp, w, dp, name="hotspot"),
    ]


def _spots_reaching(inf: DoseInfluence, target_rows: np.ndarray, frac: float = 0.2) -> np.ndarray:
    """Spots whose peak contribution to ``target_rows`` is ≥ ``frac`` of their maximum anywhere."""
    (sub,) = subset_shared([inf.physical], rows=target_rows)
    peak_t = column_max(sub)
    peak = column_max(inf.physical)
    return np.flatnonzero(peak_t >= frac * np.maximum(peak, 1e-30))


def painted_course(
    inf: DoseInfluence,
    model: RbeModel,
    rows: dict,
    uniform: CourseSolution,
    *,
    clonogens_gtv: np.ndarray,
    mean_fraction: float,
    let_dose=None,
    let_rows=None,
    params: dict,
) -> CourseSolution:
    """DE (``mean_fraction`` 1.03) or DR (1.00): the boost re-optimised for TCP under constraints
    (docs/method.md §1).

    Parameters
    ----------
    inf : DoseInfluence
        The patient's dose influence.
    model : RbeModel
        From :func:`rbe_model`.
    rows : dict
        Structure → influence rows.
    uniform : CourseSolution
        The uniform plan; its phase 1 is kept and its boost is the start.
    clonogens_gtv : ndarray
        N_i of the GTV rows.
    mean_fraction : float
        GTV mean dose over D_P.
    let_dose, let_rows : optional
        LET·dose on the influence rows ``let_rows`` (all rows if None), which must hold the GTV's.
    params : dict
        As :func:`uniform_course`, plus the TCP model (``tcp``), the GTV bounds and the
        augmented-Lagrangian rounds (``round_iter`` L-BFGS-B iterations each, ``max_iter`` where it is
        None or absent; ``outer_iterations`` rounds at most; docs/method.md §1).

    Returns
    -------
    CourseSolution
        The painted course.
    """
    dp, n_hd = float(params["prescription_gy"]), int(params["n_hd"])
    terms = _painting_terms(rows, clonogens_gtv, params=params)
    cols = uniform.boost_spots if uniform.boost_spots is not None else np.arange(inf.n_spots)
    let_term = None
    if let_dose is not None and params["weights"]["let"] > 0:
        let_term = _let_term(inf, rows["GTV"], let_dose, let_rows, uniform.phase1, cols, params=params)
    cons = Constraints(rows["GTV"], dp, lower=params["gtv_lower"], upper=params["gtv_upper"], mean=mean_fraction)
    d1 = uniform.results["phase1"].dose
    prob = PhaseProblem(model, n_fx=n_hd, fixed_dose=d1, terms=terms, let_term=let_term, constraints=cons, cols=cols)
    rounds = params.get("round_iter") or params["max_iter"]
    r2 = prob.solve(uniform.phase2, max_iter=int(rounds), outer=params["outer_iterations"])
    return CourseSolution(phase1=uniform.phase1, phase2=r2.weights, dose=r2.dose,
                          results={"phase1": uniform.results["phase1"], "phase2": r2}, boost_spots=cols)  # fmt: skip


def _painting_terms(rows: dict, clonogens_gtv: np.ndarray, *, params: dict) -> list:
    """The boost's objective: TCP of the GTV, CTV_HD − GTV at the prescription, the ring, body and OARs."""
    dp, n_ld, n_hd = float(params["prescription_gy"]), int(params["n_ld"]), int(params["n_hd"])
    n, wts, tcp = n_ld + n_hd, params["weights"], params["tcp"]
    terms = [
        TcpTerm(rows["GTV"], clonogens_gtv, alpha=tcp["alpha"], beta=tcp["alpha"] / tcp["alpha_beta"], n_fractions=n,
                weight=wts["tcp"], name="log_s_roi"),
        DoseTerm(rows["CTV_HD_minus_GTV"], "deviation", dp, wts["target"], dp, name="CTV_HD_minus_GTV_deviation"),
        *_goal_terms(rows["CTV_HD_minus_GTV"], params),
        DoseTerm(rows["LD_ONLY"], "overdose", dp / n * n_ld * params["ld_max_fraction"], wts["ring"], dp,
                 name="ld_only"),
        DoseTerm(rows["RING"], "overdose", params["ring_max_fraction"] * dp, wts["ring"], dp, name="ring"),
        DoseTerm(rows["BODY"], "overdose", params["body_max_fraction"] * dp / n * n_ld, wts["body"], dp, name="body"),
    ]  # fmt: skip
    return terms + _oar_terms(rows, params, fraction_of_course=1.0, scale=dp)


def _let_term(inf: DoseInfluence, g, let_dose, let_rows, phase1, cols, *, params: dict) -> LetTerm:
    """The GTV's LETd floor on the boost spots ``cols``, with phase 1's LET·dose and dose fixed."""
    ld = let_dose[g if let_rows is None else np.searchsorted(let_rows, g)]
    ph = inf.physical[g]
    w1 = phase1.astype(np.float32)
    n_ld = int(params["n_ld"])
    return LetTerm(sp.csr_array(ld[:, cols]), sp.csr_array(ph[:, cols]),
                   fixed_let_dose=n_ld * (ld @ w1).astype(np.float64),
                   fixed_dose=n_ld * (ph @ w1).astype(np.float64), n_fx=int(params["n_hd"]),
                   l_min=float(params["let_min_kev_um"]), weight=params["weights"]["let"])  # fmt: skip


def result_summary(r: OptResult) -> dict:
    """The optimiser's report of a phase, flat, for the plan tables.

    Parameters
    ----------
    r : OptResult
        A phase's result.

    Returns
    -------
    dict
        iterations, evaluations, seconds, objective, ``term_*`` (each objective term) and
        ``violation_*`` (each constraint's violation).
    """
    return {
        "iterations": r.iterations,
        "evaluations": r.evaluations,
        "seconds": round(r.seconds, 3),
        "objective": r.objective,
        **{f"term_{k}": float(v) for k, v in r.terms.items()},
        **{f"violation_{k}": float(v) for k, v in r.constraint_violation.items()},
    }


def course_doses(q: dict, inf, *, n_fx: int, constant_rbe: float) -> dict:
    """Total doses of ``n_fx`` fractions from one per-fraction forward result (docs/method.md §1).

    Parameters
    ----------
    q : dict
        pyRadPlan's per-fraction quantities on the grid: ``physical_dose`` (Gy), and ``effect`` (carbon)
        or ``let`` when the engine gives them.
    inf : DoseInfluence
        For α_x, β_x of the effect's projection.
    n_fx : int
        Fractions.
    constant_rbe : float
        RBE without an effect (protons).

    Returns
    -------
    dict
        ``physical_total`` (Gy), ``rbe_total`` (Gy(RBE)) and, when given, ``let`` (keV/µm).
    """
    out = {"physical_total": n_fx * q["physical_dose"]}
    if "effect" in q:
        out["rbe_total"] = n_fx * rbe_dose_from_effect(q["effect"], alpha_x=inf.alpha_x, beta_x=inf.beta_x)
    else:
        out["rbe_total"] = constant_rbe * out["physical_total"]
    if "let" in q:
        out["let"] = q["let"]
    return out
