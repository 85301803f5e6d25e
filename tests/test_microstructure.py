import numpy as np
import pytest
from scipy.special import spherical_jn

from dosepaint.microstructure import (
    cell_density,
    extracellular_diffusivity,
    sphere_roots,
    sphere_signal,
    two_compartment_signal,
)

B = np.array([0.0, 100.0, 500.0, 1000.0, 2000.0])


def test_sphere_roots_match_published_values():
    # Roots of μ J'_{3/2}(μ) − ½ J_{3/2}(μ) = 0 quoted in docs/method.md §3 (and Murday & Cotts 1968).
    np.testing.assert_allclose(sphere_roots(3), [2.0816, 5.9404, 9.2058], atol=1e-4)
    assert np.allclose(spherical_jn(1, sphere_roots(10), derivative=True), 0, atol=1e-10)


def test_sphere_signal_is_one_at_b0_and_decreases():
    e = sphere_signal(B, 0.008, 1.0e-3, delta=0.02, Delta=0.04)
    assert e[0] == 1.0
    assert np.all(np.diff(e) < 0)


@pytest.mark.parametrize("radius", [0.1, 0.2, 0.5])
def test_large_sphere_follows_mitra_short_time_limit(radius):
    # Narrow pulses, R ≫ √(DΔ): D_app/D = 1 − 4/(9√π)·(S/V)·√(DΔ) with S/V = 3/R (Mitra et al. 1992).
    D, Delta = 1.0e-3, 0.04
    expected = 1 - 4 / (9 * np.sqrt(np.pi)) * (3 / radius) * np.sqrt(D * Delta)
    e = sphere_signal(B[1:], radius, D, delta=0.002, Delta=Delta, n_roots=400)
    np.testing.assert_allclose(np.log(e) / (-B[1:] * D), expected, rtol=0.005)


def test_small_sphere_motional_narrowing_limit():
    # D δ / R² ≫ 1: ln E = −(16/175) γ²G² δ R⁴ / D (Neuman 1974).
    R, D, delta, Delta = 0.0015, 2.5e-3, 0.03, 0.06
    g2 = B / (delta**2 * (Delta - delta / 3))
    expected = -16.0 / 175.0 * g2 * delta * R**4 / D
    e = sphere_signal(B, R, D, delta=delta, Delta=Delta)
    np.testing.assert_allclose(np.log(e[1:]), expected[1:], rtol=0.03)


def test_two_compartment_limits():
    kw = dict(radius=0.008, d_in=1.1e-3, d_free=2.5e-3, delta=0.02, Delta=0.04)
    free = two_compartment_signal(B, vf=0.0, **kw)
    np.testing.assert_allclose(free, np.exp(-B * 2.5e-3))
    cells = two_compartment_signal(B, vf=1.0, **kw)
    np.testing.assert_allclose(cells, sphere_signal(B, 0.008, 1.1e-3, delta=0.02, Delta=0.04))
    assert extracellular_diffusivity(0.5, 2.5e-3) == pytest.approx(2.0e-3)


def test_two_compartment_broadcasts_over_voxels():
    vf = np.array([[0.1, 0.3], [0.5, 0.7]])
    s = two_compartment_signal(B, radius=0.008, vf=vf, d_in=1e-3, d_free=2.5e-3, delta=0.02, Delta=0.04)
    assert s.shape == (2, 2, len(B))
    # More cells, more restriction: signal at high b rises with vf.
    assert s[0, 0, -1] < s[1, 1, -1]


def test_cell_density_of_known_cells():
    # 10 µm radius cells at vf 0.5: 0.5 / (4/3 π 1e-6 mm³) = 119 366 cells/mm³.
    assert cell_density(radius=0.01, vf=0.5) == pytest.approx(119366.2, rel=1e-6)


@pytest.mark.parametrize("radius_um", [2.0, 5.0, 8.0, 12.0, 15.0, 20.0])
@pytest.mark.parametrize("d_in", [0.6e-3, 1.0e-3, 1.6e-3])
def test_sphere_signal_agrees_with_dmipy_fit(radius_um, d_in):
    """An independent implementation: dmipy-fit's Gaussian-phase sphere (SI units, G not b)."""
    sphere_models = pytest.importorskip("dmipy_fit.signal_models.sphere_models")
    from dmipy_fit.core.constants import CONSTANTS

    gamma = CONSTANTS["water_gyromagnetic_ratio"]  # rad/(s·T)
    delta, Delta = 0.020, 0.040  # s, the synthetic protocol's PGSE timing
    b = np.array([100.0, 400.0, 800.0, 1000.0, 2000.0])  # s/mm²
    g = np.sqrt(b * 1e6 / ((gamma * delta) ** 2 * (Delta - delta / 3.0)))  # T/m
    model = sphere_models.S4SphereGaussianPhaseApproximation(diffusion_constant=d_in * 1e-6)
    ref = model.sphere_attenuation(g, delta, Delta, 2.0 * radius_um * 1e-6)
    ours = sphere_signal(b, radius_um * 1e-3, d_in, delta=delta, Delta=Delta)
    assert ours.min() < 0.998  # a signal that is actually attenuated
    # dmipy sums 100 roots, we sum 20: the truncation difference is below 1e-7.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)
