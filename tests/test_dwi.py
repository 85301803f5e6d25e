import numpy as np
import pytest

from dosepaint.dwi import (
    FLAG_ADC_RANGE,
    FLAG_NONPOSITIVE,
    FLAG_TOO_FEW_B,
    AdcLookup,
    build_library,
    clonogens,
    fit_adc,
    match_signals,
)
from dosepaint.microstructure import cell_density

B = np.array([0.0, 50.0, 100.0, 200.0, 400.0, 600.0, 800.0, 1000.0])


def test_adc_of_a_monoexponential_is_exact():
    adc = np.array([0.5e-3, 1.0e-3, 2.0e-3])
    s = 800.0 * np.exp(-np.outer(B, adc))
    fit = fit_adc(s, B)
    np.testing.assert_allclose(fit.adc, adc, rtol=1e-10)
    np.testing.assert_allclose(fit.s0, 800.0, rtol=1e-10)
    np.testing.assert_allclose(fit.residual_rms, 0.0, atol=1e-12)
    assert fit.valid.all()


def test_b_min_removes_the_perfusion_component():
    # IVIM: 10 % pseudo-diffusion (D* = 20e-3 mm²/s) on top of D = 1e-3 mm²/s.
    s = 0.9 * np.exp(-B * 1e-3) + 0.1 * np.exp(-B * 20e-3)
    assert fit_adc(s, B, b_min=100).adc == pytest.approx(1e-3, rel=0.02)
    assert fit_adc(s, B, b_min=0).adc > 1.1e-3


def test_bad_voxels_are_flagged_not_filled():
    s = 500.0 * np.exp(-np.outer(B, [1e-3, 1e-3, 1e-3]))
    s[5, 0] = -3.0  # non-physical signal
    s[:, 2] *= np.exp(B * 1.5e-3)  # ADC = −0.5e-3: rising signal
    fit = fit_adc(s, B)
    assert fit.flags[0] & FLAG_NONPOSITIVE and np.isnan(fit.adc[0])
    assert fit.flags[1] == 0
    assert fit.flags[2] & FLAG_ADC_RANGE and np.isnan(fit.s0[2])
    one_b = fit_adc(s[[0, 7]], B[[0, 7]])
    assert (one_b.flags & FLAG_TOO_FEW_B).all()


def test_library_entries():
    lib = build_library(
        B,
        delta=0.02,
        Delta=0.04,
        grid={"radius_um": (5, 10, 3), "vf": (0.1, 0.5, 5), "d_in": (1e-3, 1e-3, 1), "d_free": (2.5e-3, 2.5e-3, 1)},
    )
    assert lib.signals.shape == (15, 8)
    np.testing.assert_allclose(
        lib.params["cell_density"], cell_density(radius=lib.params["radius"], vf=lib.params["vf"])
    )
    # More cells → lower ADC at fixed radius.
    r5 = np.isclose(lib.params["radius"], 5e-3)
    assert np.all(np.diff(lib.adc[r5][np.argsort(lib.params["vf"][r5])]) < 0)


def test_adc_lookup_recovers_vf_when_adc_is_unambiguous():
    # One radius and diffusivity: ADC is a monotonic function of vf, so the lookup inverts it.
    lib = build_library(
        B,
        delta=0.02,
        Delta=0.04,
        grid={"radius_um": (8, 8, 1), "vf": (0.05, 0.6, 111), "d_in": (1e-3, 1e-3, 1), "d_free": (2.5e-3, 2.5e-3, 1)},
    )
    look = AdcLookup(lib, adc_sigma=0.002e-3)
    pick = [10, 50, 90]
    m = look(lib.adc[pick])
    np.testing.assert_allclose(m.vf, lib.params["vf"][pick], atol=0.006)
    np.testing.assert_allclose(m.cell_density, lib.params["cell_density"][pick], rtol=0.03)
    assert np.isnan(look(np.array([lib.adc.max() * 2])).vf[0])  # outside the library: not matched


def test_signal_match_returns_exact_entries_without_noise():
    lib = build_library(
        B,
        delta=0.02,
        Delta=0.04,
        grid={"radius_um": (4, 12, 5), "vf": (0.1, 0.6, 6), "d_in": (0.8e-3, 1.4e-3, 3), "d_free": (2e-3, 3e-3, 3)},
    )
    pick = np.array([3, 77, 200])
    sn = lib.signals[pick][:, B >= 100].T
    m = match_signals(sn, lib, k=4)
    np.testing.assert_allclose(m.radius, lib.params["radius"][pick], rtol=1e-6)
    np.testing.assert_allclose(m.vf, lib.params["vf"][pick], rtol=1e-6)
    np.testing.assert_allclose(m.rmse, 0.0, atol=1e-6)


def test_clonogens_from_density():
    rho = np.array([[1e5, np.nan], [0.0, 2e5]])
    n = clonogens(rho, voxel_volume_mm3=27.0, clonogenic_fraction=0.01)
    np.testing.assert_allclose(n, [[27000.0, 0.0], [0.0, 54000.0]])
