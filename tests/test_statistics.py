"""Held-out statistics: known answers of the tests, Holm's correction by hand, Table 1 quartiles."""

import numpy as np
import pandas as pd
import pytest

from dosepaint import statistics as st


def _metrics():
    # 5 patients x 2 plans; DE = uniform + 1, 2, 3, 4, 5 Gy in the GTV D95, identical elsewhere
    rows = []
    for i, pid in enumerate(["P1", "P2", "P3", "P4", "P5"]):
        base = 70.0 + i
        rows.append({"patient_id": pid, "plan": "uniform", "GTV_D95": base, "GTV_L50": 40.0 + i})
        rows.append({"patient_id": pid, "plan": "de", "GTV_D95": base + i + 1, "GTV_L50": 40.0 + i})
    return pd.DataFrame(rows)


def test_median_iqr_uses_linear_quartiles():
    assert st.median_iqr([1, 2, 3, 4]) == (2.5, 1.75, 3.25)
    assert st.format_median_iqr(*st.median_iqr([70, 71, 72, 73, 74])) == "72.0 [71.0–73.0]"
    assert np.isnan(st.median_iqr([np.nan])[0])


def test_table1_long_and_wide():
    long = st.table1(
        _metrics(), plans=["uniform", "de"], regions=["GTV"], dose_metrics=["D95"], let_metrics=["L50", "L1"]
    )
    d95 = long[(long["metric"] == "D95")].set_index("plan")
    assert d95.loc["uniform", "median"] == 72.0 and d95.loc["uniform", "q25"] == 71.0
    assert d95.loc["de", "median"] == 75.0 and d95.loc["de", "q75"] == 77.0  # 71, 73, 75, 77, 79
    assert long.set_index(["metric", "plan"]).loc[("L50", "de"), "unit"] == "keV/µm"
    assert long.set_index(["metric", "plan"]).loc[("L1", "de"), "n"] == 0  # missing column: empty, not an error
    wide = st.table1_wide(long)
    assert wide.columns.tolist() == ["region", "metric", "unit", "uniform", "de"]
    assert wide.iloc[0]["de"] == "75.0 [73.0–77.0]"
    md = st.to_markdown(wide)
    assert md.splitlines()[0] == "| region | metric | unit | uniform | de |"
    tex = st.to_latex(wide, caption="Table 1", label="tab:1")
    assert r"\toprule" in tex and "$\\mu$" in tex


def test_wilcoxon_exact_p_for_n_positive_differences():
    # all n differences positive and distinct: the exact two-sided p is 2 / 2^n
    for n in (5, 10):
        a = np.zeros(n)
        b = np.arange(1, n + 1, dtype=float)
        w, p, method = st.wilcoxon_paired(a, b)
        assert method == "exact"
        assert p == pytest.approx(2.0 / 2**n)
    assert st.wilcoxon_paired([1, 2], [1, 2])[1] == 1.0


def test_mann_whitney_known_answer():
    # complete separation of 5 vs 5: U = 0 and the exact two-sided p = 2 / C(10, 5) = 2/252
    u, p = st.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0.0
    assert p == pytest.approx(2.0 / 252.0)


def test_holm_by_hand():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 0.02, 0.03, 0.06, max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(st.holm(p), [0.03, 0.06, 0.06, np.nan, 0.02])


def test_compare_plans_corrects_within_each_comparison():
    t = st.compare_plans(_metrics(), columns=["GTV_D95", "GTV_L50"], comparisons=[("uniform", "de")])
    r = t.set_index("metric")
    assert r.loc["GTV_D95", "n_pairs"] == 5
    assert r.loc["GTV_D95", "median_difference"] == 3.0
    assert r.loc["GTV_D95", "wilcoxon_p"] == pytest.approx(2 / 32)
    assert r.loc["GTV_L50", "wilcoxon_p"] == 1.0  # identical
    # Holm over the two metrics: min(1, 2 x 0.0625) and max(that, 1)
    assert r.loc["GTV_D95", "wilcoxon_p_holm"] == pytest.approx(0.125)
    assert r.loc["GTV_L50", "wilcoxon_p_holm"] == 1.0
    # Shapiro on 5 values of an arithmetic progression: W of a uniform sample, p well above 0.05
    assert r.loc["GTV_D95", "shapiro_p_reference"] > 0.5


def test_tcp_by_scenario_and_tertiles():
    rows = []
    for i, pid in enumerate(["P1", "P2", "P3"]):
        for scen, w in (("nominal", 0.0), ("worst", -0.1)):
            rows += [
                {"patient_id": pid, "plan": "uniform", "cell_count": scen, "tcp": 0.6 + 0.1 * i + w},
                {"patient_id": pid, "plan": "de", "cell_count": scen, "tcp": 0.7 + 0.1 * i + w},
            ]
    t = st.tcp_by_scenario(pd.DataFrame(rows)).set_index(["cell_count", "plan"])
    assert t.loc[("nominal", "uniform"), "tcp_mean_pct"] == pytest.approx(70.0)
    assert t.loc[("nominal", "uniform"), "tcp_sd_pct"] == pytest.approx(10.0)
    assert t.loc[("worst", "de"), "delta_vs_reference_mean_pp"] == pytest.approx(10.0)
    assert t.loc[("worst", "de"), "n_improved"] == 3
    # differences all equal (ties): the normal approximation, two-sided
    assert t.loc[("worst", "de"), "wilcoxon_method"] == "normal approximation"

    tert = pd.DataFrame(
        [
            {"patient_id": p, "plan": "de", "tertile": lab, "delta_tcp_subvolume_pp": v + k}
            for k, p in enumerate(["P1", "P2", "P3", "P4", "P5"])
            for lab, v in (("low", 1.0), ("medium", 5.0), ("high", 10.0 + k))
        ]
    )
    s = st.tertile_summary(tert).set_index(["plan", "tertile"])
    assert s.loc[("de", "low"), "delta_tcp_mean_pp"] == pytest.approx(3.0)
    assert s.loc[("de", "high − low"), "delta_tcp_mean_pp"] == pytest.approx(11.0)
    assert s.loc[("de", "high − low"), "wilcoxon_p"] == pytest.approx(2 / 32)
