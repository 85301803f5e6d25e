"""Sweep stages: the point table, a closed-form point on a homogeneous phantom, the summary."""

import json

import numpy as np
import pandas as pd
import pytest

from dosepaint.cohort import read_sweep_points
from dosepaint.errors import DosepaintInputError
from dosepaint.geometry import Grid
from dosepaint.io import files
from dosepaint.stages import sweep


def test_read_points_validates(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("de_mean_fraction\talpha_beta\tsigma_scale\n1.03\t2\t1\n1.05\t2\t1\n")
    assert read_sweep_points(p)["de_mean_fraction"].tolist() == [1.03, 1.05]
    p.write_text("de_mean_fraction\talpha_beta\n1.03\t2\n")
    with pytest.raises(DosepaintInputError, match="columns must be"):
        read_sweep_points(p)
    p.write_text("de_mean_fraction\talpha_beta\tsigma_scale\n1.03\t2\t1\n1.03\t2\t1\n")
    with pytest.raises(DosepaintInputError, match="repeats"):
        read_sweep_points(p)
    p.write_text("de_mean_fraction\talpha_beta\tsigma_scale\n1.03\t-2\t1\n")
    with pytest.raises(DosepaintInputError, match="positive"):
        read_sweep_points(p)


def _phantom(tmp_path, *, rmse_value=0.01):
    grid = Grid(shape=(6, 6, 6), spacing=(3.0, 3.0, 3.0), origin=(0.0, 0.0, 0.0))
    gtv = np.zeros(grid.shape, bool)
    gtv[1:5, 1:5, 1:5] = True
    (tmp_path / "masks").mkdir()
    files.write_array(gtv.astype(np.uint8), grid, tmp_path / "masks" / "GTV.nii.gz", dtype=np.uint8)
    files.write_array(np.full(grid.shape, 73.6), grid, tmp_path / "dose.nii.gz")
    files.write_array(np.full(grid.shape, 2.0e5), grid, tmp_path / "rho.nii.gz")
    files.write_array(np.full(grid.shape, rmse_value), grid, tmp_path / "rmse.nii.gz")
    pd.DataFrame({"patient_id": ["P1"], "split": ["test"], "event": [0]}).to_csv(
        tmp_path / "split.tsv", sep="\t", index=False
    )
    fit = {"train_ids": ["T1"], "model": {"alpha": 0.08, "alpha_beta": 2.0, "clonogenic_fraction": 1e-3}}
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    (tmp_path / "sigma.json").write_text(json.dumps({"sigma": 0.01, "centre": 0.0}))
    return {
        "split": tmp_path / "split.tsv",
        "fit": tmp_path / "fit.json",
        "sigma": tmp_path / "sigma.json",
        "uniform_dose": tmp_path / "dose.nii.gz",
        "cell_density": tmp_path / "rho.nii.gz",
        "rmse": tmp_path / "rmse.nii.gz",
        "masks_dose": tmp_path / "masks",
    }, gtv.sum() * 27.0


def test_patient_point_on_a_homogeneous_phantom_is_the_closed_form(tmp_path):
    # Uniform cell density: the TCP-optimal dose at mean m·D_P is m·D_P everywhere, so
    # TCP = exp(−N e^{−αD − βD²/n}) with N = f_c ρ V, D = m·D_P.
    inputs, volume_mm3 = _phantom(tmp_path)
    alpha, beta, n = 0.08, 0.04, 16
    big_n = 1e-3 * 2.0e5 * volume_mm3
    out = {"row": tmp_path / "row.tsv"}
    params = {"patient_id": "P1", "prescription_gy": 73.6, "n_fractions": n, "gtv_lower": 0.95, "gtv_upper": 1.10}
    for m in (1.0, 1.04):
        r = sweep.run_patient(
            inputs, out, params={**params, "point": {"de_mean_fraction": m, "alpha_beta": 2.0, "sigma_scale": 1.0}}
        ).iloc[0]
        d = m * 73.6
        assert r["tcp_ideal_de_nominal"] == pytest.approx(
            np.exp(-big_n * np.exp(-alpha * d - beta * d * d / n)), rel=1e-5
        )
    d0 = 73.6
    s0 = big_n * np.exp(-alpha * d0 - beta * d0 * d0 / n)
    assert r["tcp_uniform_nominal"] == pytest.approx(np.exp(-s0), rel=1e-5)
    # RMSE = σ: w = 1 ∓ ½(1 − e^{−1/2}); σ scaled by 2: w = 1 ∓ ½(1 − e^{−1/8})
    g = 0.5 * (1 - np.exp(-0.5))
    assert r["tcp_uniform_worst"] == pytest.approx(np.exp(-s0 * (1 + g)), rel=1e-5)
    r2 = sweep.run_patient(
        inputs, out, params={**params, "point": {"de_mean_fraction": 1.0, "alpha_beta": 2.0, "sigma_scale": 2.0}}
    ).iloc[0]
    g2 = 0.5 * (1 - np.exp(-0.125))
    assert r2["tcp_uniform_best"] == pytest.approx(np.exp(-s0 * (1 - g2)), rel=1e-5)
    with pytest.raises(ValueError, match="alpha/beta"):
        sweep.run_patient(
            inputs, out, params={**params, "point": {"de_mean_fraction": 1.0, "alpha_beta": 3.0, "sigma_scale": 1.0}}
        )


def test_summary_averages_over_patients_and_draws_the_gain(tmp_path):
    paths = []
    for i, (pid, m) in enumerate([("P1", 1.01), ("P2", 1.01), ("P1", 1.03), ("P2", 1.03)]):
        row = {
            "patient_id": pid,
            "de_mean_fraction": m,
            "alpha_beta": 2.0,
            "sigma_scale": 1.0,
            "alpha": 0.08,
            "clonogenic_fraction": 1e-3,
        }
        for scen, off in (("nominal", 0.0), ("best", 0.05), ("worst", -0.05)):
            row[f"tcp_uniform_{scen}"] = 0.7 + off
            row[f"tcp_ideal_de_{scen}"] = 0.7 + off + (m - 1.0) * (1 + i % 2)
        p = tmp_path / f"r{i}.tsv"
        pd.DataFrame([row]).to_csv(p, sep="\t", index=False)
        paths.append(str(p))
    out = {"summary": tmp_path / "s.tsv", "rows": tmp_path / "rows.tsv", "figure": tmp_path / "f.png"}
    s = sweep.run_summary(
        {"rows": paths}, out, params={"default": {"de_mean_fraction": 1.03, "alpha_beta": 2.0, "sigma_scale": 1.0}}
    ).set_index("de_mean_fraction")
    assert s.loc[1.01, "gain_mean_pp"] == pytest.approx(1.5)  # (1 + 2) / 2
    assert s.loc[1.03, "gain_mean_pp"] == pytest.approx(4.5)
    assert s.loc[1.03, "n_patients"] == 2
    assert out["figure"].stat().st_size > 5000
