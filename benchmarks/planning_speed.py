"""Planning speed: our optimiser vs pyRadPlan's, and a DE plan for a 300 cm³ GTV.

Usage: python benchmarks/planning_speed.py [1] [2] [RESULTS]

1. Same dose-influence matrix (pyRadPlan, water phantom, 3 mm grid, 100 cm³ target), same objective
   (squared deviation on the target, uniform plan): wall time and final objective of pyRadPlan's
   ``fluence_optimization`` (its SciPy L-BFGS-B solver, as shipped and with a tight tolerance) and
   of ours; protons on physical dose and carbon on RBE-weighted dose (LEM).
2. DE plan (carbon, LEM) for a 300 cm³ spherical GTV in water on a 3 mm grid, lognormal cell
   density: dose-influence time, peak memory and optimisation time (uniform + DE).
3. If RESULTS is given: dose-influence and planning time / peak memory per patient from the
   workflow's benchmark files.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

logging.disable(logging.WARNING)


def phantom(gtv_cc: float, spacing=3.0):
    r = (3 * gtv_cc * 1000 / (4 * np.pi)) ** (1 / 3)  # mm
    half = r + 15 + 40
    n = int(np.ceil(2 * half / spacing))
    z, y, x = (np.indices((n, n, n)) - (n - 1) / 2) * spacing
    dist = np.sqrt(x**2 + y**2 + z**2)
    hu = np.where(np.maximum(np.abs(x), np.abs(y)) < half - 10, 0.0, -1000.0).astype(np.float32)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((spacing,) * 3)
    img.SetOrigin((-(n - 1) / 2 * spacing,) * 3)
    masks = {"GTV": dist <= r, "CTV_HD": dist <= r + 5, "CTV_LD": dist <= r + 15, "BODY": hu > -500}
    return img, masks, r


def part1(modality: str):
    from pyRadPlan import CT, IonPlan, StructureSet, calc_dose_influence, fluence_optimization, generate_stf
    from pyRadPlan.cst import create_voi
    from pyRadPlan.optimization.objectives import SquaredDeviation

    from dosepaint.planning.biology import RbeModel
    from dosepaint.planning.optimise import DoseTerm, PhaseProblem, scale_to_mean

    # protons: physical dose, 2 Gy; carbon: RBE-weighted dose (LEM) at the study's 4.6 Gy(RBE)/fx.
    carbon = modality == "carbon"
    d_ref = 4.6 if carbon else 2.0
    img, masks, _ = phantom(100.0)
    ct = CT(cube_hu=img)
    target = sitk.GetImageFromArray(masks["CTV_HD"].astype(np.uint8))
    target.CopyInformation(img)
    quantity = "rbe_x_dose" if carbon else "physical_dose"
    voi = create_voi(
        name="T",
        voi_type="TARGET",
        mask=target,
        ct_image=ct,
        objectives=[SquaredDeviation(priority=1.0, d_ref=d_ref, quantity=quantity)],
    )
    cst = StructureSet(vois=[voi], ct_image=ct)
    pln = IonPlan(radiation_mode=modality, machine="Generic", num_of_fractions=1, prescribed_dose=d_ref)
    pln.prop_stf = {
        "gantry_angles": [90.0, 180.0, 270.0],
        "couch_angles": [0.0] * 3,
        "bixel_width": 6.0 if carbon else 5.0,
    }
    pln.prop_dose_calc = {
        "dose_grid": ct.grid,
        "calc_let": False,
        "calc_bio_dose": carbon,
        "ignore_outside_densities": False,
    }
    stf = generate_stf(ct, cst, pln)
    t = time.perf_counter()
    dij = calc_dose_influence(ct, cst, stf, pln)
    t_dij = time.perf_counter() - t
    P = dij.physical_dose.flat[0].tocsr()
    rows = np.flatnonzero(masks["CTV_HD"].ravel())
    if carbon:
        a_x = float(np.median(np.asarray(dij.alphax).ravel()[rows]))
        b_x = float(np.median(np.asarray(dij.betax).ravel()[rows]))
        lem = {"alpha_dose": dij.alpha_dose.flat[0].tocsr(), "sqrt_beta_dose": dij.sqrt_beta_dose.flat[0].tocsr()}
        models = {t: RbeModel(physical=P, **lem, alpha_x=a_x, beta_x=b_x, threads=t) for t in (1, 2)}
    else:
        models = {t: RbeModel(physical=P, constant_rbe=1.0, threads=t) for t in (1, 2)}
    term = DoseTerm(rows, "deviation", d_ref, 1.0, 1.0)
    w0 = scale_to_mean(models[1], np.ones(P.shape[1]), rows, dose_per_fraction=d_ref)

    def f(w):
        return float(np.mean((models[1].dose(w)[0][rows] - d_ref) ** 2))

    def ours(k, threads, **tol):
        t = time.perf_counter()
        prob = PhaseProblem(models[threads], n_fx=1, fixed_dose=np.zeros(P.shape[0]), terms=[term])
        setup = time.perf_counter() - t
        r = prob.solve(w0, max_iter=k, **tol)
        return r, time.perf_counter() - t, setup, prob

    print(
        f"[1] {modality} ({quantity}), {P.shape[1]} spots, {rows.size} target voxels, nnz {P.nnz}; "
        f"dose influence {t_dij:.1f} s"
    )
    # pyRadPlan's SciPy L-BFGS-B solver (its fallback when IPOPT is not installed), as shipped
    # (abs_obj_tol 1e-5, which stops it after a few iterations) and with the tolerance tightened.
    for label, solver in (
        ("default tolerance", {"name": "scipy"}),
        ("abs_obj_tol 1e-12", {"name": "scipy", "abs_obj_tol": 1e-12}),
    ):
        pln.prop_opt = {"solver": solver, "max_iter": 500}
        info = {}
        t = time.perf_counter()
        w_prp = np.asarray(fluence_optimization(ct, cst, stf, dij, pln, opt_info=info), float)
        t_prp = time.perf_counter() - t
        print(
            f"    pyRadPlan fluence_optimization ({label}): {t_prp:.2f} s, objective {f(w_prp):.3e} "
            f"({info.get('num_iter', '?')} iterations)"
        )
        for threads in (1, 2):
            ours(1, threads)  # warm-up: OpenBLAS threads may still spin after pyRadPlan's solver
            print(f"    dosepaint, {threads} thread(s): " + reach(ours, f, f(w_prp), t_prp, threads))
    for threads in (1, 2):
        r, tk, setup, prob = ours(500, threads)
        per_it = (tk - setup) / max(r.iterations, 1)
        fl, gbs = floor(prob.sub)
        print(
            f"    dosepaint converged, {threads} thread(s): {tk:.2f} s (set-up {setup * 1e3:.0f} ms), objective "
            f"{f(r.weights):.3e}, {r.iterations} iterations, {r.evaluations} evaluations; {per_it * 1e3:.1f} ms per "
            f"iteration, floor (the products of one evaluation) {fl * 1e3:.1f} ms ({gbs:.1f} GB/s): ratio "
            f"{per_it / fl:.2f}"
        )


def reach(ours, f, target: float, t_ref: float, threads: int) -> str:
    """The fewest iterations of ours that reach ``target`` (objective ≤), their time and the speed-up."""
    for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 500):
        r, tk, _, _ = ours(k, threads, ftol=1e-15, gtol=1e-12)
        if f(r.weights) <= target:
            return (
                f"reaches it in {r.iterations} iterations, {tk:.3f} s with set-up: speed-up {t_ref / tk:.1f}x at "
                f"objective {f(r.weights):.3e}"
            )
    return "does not reach it in 500 iterations"


def floor(model, repeat: int = 10) -> tuple[float, float]:
    """Seconds of the matrix products one evaluation needs (forward and transposed: the physical dose for a
    constant RBE, the α- and √β-dose for LEM; on the model's own row blocks and threads), and the bytes
    they read per second (GB/s)."""
    ops = model.operators()
    w = np.ones(model.P.shape[1], np.float32)
    y = np.ones(model.P.shape[0], np.float32)
    t = time.perf_counter()
    for _ in range(repeat):
        for op in ops:
            op @ w
            op.rmatvec(y)
    sec = (time.perf_counter() - t) / repeat
    read = sum(2 * (8 * op.nnz + 4 * op.shape[0]) for op in ops)  # data + indices per entry, row pointers
    return sec, read / sec / 1e9


def read_bandwidth() -> float:
    """GB/s of a streaming read (NumPy sum over 400 MB): the memory-bandwidth floor's rate."""
    a = np.ones(100_000_000, np.float32)
    a.sum()
    t = time.perf_counter()
    for _ in range(5):
        a.sum()
    return 5 * a.nbytes / (time.perf_counter() - t) / 1e9


def part2(gtv_cc=300.0):
    from dosepaint.geometry import Grid
    from dosepaint.planning.engine import PyRadPlanEngine
    from dosepaint.planning.plans import painted_course, rbe_model, uniform_course
    from dosepaint.stages.plan import calc_voxels, structure_rows

    img, masks, r = phantom(gtv_cc)
    grid = Grid.from_image(img)
    masks["CTV_HD_minus_GTV"] = masks["CTV_HD"] & ~masks["GTV"]
    calc, ring, sample = calc_voxels(masks, grid, oars=[], ring_mm=10.0, body_step=3)
    eng = PyRadPlanEngine(modality="carbon", bixel_width_mm=6.0, layer_spacing_mm=6.0)
    t = time.perf_counter()
    inf = eng.influence(img, target=masks["CTV_LD"], calc_voxels=calc)
    t_inf = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = structure_rows(inf, masks, ring=ring, body_sample=sample)
    rng = np.random.default_rng(7)
    clon = 0.01 * np.exp(rng.normal(np.log(2e5), 0.8, rows["GTV"].size)) * 27.0
    params = {
        "prescription_gy": 73.6,
        "n_ld": 9,
        "n_hd": 7,
        "oar_limits_gy": {},
        "tcp": {"alpha": 0.1, "alpha_beta": 2.0},
        "weights": {"target": 100.0, "oar": 10.0, "ring": 5.0, "body": 1.0, "tcp": 1.0, "let": 0.0},
        "ring_max_fraction": 0.8,
        "body_max_fraction": 0.5,
        "ld_max_fraction": 1.05,
        "gtv_lower": 0.95,
        "oar_margin_fraction": 0.97,
        "coverage_fraction": 0.97,
        "hotspot_fraction": 1.02,
        "gtv_upper": 1.10,
        "let_min_kev_um": 43.0,
        "max_iter": 80,
        "outer_iterations": 8,
    }
    model = rbe_model(inf, constant_rbe=1.1)
    t = time.perf_counter()
    uni = uniform_course(inf, model, rows, params=params)
    t_uni = time.perf_counter() - t
    t = time.perf_counter()
    de = painted_course(inf, model, rows, uni, clonogens_gtv=clon, mean_fraction=1.03, params=params)
    t_de = time.perf_counter() - t
    g = de.dose[rows["GTV"]]
    print(
        f"[2] carbon DE, GTV {masks['GTV'].sum() * 27 / 1000:.0f} cm³ (3 mm grid): {inf.n_spots} spots × "
        f"{inf.n_voxels} voxels, nnz {inf.physical.nnz}"
    )
    print(f"    dose influence {t_inf:.0f} s, peak RSS {peak:.0f} MB")
    print(
        f"    uniform course {t_uni:.1f} s; DE boost optimisation {t_de:.1f} s "
        f"({de.results['phase2'].iterations} iterations); GTV mean {g.mean() / 73.6:.4f} D_P, "
        f"range [{g.min() / 73.6:.3f}, {g.max() / 73.6:.3f}] D_P"
    )


def part3(results: Path):
    import pandas as pd

    for rule in ("dose_influence", "plan"):
        files = sorted((results / "benchmarks" / rule).glob("*.tsv"))
        if not files:
            continue
        b = pd.concat([pd.read_csv(f, sep="\t").assign(pid=f.stem) for f in files])
        print(f"[3] {rule}: " + ", ".join(f"{r.pid} {r.s:.0f} s / {r.max_rss:.0f} MB" for r in b.itertuples()))


if __name__ == "__main__":
    which = {a for a in sys.argv[1:] if a in ("1", "2")} or {"1", "2"}
    if "1" in which:
        print(f"streaming read bandwidth (NumPy sum, one core): {read_bandwidth():.1f} GB/s")
        part1("protons")
        part1("carbon")
    if "2" in which:
        part2()
    for a in sys.argv[1:]:
        if Path(a).is_dir():
            part3(Path(a))
