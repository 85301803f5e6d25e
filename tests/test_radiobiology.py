import numpy as np
import pytest

from dosepaint.radiobiology import eqd2, log_surviving_clonogens, lq_effect, poisson_tcp


def test_lq_effect_closed_form():
    # 73.6 Gy in 16 fractions with α = 0.1, β = 0.05: 7.36 + 0.05·73.6²/16 = 7.36 + 16.928 = 24.288.
    assert lq_effect(73.6, alpha=0.1, beta=0.05, n_fractions=16) == pytest.approx(24.288)


def test_poisson_tcp_matches_direct_formula():
    rng = np.random.default_rng(0)
    n = rng.uniform(1e3, 1e5, 50)
    d = rng.uniform(60, 80, 50)
    direct = np.exp(-np.sum(n * np.exp(-(0.2 * d + 0.1 * d**2 / 16))))
    assert poisson_tcp(n, d, alpha=0.2, beta=0.1, n_fractions=16) == pytest.approx(direct, rel=1e-12)


def test_tcp_of_uniform_dose_and_d50():
    # N clonogens, uniform dose: TCP = exp(−N e^{−αD}) (β = 0); TCP = 0.5 at D50 = (ln N − ln ln 2)/α.
    n_total, alpha = 1e9, 0.35
    d50 = (np.log(n_total) - np.log(np.log(2))) / alpha
    n = np.full(1000, n_total / 1000)
    assert poisson_tcp(n, np.full(1000, d50), alpha=alpha, beta=0.0, n_fractions=16) == pytest.approx(0.5)


def test_log_domain_survives_huge_counts_and_skips_empty_voxels():
    # 1e300 clonogens per voxel would overflow a naive product; zeros are skipped.
    n = np.array([1e300, 1e300, 0.0])
    d = np.array([2000.0, 2000.0, 0.0])
    L = log_surviving_clonogens(n, d, alpha=0.35, beta=0.0, n_fractions=1)
    assert L == pytest.approx(np.log(2) + 300 * np.log(10) - 700.0)
    assert poisson_tcp(np.zeros(3), d, alpha=0.35, beta=0, n_fractions=1) == 1.0


def test_eqd2_of_2gy_fractions_is_identity():
    assert eqd2(60.0, dose_per_fraction=2.0, alpha_beta=2.0) == pytest.approx(60.0)
    assert eqd2(73.6, dose_per_fraction=4.6, alpha_beta=2.0) == pytest.approx(73.6 * 6.6 / 4)
