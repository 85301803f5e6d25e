"""Robustness scenarios: the scenario grid, cell-count weights, ΔTCP forms, tertiles, DVH bands, and
pyRadPlan forward calculations under setup and range errors on a water phantom (known answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dosepaint import radiobiology as rbio
from dosepaint import robustness as rob

from .test_planning import proton_influence  # noqa: F401 (a fixture)

ALPHA, BETA, NFX = 0.08, 0.04, 16


# -- scenario grid ----------------------------------------------------------------------------------

STUDY_SHIFTS = [[0, 0, 0], [3, 0, 0], [-3, 0, 0], [0, 3, 0], [0, -3, 0], [0, 0, 3], [0, 0, -3]]


def test_study_grid_has_21_named_scenarios_nominal_first():
    grid = rob.scenario_grid(STUDY_SHIFTS, [0, 3, -3])
    assert len(grid) == 21 and grid[0].nominal and grid[0].name == "s+0_+0_+0_r+0"
    assert len({s.name for s in grid}) == 21
    import re

    for s in grid:
        assert re.fullmatch(rob.SCENARIO_PATTERN, s.name)
        assert rob.Scenario.from_name(s.name) == s
    s = rob.Scenario.from_name("s-3_+0_+1.5_r+3")
    assert s.shift_mm == (-3.0, 0.0, 1.5) and s.range_scale == pytest.approx(1.03)
    assert s.base() == rob.Scenario((0.0, 0.0, 0.0), 3.0)


def test_grid_without_nominal_or_with_repeats_is_refused():
    with pytest.raises(ValueError, match="nominal"):
        rob.scenario_grid([[3, 0, 0]], [0])
    with pytest.raises(ValueError, match="repeats"):
        rob.scenario_grid([[0, 0, 0], [0, 0, 0]], [0])
    with pytest.raises(ValueError, match="not a scenario name"):
        rob.Scenario.from_name("nominal")


# -- cell-count scenarios ---------------------------------------------------------------------------


def test_cell_count_weights_closed_form():
    sigma = 0.2
    r = np.array([0.0, sigma, 1e6, np.nan])
    best, worst = rob.cell_count_weights(r, sigma=sigma)
    g = 0.5 * (1 - np.exp(-0.5))  # r = σ
    np.testing.assert_allclose(best, [1.0, 1 - g, 0.5, 1.0])
    np.testing.assert_allclose(worst, [1.0, 1 + g, 1.5, 1.0])
    best_c, _ = rob.cell_count_weights(np.array([0.3]), sigma=sigma, centre=0.3)
    assert best_c[0] == 1.0  # centred: the mean RMSE is "no uncertainty"


def test_rmse_spread_is_the_sd_of_the_population():
    r = np.array([0.1, 0.2, 0.3, np.nan])
    assert rob.rmse_spread(r) == (0.0, pytest.approx(0.1))
    assert rob.rmse_spread(r, centring="mean") == (pytest.approx(0.2), pytest.approx(0.1))
    with pytest.raises(ValueError):
        rob.rmse_spread([0.1])


# -- ΔTCP -------------------------------------------------------------------------------------------


def test_additive_delta_ln_tcp_sums_to_the_roi_difference():
    rng = np.random.default_rng(11)
    n = np.exp(rng.normal(5.0, 1.0, 500))
    du = np.full(500, 73.6)
    dp = du + rng.uniform(-3.0, 8.0, 500)
    dtcp, dln = rob.delta_tcp_voxels(n, dp, du, alpha=ALPHA, beta=BETA, n_fractions=NFX)
    lp = rbio.log_surviving_clonogens(n, dp, alpha=ALPHA, beta=BETA, n_fractions=NFX)
    lu = rbio.log_surviving_clonogens(n, du, alpha=ALPHA, beta=BETA, n_fractions=NFX)
    # ln TCP = −exp(L): Σ Δln TCP_i = ln TCP_P − ln TCP_U
    assert dln.sum() == pytest.approx(-np.exp(lp) + np.exp(lu), rel=1e-10)
    s = n * np.exp(-(ALPHA * dp + BETA * dp**2 / NFX))
    np.testing.assert_allclose(dtcp, np.exp(-s) - np.exp(-n * np.exp(-(ALPHA * du + BETA * du**2 / NFX))))
    assert np.all(np.sign(dtcp) == np.sign(dp - du))


def test_tertiles_and_their_delta_tcp():
    counts = np.arange(1.0, 301.0)
    lo, hi = rob.tertile_thresholds(counts)
    assert (lo, hi) == (pytest.approx(100.667, abs=1e-3), pytest.approx(200.333, abs=1e-3))
    t = rob.tertile_of(counts, (lo, hi))
    assert np.bincount(t).tolist() == [100, 100, 100]
    su = np.full(300, 0.01)
    sp = np.where(t == 2, 0.005, np.where(t == 0, 0.012, 0.01))  # DR-like: cold low, hot high
    out = rob.delta_tcp_by_tertile(sp, su, t)
    np.testing.assert_allclose(out["subvolume"], [np.exp(-1.2) - np.exp(-1.0), 0.0, np.exp(-0.5) - np.exp(-1.0)])
    np.testing.assert_allclose(out["dlntcp"], [-0.2, 0.0, 0.5])
    np.testing.assert_allclose(out["voxel_mean"], [np.exp(-0.012) - np.exp(-0.01), 0.0, np.exp(-0.005) - np.exp(-0.01)])


# -- DVH bands, worst case, rigid shift -------------------------------------------------------------


def test_dvh_band_and_worst_case():
    d = np.array([[70.0, 72.0, 74.0, 76.0], [68.0, 73.0, 75.0, 77.0]])
    lo, hi = rob.dvh_band(d, bins=np.array([0.0, 72.5, 76.5]))
    np.testing.assert_allclose(lo, [100.0, 50.0, 0.0])
    np.testing.assert_allclose(hi, [100.0, 75.0, 25.0])
    target = np.array([True, True, False, False])
    np.testing.assert_allclose(rob.worst_case_dose(d, target), [68.0, 72.0, 75.0, 77.0])


def test_shift_to_voxels_follows_the_grid_direction():
    prone = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(
        rob.shift_to_voxels((6.0, 0.0, 3.0), direction=prone, spacing_zyx=(3.0, 3.0, 3.0)), [1.0, 0.0, -2.0]
    )
    d = np.random.default_rng(2).uniform(size=(5, 6, 7))
    np.testing.assert_allclose(rob.rigid_shift(d, (0, 0, -1))[:, :, :-1], d[:, :, 1:])


# -- pyRadPlan under scenarios (water phantom, 6 mm grid) ------------------------------------------


@pytest.fixture(scope="module")
def water(proton_influence):  # noqa: F811 (the imported fixture)
    eng, img, body, _, inf = proton_influence
    w = np.ones(inf.n_spots)
    return eng, img, body, inf, w, eng.forward(img, inf, w, body=body)["physical_dose"]


def test_lateral_setup_shift_moves_the_dose_with_the_beam(water):
    eng, img, body, inf, w, nominal = water
    shifted = eng.forward(img, inf, w, body=body, shift_mm=(6.0, 0.0, 0.0))["physical_dose"]
    vox = rob.shift_to_voxels(
        (6.0, 0.0, 0.0), direction=np.reshape(img.GetDirection(), (3, 3)), spacing_zyx=img.GetSpacing()[::-1]
    )
    np.testing.assert_allclose(vox, [0.0, 0.0, -1.0])
    # In homogeneous water a lateral shift of the beam is a rigid shift of the dose: the labelled
    # fast approximation is exact here (away from the box's lateral walls).
    approx = rob.rigid_shift(nominal, vox)
    inner = np.s_[:, :, 5:21]
    np.testing.assert_allclose(shifted[inner], approx[inner], atol=1e-6 * nominal.max())
    assert np.abs(shifted - nominal).max() > 0.2 * nominal.max()  # the lateral penumbra moved


def test_range_error_scales_the_depth_of_the_distal_falloff(water):
    eng, img, body, inf, w, nominal = water
    same = eng.forward(img, inf, w, body=body, range_scale=1.0 + 1e-9)["physical_dose"]
    np.testing.assert_allclose(same, nominal, atol=1e-6 * nominal.max())  # our WET path = pyRadPlan's HU path

    def distal_50_depth(dose):
        # Beam from posterior; water starts at array index 3 along axis 1 (surface at 2.5).
        prof = dose[6:10, :, 10:16].sum(axis=(0, 2))
        prof = prof / prof.max()
        i = int(np.flatnonzero(prof >= 0.5)[-1])
        frac = (prof[i] - 0.5) / (prof[i] - prof[i + 1])
        return (i + frac - 2.5) * 6.0

    d0 = distal_50_depth(nominal)
    for scale in (1.03, 0.97):
        ds = distal_50_depth(eng.forward(img, inf, w, body=body, range_scale=scale)["physical_dose"])
        assert ds == pytest.approx(d0 / scale, abs=1.0), (scale, d0, ds)  # 6 mm grid, linear interpolation


# -- stage functions on small known inputs ------------------------------------------------------------


def test_rigid_shift_scenario_moves_the_base_doses_one_voxel(tmp_path):
    from dosepaint.geometry import Grid
    from dosepaint.io import files
    from dosepaint.stages import robustness as stage

    grid = Grid(
        shape=(4, 5, 6), spacing=(3.0, 3.0, 3.0), origin=(0.0, 0.0, 0.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    )
    files.write_array(np.zeros(grid.shape), grid, tmp_path / "ct_dose.nii.gz")
    rng = np.random.default_rng(3)
    dose = rng.uniform(60.0, 80.0, grid.shape)
    voxels = np.arange(dose.size)
    stage._write_scenario(
        tmp_path / "base.npz", voxels, grid, {"uniform": dose.ravel()}, method="recalculated", scenario="s+0_+0_+0_r+3"
    )
    stage._write_scenario(
        tmp_path / "base0.npz",
        voxels,
        grid,
        {"uniform": 2 * dose.ravel()},
        method="recalculated",
        scenario="s+0_+0_+0_r+0",
    )
    stage.run_shift(
        {"bases": [tmp_path / "base0.npz", tmp_path / "base.npz"], "ct_dose": tmp_path / "ct_dose.nii.gz"},
        {"doses": [tmp_path / "out.npz", tmp_path / "out0.npz"]},
        params={"patient_id": "P1", "scenarios": ["s+3_+0_+0_r+3", "s+0_+0_-3_r+0"]},
    )
    out = stage._read_scenario(tmp_path / "out.npz")
    assert out["method"] == "rigid_shift" and out["scenario"] == "s+3_+0_+0_r+3"
    moved = out["doses"]["uniform"].reshape(grid.shape)
    # +3 mm along LPS x on a grid whose x index runs along −x: one voxel towards lower index.
    np.testing.assert_allclose(moved[:, :, :-1], dose[:, :, 1:], rtol=1e-6)
    # Each scenario moves its own range error's doses: −3 mm along z (index along +z) from r+0.
    out0 = stage._read_scenario(tmp_path / "out0.npz")
    assert out0["scenario"] == "s+0_+0_-3_r+0"
    np.testing.assert_allclose(out0["doses"]["uniform"].reshape(grid.shape)[:-1], 2 * dose[1:], rtol=1e-6)
    from dosepaint.errors import DosepaintInputError

    with pytest.raises(DosepaintInputError, match="no doses of scenario s\\+0_\\+0_\\+0_r-3"):
        stage.run_shift(
            {"bases": [tmp_path / "base.npz"], "ct_dose": tmp_path / "ct_dose.nii.gz"},
            {"doses": [tmp_path / "x.npz"]},
            params={"patient_id": "P1", "scenarios": ["s+3_+0_+0_r-3"]},
        )


def test_summary_pools_held_out_voxels_for_the_tertiles(tmp_path):
    from dosepaint.io import files
    from dosepaint.stages import robustness as stage

    rng = np.random.default_rng(8)
    inputs = {"voxels": [], "scenario_metrics": [], "cell_count_tcp": []}
    pooled = []
    for k, pid in enumerate(("A", "B")):
        cells = np.exp(rng.normal(12.0 + k, 0.5, 200))
        pooled.append(cells)
        su = 1e-3 * np.ones(200)
        arrays = {
            "cells_per_voxel": cells,
            "survivors_uniform": su,
            "survivors_de": 0.5 * su,
            "survivors_dr": np.where(cells > np.median(cells), 0.5, 1.5) * su,
        }
        np.savez(tmp_path / f"{pid}.npz", **arrays)
        inputs["voxels"].append(tmp_path / f"{pid}.npz")
        sm = pd.DataFrame(
            [
                {"patient_id": pid, "plan": p, "scenario": s, "GTV_D95": d, "goals_met": 3, "goals_total": 4}
                for p in ("uniform", "de", "dr")
                for s, d in (("s+0_+0_+0_r+0", 72.0), ("s+3_+0_+0_r+0", 70.0 - k))
            ]
        )
        files.write_tsv(sm, tmp_path / f"{pid}_sm.tsv")
        inputs["scenario_metrics"].append(tmp_path / f"{pid}_sm.tsv")
        cc = pd.DataFrame(
            [
                {"patient_id": pid, "plan": p, "cell_count": c, "tcp": t}
                for p in ("uniform", "de", "dr")
                for c, t in (("nominal", 0.8), ("best", 0.83), ("worst", 0.77 - 0.01 * k))
            ]
        )
        files.write_tsv(cc, tmp_path / f"{pid}_cc.tsv")
        inputs["cell_count_tcp"].append(tmp_path / f"{pid}_cc.tsv")
    outputs = {
        k: tmp_path / f"out_{k}" for k in ("summary", "tertiles", "tertile_thresholds", "scenarios", "cell_count")
    }
    summary = stage.run_summary(
        inputs, outputs, params={"patient_ids": ["A", "B"], "tertile_percentiles": [100 / 3, 200 / 3]}
    )
    thr = files.read_json(outputs["tertile_thresholds"])["tertile_thresholds_cells_per_voxel"]
    np.testing.assert_allclose(thr, np.percentile(np.concatenate(pooled), [100 / 3, 200 / 3]))
    tert = files.read_tsv(outputs["tertiles"])
    assert tert.groupby("patient_id")["n_voxels"].sum().tolist() == [400, 400]  # de and dr rows, 200 voxels each
    # Patient B has more cells: more of its voxels fall in the pooled high tertile.
    hi = tert[(tert["plan"] == "de") & (tert["tertile"] == "high")].set_index("patient_id")["n_voxels"]
    assert hi["B"] > hi["A"]
    s = summary.set_index("plan")
    assert s.loc["de", "tcp_best_minus_nominal_pp_max"] == pytest.approx(3.0)
    assert s.loc["de", "tcp_worst_minus_nominal_pp_min"] == pytest.approx(-4.0)
    assert s.loc["uniform", "gtv_d95_worst_scenario_min_gy"] == pytest.approx(69.0)
    assert s.loc["uniform", "scenario_goals_met_fraction"] == pytest.approx(0.75)
    de_hi = tert[(tert["plan"] == "de") & (tert["tertile"] == "high")]
    expect = [100 * (np.exp(-0.5e-3 * n) - np.exp(-1e-3 * n)) for n in de_hi["n_voxels"]]
    np.testing.assert_allclose(de_hi["delta_tcp_subvolume_pp"], expect, rtol=1e-5)  # TSV: 6 digits


def _scenario_inputs(influence, tmp_path, weights: dict):
    """run_scenario inputs for the proton water phantom: influence, CT, masks and spot weights."""
    from dosepaint.geometry import Grid
    from dosepaint.io import files

    eng, img, body, target, inf = influence
    inf.save(tmp_path / "influence.npz")
    sitk.WriteImage(img, str(tmp_path / "ct_dose.nii.gz"))
    grid = Grid.from_image(img)
    (tmp_path / "masks").mkdir()
    for name, m in {
        "GTV": target,
        "CTV_HD": target,
        "CTV_LD": target,
        "CTV_HD_minus_GTV": np.zeros_like(target),
        "CTV_LD_minus_GTV": np.zeros_like(target),
        "BODY": body,
    }.items():
        files.write_array(m.astype(np.uint8), grid, tmp_path / "masks" / f"{name}.nii.gz")
    inputs = {
        "influence": tmp_path / "influence.npz",
        "ct_dose": tmp_path / "ct_dose.nii.gz",
        "masks_dose": tmp_path / "masks",
    }
    for plan, (w1, w2) in weights.items():
        files.write_spot_weights(tmp_path / f"{plan}.npz", phase1=w1, phase2=w2, n_ld=9, n_hd=7)
        inputs[f"{plan}_weights"] = tmp_path / f"{plan}.npz"
    params = {"patient_id": "P7", "oar_limits_gy": {}, "setup_shifts_mm": [[0, 0, 0], [6, 0, 0]],
              "setup_method": "rigid_shift", "constant_rbe": 1.1}  # fmt: skip
    return inputs, params


def test_recalculated_scenario_is_both_phases_forward_at_the_scaled_range(proton_influence, tmp_path):  # noqa: F811
    from dosepaint.stages import robustness as stage

    eng, img, body, target, inf = proton_influence
    w1 = np.linspace(0.5, 1.5, inf.n_spots)
    w2 = np.where(np.arange(inf.n_spots) % 2 == 0, 1.0, 0.0)
    inputs, params = _scenario_inputs(
        proton_influence, tmp_path, {"uniform": (w1, w2), "de": (w1, 2 * w2), "dr": (w1, w2)}
    )
    stage.run_scenario(inputs, {"doses": tmp_path / "out.npz"}, params=params | {"scenario": "s+0_+0_+0_r+3"})
    out = stage._read_scenario(tmp_path / "out.npz")
    assert out["method"] == "recalculated"

    def fwd(w):
        return eng.forward(img, inf, w, body=body, range_scale=1.03)["physical_dose"].ravel()[out["voxels"]]

    expect = 1.1 * (9 * fwd(w1) + 7 * fwd(w2))
    np.testing.assert_allclose(out["doses"]["uniform"], expect, rtol=1e-5, atol=1e-6 * expect.max())
    # DE doubles the boost weights: its dose minus uniform is the boost's again (linear in w)
    np.testing.assert_allclose(
        out["doses"]["de"] - out["doses"]["uniform"], 1.1 * 7 * fwd(w2), rtol=1e-4, atol=1e-5 * expect.max()
    )


def test_a_patients_scenarios_in_one_job_equal_one_job_each(proton_influence, tmp_path):  # noqa: F811
    """robustness.scenario_jobs: patient writes every scenario's file with the doses, voxels and method
    that one job per scenario writes, bit for bit (nominal, range errors and a setup shift)."""
    from dosepaint.geometry import Grid
    from dosepaint.io import files
    from dosepaint.stages import robustness as stage

    img, n = proton_influence[1], proton_influence[4].n_spots
    w1, w2 = np.linspace(0.5, 1.5, n), np.where(np.arange(n) % 2 == 0, 1.0, 0.0)
    weights = {"uniform": (w1, w2), "de": (w1, 2 * w2), "dr": (w1, w2)}
    inputs, params = _scenario_inputs(proton_influence, tmp_path, weights)
    for k, plan in enumerate(weights, start=1):  # the nominal scenario reads the plans' doses
        dose = np.full(img.GetSize()[::-1], float(k), np.float32)
        inputs[f"{plan}_dose"] = tmp_path / f"{plan}_dose.nii.gz"
        files.write_array(dose, Grid.from_image(img), inputs[f"{plan}_dose"])
    names = ["s+0_+0_+0_r+0", "s+0_+0_+0_r+3", "s+6_+0_+0_r-3", "s+0_+0_+0_r-3"]
    together = [tmp_path / f"together_{k}.npz" for k in range(len(names))]
    rec = stage.run_scenarios(inputs, {"doses": together}, params=params | {"scenarios": names})
    assert [rec[nm]["method"] for nm in names] == ["nominal"] + ["recalculated"] * 3
    for name, path in zip(names, together):
        stage.run_scenario(inputs, {"doses": tmp_path / "alone.npz"}, params=params | {"scenario": name})
        a, b = stage._read_scenario(path), stage._read_scenario(tmp_path / "alone.npz")
        assert (a["scenario"], a["method"]) == (b["scenario"], b["method"]) == (name, rec[name]["method"])
        np.testing.assert_array_equal(a["voxels"], b["voxels"])
        for plan in ("uniform", "de", "dr"):
            np.testing.assert_array_equal(a["doses"][plan], b["doses"][plan], err_msg=f"{name} {plan}")
    doses = [stage._read_scenario(p)["doses"]["de"] for p in together]
    assert np.all(doses[0] == 2.0) and not np.array_equal(doses[1], doses[3])  # each file its own scenario


def test_recalculated_setup_scenarios_compute_the_structures_alone_with_the_same_doses(proton_influence, tmp_path):  # noqa: F811
    """With every setup scenario recalculated no rigid shift needs the margin: fewer voxels, equal doses."""
    from dosepaint.stages import robustness as stage

    n = proton_influence[4].n_spots
    w = (np.linspace(0.5, 1.5, n), np.ones(n))
    inputs, params = _scenario_inputs(proton_influence, tmp_path, {"uniform": w, "de": w, "dr": w})
    out = {}
    for method in ("rigid_shift", "recalculate"):
        p = params | {"scenario": "s+0_+0_+0_r+3", "setup_method": method}
        stage.run_scenario(inputs, {"doses": tmp_path / f"{method}.npz"}, params=p)
        out[method] = stage._read_scenario(tmp_path / f"{method}.npz")
    target = np.flatnonzero(proton_influence[3].ravel())
    assert set(out["recalculate"]["voxels"]) == set(target) < set(out["rigid_shift"]["voxels"])
    pos = np.searchsorted(out["rigid_shift"]["voxels"], out["recalculate"]["voxels"])
    np.testing.assert_allclose(out["recalculate"]["doses"]["de"], out["rigid_shift"]["doses"]["de"][pos], rtol=1e-6)


def test_scenario_with_weights_of_another_influence_names_patient_and_file(proton_influence, tmp_path):  # noqa: F811
    from dosepaint.errors import DosepaintInputError
    from dosepaint.stages import robustness as stage

    n = proton_influence[4].n_spots
    good, bad = (np.ones(n), np.ones(n)), (np.ones(n - 3), np.ones(n - 3))
    inputs, params = _scenario_inputs(proton_influence, tmp_path, {"uniform": good, "de": bad, "dr": good})
    with pytest.raises(DosepaintInputError) as err:
        stage.run_scenario(inputs, {"doses": tmp_path / "out.npz"}, params=params | {"scenario": "s+3_+0_+0_r+0"})
    msg = str(err.value)
    assert "P7" in msg and "de.npz" in msg and f"{n - 3} vs {n} spots" in msg
    assert not (tmp_path / "out.npz").exists()


def test_a_patients_scenario_job_with_bad_weights_fails_whole_before_writing(proton_influence, tmp_path):  # noqa: F811
    """One job for all scenarios: the weights are checked before any scenario is written, the guard
    records the failure naming the file, and every scenario file is an empty placeholder (never a
    nominal file beside missing recalculated ones)."""
    from dosepaint.stages import robustness as stage
    from dosepaint.stages.guard import run_guarded

    n = proton_influence[4].n_spots
    good, bad = (np.ones(n), np.ones(n)), (np.ones(n - 3), np.ones(n - 3))
    inputs, params = _scenario_inputs(proton_influence, tmp_path, {"uniform": good, "de": bad, "dr": good})
    names = ["s+0_+0_+0_r+0", "s+0_+0_+0_r+3"]
    outputs = {"doses": [tmp_path / f"{nm}.npz" for nm in names], "status": tmp_path / "status.json"}
    params = params | {"scenarios": names, "on_input_error": "exclude"}
    record = run_guarded(stage.run_scenarios, inputs, outputs, params=params, stage="scenario_dose")
    assert record["status"] == "failed" and record["file"].endswith("de.npz")
    assert f"{n - 3} vs {n} spots" in record["problem"]
    assert [p.stat().st_size for p in outputs["doses"]] == [0, 0]


def test_interval_end_counts_keep_rows_when_a_gtv_voxel_has_no_density(tmp_path):
    """A GTV voxel without a density counts 0 cells at the interval's ends, as in the nominal count;
    all-NaN maps (the study's lookup) give no rows."""
    from dosepaint.geometry import Grid
    from dosepaint.io import files
    from dosepaint.stages.robustness import _quantile_cells

    grid = Grid.from_orientation(shape=(1, 2, 2), spacing=(2.0, 2.0, 2.0), origin=(0, 0, 0), iop=(1, 0, 0, 0, 1, 0))
    g = np.ones((1, 2, 2), bool)
    lo = np.array([[[1e5, np.nan], [2e5, 3e5]]])
    files.write_array(lo, grid, tmp_path / "lo.nii.gz")
    files.write_array(2 * lo, grid, tmp_path / "hi.nii.gz")
    files.write_array(np.full((1, 2, 2), np.nan), grid, tmp_path / "nan.nii.gz")
    got = _quantile_cells({"cell_density_lo": tmp_path / "lo.nii.gz", "cell_density_hi": tmp_path / "hi.nii.gz"},
                          g, grid)  # fmt: skip
    np.testing.assert_allclose(got["posterior_lo"], [8e5, 0.0, 1.6e6, 2.4e6], rtol=1e-6)  # ρ · 8 mm³
    np.testing.assert_allclose(got["posterior_hi"], 2 * got["posterior_lo"], rtol=1e-6)
    both_nan = {"cell_density_lo": tmp_path / "nan.nii.gz", "cell_density_hi": tmp_path / "nan.nii.gz"}
    assert _quantile_cells(both_nan, g, grid) == {}
