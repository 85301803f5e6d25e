"""Survival statistics against published values on lifelines' bundled datasets."""

import numpy as np
import pytest
from lifelines.datasets import load_leukemia, load_rossi

from dosepaint import survival as sv


def test_leukemia_logrank_chi2_is_the_published_16_79():
    # Freireich's 6-MP trial (Kleinbaum & Klein, Survival Analysis, ch. 2): log-rank χ² = 16.79, 1 df
    d = load_leukemia()
    r = sv.logrank(d["t"], d["status"], d["Rx"])
    assert r["chi2"] == pytest.approx(16.79, abs=0.005)
    assert r["df"] == 1
    assert r["p"] == pytest.approx(4.17e-5, rel=0.01)


def test_leukemia_kaplan_meier_of_the_6mp_arm_is_the_textbook_table():
    # The 6-MP arm (Rx = 0 in lifelines' copy): S(t) at the event times 6, 7, 10, 13, 16, 22, 23 weeks
    d = load_leukemia()
    km = sv.kaplan_meier(d["t"], d["status"], d["Rx"])
    arm = km[km["group"] == "0"].set_index("time")["survival"]
    expected = {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    for t, s in expected.items():
        assert arm.loc[float(t)] == pytest.approx(s, abs=5e-4)
    placebo = km[km["group"] == "1"]
    assert placebo["survival"].iloc[-1] == 0.0  # every placebo patient relapsed
    assert placebo["at_risk"].iloc[0] == 21


def test_rossi_cox_coefficients_are_the_published_ones():
    # Fox & Weisberg, Cox Proportional-Hazards Regression for Survival Data in R (2011), Table: coxph on
    # the Rossi recidivism data with all seven covariates (Efron ties); LR test 33.27 on 7 df
    published = {
        "fin": -0.37942,
        "age": -0.05744,
        "race": 0.31390,
        "wexp": -0.14980,
        "mar": -0.43370,
        "paro": -0.08487,
        "prio": 0.09150,
    }
    se = {"fin": 0.19138, "age": 0.02200, "prio": 0.02865}
    r = sv.cox(load_rossi(), duration="week", event="arrest", covariates=list(published))
    s = r["summary"].set_index("covariate")
    for k, v in published.items():
        assert s.loc[k, "coef"] == pytest.approx(v, abs=5e-5)
    for k, v in se.items():
        assert s.loc[k, "se"] == pytest.approx(v, abs=5e-5)
    assert r["log_likelihood_ratio"]["chi2"] == pytest.approx(33.27, abs=0.005)
    assert r["log_likelihood_ratio"]["df"] == 7
    assert r["converged"] and r["n"] == 432 and r["events"] == 114
    assert r["concordance"] == pytest.approx(0.640, abs=0.001)


def test_concordance_of_a_perfect_and_a_reversed_score():
    t = np.array([5.0, 10.0, 15.0, 20.0])
    e = np.ones(4, int)
    assert sv.concordance(t, t, e) == 1.0
    assert sv.concordance(t, -t, e) == 0.0


def test_cox_on_separated_data_reports_instead_of_raising():
    # all relapses in the low-score group: the MLE of the coefficient is infinite
    t = np.array([3.0, 5.0, 8.0, 40.0, 50.0, 60.0])
    import pandas as pd

    df = pd.DataFrame({"time": t, "event": [1, 1, 1, 0, 0, 0], "tcp": [0.1, 0.2, 0.3, 0.8, 0.9, 0.95]})
    r = sv.cox(df, duration="time", event="event", covariates=["tcp"])
    assert r["n"] == 6 and r["events"] == 3
    assert not r["converged"]
    assert r["message"]


def test_median_split_puts_ties_at_the_median_into_high():
    g, thr = sv.split_groups([0.2, 0.5, 0.5, 0.9])
    assert thr == 0.5
    assert g.tolist() == ["low", "high", "high", "high"]
    g, thr = sv.split_groups([0.2, 0.9], threshold=0.95)
    assert g.tolist() == ["low", "low"] and thr == 0.95


def test_no_relapse_gives_nan_statistics_not_an_error():
    import pandas as pd

    t = np.array([10.0, 20.0, 30.0])
    e = np.zeros(3, int)
    assert np.isnan(sv.concordance(t, [0.5, 0.6, 0.7], e))
    assert np.isnan(sv.logrank(t, e, ["high", "low", "high"])["p"])
    r = sv.cox(pd.DataFrame({"t": t, "e": e, "tcp": [0.5, 0.6, 0.7]}), duration="t", event="e", covariates=["tcp"])
    assert not r["converged"] and r["message"] == "no relapse: nothing to fit"
