"""TCP model fit (docs/method.md §2): known answers, derivatives, recovery, and the leakage guard."""

import numpy as np
import pandas as pd
import pytest

from dosepaint import radiobiology as rb
from dosepaint import tcp_fit as tf
from dosepaint.errors import DosepaintInputError
from dosepaint.stages import tcp_fit as stage

ALPHA, AB, NFX, LOG10_FC = 0.087, 2.0, 16, -2.0


def _cohort(rng, n, *, dose_range=(60.0, 78.0)):
    """Patients with lognormal cell densities (cells per 27 mm³ voxel) and a spread of mean doses;
    returns the PatientDose list and each patient's true TCP by radiobiology.poisson_tcp."""
    patients, tcps = [], []
    for _ in range(n):
        nv = int(rng.integers(500, 3000))
        cells = rng.lognormal(np.log(3e5), 0.6, nv)
        dose = rng.normal(rng.uniform(*dose_range), 1.5, nv)
        patients.append(tf.PatientDose.from_arrays(cells, dose, alpha_beta=AB, n_fractions=NFX))
        tcps.append(rb.poisson_tcp(10**LOG10_FC * cells, dose, alpha=ALPHA, beta=ALPHA / AB, n_fractions=NFX))
    return patients, np.array(tcps)


def test_prediction_equals_the_poisson_tcp_and_binning_is_negligible():
    rng = np.random.default_rng(3)
    cells = rng.lognormal(np.log(3e5), 0.6, 20000)
    dose = rng.normal(70.0, 3.0, 20000)
    truth = rb.poisson_tcp(0.01 * cells, dose, alpha=ALPHA, beta=ALPHA / AB, n_fractions=NFX)
    exact = tf.PatientDose.from_arrays(cells, dose, alpha_beta=AB, n_fractions=NFX, bin_gy=0.0)
    binned = tf.PatientDose.from_arrays(cells, dose, alpha_beta=AB, n_fractions=NFX, bin_gy=0.05)
    assert binned.bed_gy.size < exact.bed_gy.size / 5  # 20000 voxels in < 2500 bins of 0.05 Gy
    assert tf.predict([exact], alpha=ALPHA, log10_fc=-2.0)[0] == pytest.approx(truth, rel=1e-12)
    assert tf.predict([binned], alpha=ALPHA, log10_fc=-2.0)[0] == pytest.approx(truth, rel=1e-5)


def test_likelihood_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    patients, tcps = _cohort(rng, 30)
    y = (rng.random(30) < tcps).astype(float)
    x, h = np.array([0.09, -2.3]), 1e-6
    _, g = tf.bernoulli_nll(patients, y, alpha=x[0], log10_fc=x[1])
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        fd = (
            tf.bernoulli_nll(patients, y, alpha=x[0] + e[0], log10_fc=x[1] + e[1])[0]
            - tf.bernoulli_nll(patients, y, alpha=x[0] - e[0], log10_fc=x[1] - e[1])[0]
        ) / (2 * h)
        assert g[k] == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("estimator", tf.ESTIMATORS)
def test_both_estimators_recover_the_model_from_exact_tcps(estimator):
    # With the true TCPs as (fractional) outcomes both objectives are minimal at the truth.
    patients, tcps = _cohort(np.random.default_rng(7), 27)
    f = tf.fit(patients, tcps, estimator=estimator)
    assert f.alpha == pytest.approx(ALPHA, rel=1e-4)
    assert f.log10_fc == pytest.approx(LOG10_FC, abs=1e-3)


def test_bootstrap_ci_covers_the_truth_on_simulated_outcomes():
    rng = np.random.default_rng(11)
    patients, tcps = _cohort(rng, 150, dose_range=(45.0, 80.0))
    y = (rng.random(tcps.size) < tcps).astype(float)
    f = tf.fit(patients, y)
    boot = tf.bootstrap(patients, y, rng=np.random.default_rng(0), n_boot=60)
    assert boot["alpha"][0] < ALPHA < boot["alpha"][1]
    assert boot["log10_fc"][0] < LOG10_FC < boot["log10_fc"][1]
    assert boot["alpha"][0] < f.alpha < boot["alpha"][1]
    # the fit predicts better than chance on its own data
    assert tf.auc(tf.predict(patients, alpha=f.alpha, log10_fc=f.log10_fc), y) > 0.7


def test_auc_and_brier_known_values():
    pred, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert tf.auc(pred, y) == pytest.approx(0.75)  # 3 of the 4 (control, relapse) pairs ordered
    assert tf.brier(pred, y) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert np.isnan(tf.auc(pred, [1, 1, 1, 1]))


def test_fit_stage_refuses_a_held_out_patient(tmp_path):
    split = tmp_path / "split.tsv"
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "split": ["train", "train", "test"], "event": [0, 1, 0]}).to_csv(
        split, sep="\t", index=False
    )
    inputs = {"split": str(split), "rtdose": ["a", "b"], "cell_density": ["a", "b"], "masks_dose": ["a", "b"]}
    with pytest.raises(DosepaintInputError) as err:
        stage.run(
            inputs,
            {"fit": str(tmp_path / "fit.json"), "patients": str(tmp_path / "p.tsv")},
            params={
                "patient_ids": ["P1", "P3"],
                "alpha_beta": AB,
                "n_fractions": NFX,
                "bin_gy": 0.05,
                "estimator": "least_squares",
                "alpha_bounds": [0.01, 1.0],
                "log10_fc_bounds": [-6.0, 0.0],
                "bootstrap": 0,
                "seed": 0,
            },
        )
    assert "P3" in str(err.value) and "training" in str(err.value)
    assert not (tmp_path / "fit.json").exists()


def test_identifiability_flags_name_bounds_wide_cis_and_a_worse_than_chance_auc():
    from dosepaint.tcp_fit import identifiability_flags

    box = dict(alpha_bounds=(0.01, 1.0), log10_fc_bounds=(-6.0, 0.0))
    good = {
        "alpha": 0.087,
        "log10_fc": -2.0,
        "alpha_ci95": [0.06, 0.12],
        "log10_fc_ci95": [-3.0, -1.2],
        "train_auc": 0.8,
    }
    assert identifiability_flags(good, **box) == []
    bad = {"alpha": 0.2, "log10_fc": 0.0, "alpha_ci95": [0.011, 0.99], "log10_fc_ci95": [0.0, 0.0], "train_auc": 0.0}
    assert identifiability_flags(bad, **box) == [
        "alpha 95 % CI [0.011, 0.99] spans its bound range [0.01, 1]",
        "log10_fc = 0 at its bound [-6, 0]",
        "training AUC 0.00 < 0.5",
    ]


def test_a_fit_on_three_patients_whose_failure_got_the_most_dose_is_flagged():
    """Three training patients, one failure, the failure with the fewest cells and the highest dose:
    no Poisson model ranks it right (training AUC 0), and the fit says so."""
    import numpy as np

    from dosepaint import tcp_fit as tf

    patients = [
        tf.PatientDose.from_arrays(np.full(50, cells), np.full(50, dose), alpha_beta=2.0, n_fractions=16, bin_gy=0.5)
        for cells, dose in ((1e7, 60.0), (1e7, 65.0), (1e6, 74.0))
    ]
    y = np.array([1.0, 1.0, 0.0])
    box = dict(alpha_bounds=(0.01, 1.0), log10_fc_bounds=(-6.0, 0.0))
    f = tf.fit(patients, y, **box)
    pred = tf.predict(patients, alpha=f.alpha, log10_fc=f.log10_fc)
    flags = tf.identifiability_flags({"alpha": f.alpha, "log10_fc": f.log10_fc, "train_auc": tf.auc(pred, y)}, **box)
    assert "training AUC 0.00 < 0.5" in flags


def test_profile_likelihood_of_alpha_peaks_at_the_fit_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(11)
    patients, tcps = _cohort(rng, 150, dose_range=(45.0, 80.0))
    y = (rng.random(tcps.size) < tcps).astype(float)
    ml = tf.fit(patients, y, estimator="maximum_likelihood")
    prof = tf.profile_alpha(patients, y, n_grid=81)
    # the profile's minimum is the ML fit (to the grid's spacing, 6 % in α) and equals its NLL there
    assert prof["alpha_hat"] == pytest.approx(ml.alpha, rel=0.06)
    assert min(prof["nll"]) == pytest.approx(ml.objective, abs=0.05)
    assert prof["bounded"] == [True, True] and prof["ci"][0] < ALPHA < prof["ci"][1]
    # on the interval's ends the likelihood ratio is χ²₁(0.95) = 3.84 (linear interpolation on the grid)
    grid, nll = np.log(prof["alpha"]), np.array(prof["nll"])
    for end in prof["ci"]:
        assert 2 * (np.interp(np.log(end), grid, nll) - min(nll)) == pytest.approx(3.841, abs=0.05)
