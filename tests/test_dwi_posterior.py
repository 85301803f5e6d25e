"""The Bayesian cell-density posterior, the per-b noise estimates and the ``dwi_estimate`` command."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import rice

from dosepaint.dwi import fit_adc
from dosepaint.dwi_noise import background_sigma, residual_sigma
from dosepaint.dwi_posterior import build_prior_library, log_i0_scaled, posterior, rician_loglik_core, sample_prior
from dosepaint.microstructure import two_compartment_signal

B = np.array([0.0, 50, 100, 400, 700, 1000])
TIMING = {"delta": 0.02, "Delta": 0.04}


def _rician(signal, sigma, rng):
    return np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))


def _voxels(theta, *, s0=1000.0, snr=40.0, seed=0):
    rng = np.random.default_rng(seed)
    clean = s0 * two_compartment_signal(B, radius=theta["radius"], vf=theta["vf"], d_in=theta["d_in"],
                                        d_free=theta["d_free"], **TIMING)  # fmt: skip
    return clean, _rician(clean, s0 / snr, rng), s0 / snr


@pytest.mark.parametrize("m", [0.5, 3.0, 40.0, 60.0])
def test_rician_core_differs_from_scipy_by_a_constant_in_nu(m):
    """Both branches (mν/σ² below and above 100, where the asymptotic series replaces i0e)."""
    nu = np.array([0.1, 1.0, 5.0, 38.0, 41.0, 58.0])
    full = rice.logpdf(m, nu / 1.3, scale=1.3)
    ok = np.isfinite(full)  # scipy underflows to -inf far from the mode
    diff = full[ok] - rician_loglik_core(m, nu[ok], 1.3)
    assert ok.sum() >= 3 and np.allclose(diff, diff[0], atol=1e-6)


def test_log_i0_scaled_equals_scipys_i0e_on_both_sides_of_the_series():
    """SciPy's i0e (double precision) on a dense grid from 1e-3 to 1e3, across the switch at 15; 2-D input."""
    from scipy.special import i0e

    x = np.concatenate([np.geomspace(1e-3, 1e3, 4001), [np.nextafter(15.0, 0.0), 15.0, 100.0]])
    ref = np.log(i0e(x)) + 0.5 * np.log(2 * np.pi * x)
    got = log_i0_scaled(x)
    assert np.abs(got - ref).max() < 1e-9
    assert np.array_equal(log_i0_scaled(x[:4000].reshape(40, 100)), got[:4000].reshape(40, 100))
    assert abs(log_i0_scaled(np.array([1e3]))[0] - 1 / 8e3) < 1e-7  # I0 e^-x √(2πx) → 1 + 1/(8x)


def test_posterior_intervals_cover_at_their_level_when_truth_is_drawn_from_the_prior():
    """Self-consistency: θ drawn from the prior, Rician noise at SNR 40 → 90 % intervals cover ~90 %."""
    lib = build_prior_library(B, n_samples=4096, seed=0, **TIMING)
    theta = {k: v[:1500] for k, v in sample_prior(n_samples=1500, seed=7).items()}
    _, m, sigma = _voxels(theta)
    post = posterior(m, sigma=sigma, library=lib)
    rho = theta["cell_density"]
    cover = np.mean((rho >= post.cell_density_lo) & (rho <= post.cell_density_hi))
    assert 0.87 <= cover <= 0.93
    assert np.all(post.cell_density_lo <= post.cell_density_median)
    assert np.all(post.cell_density_median <= post.cell_density_hi)
    # The data inform ρ: the posterior SD of ln ρ is well below the prior's.
    assert np.mean(post.sd_log_cell_density) < 0.8 * np.std(np.log(lib.params["cell_density"]))


def test_noise_from_the_background_per_b_value_follows_the_averages():
    """Two averages at the high b halve the variance: σ_b = σ/√2 there, measured from the air."""
    rng = np.random.default_rng(3)
    body = np.zeros((30, 60, 60), bool)
    body[:, 15:45, 15:45] = True
    sig = np.array([10.0, 10.0, 10.0 / np.sqrt(2)])
    vols = np.stack(
        [_rician(np.where(body, 400.0 * np.exp(-b * 1e-3), 0.0), s, rng) for b, s in zip([0, 500, 1000], sig)]
    )
    est = background_sigma(vols)
    assert np.allclose(est, sig, rtol=0.03)
    vols[:, ~body] = 0.0  # a masked export: no background
    assert background_sigma(vols) is None


def test_noise_from_fit_residuals_of_monoexponential_tissue():
    rng = np.random.default_rng(4)
    adc = rng.uniform(0.8e-3, 1.6e-3, 4000)
    clean = 500.0 * np.exp(-np.outer(B, adc))
    m = _rician(clean, 5.0, rng)
    fit = fit_adc(m, B, b_min=100.0)
    est = residual_sigma(m, B, adc=fit.adc, s0=fit.s0, b_min=100.0)
    assert np.allclose(est, 5.0, rtol=0.08)


@pytest.fixture
def hand_npz(tmp_path):
    """An IN.npz a user writes by hand: 400 voxels of known microstructure, b = 0 included."""
    rng = np.random.default_rng(11)
    n = 400
    theta = {"radius": rng.uniform(6e-3, 11e-3, n), "vf": rng.uniform(0.2, 0.55, n),
             "d_in": rng.uniform(0.9e-3, 1.4e-3, n), "d_free": rng.uniform(2.2e-3, 2.9e-3, n)}  # fmt: skip
    clean, m, sigma = _voxels(theta, snr=50.0, seed=12)
    path = tmp_path / "in.npz"
    np.savez(path, signal=m, bvalues=B, delta_ms=20.0, Delta_ms=40.0, noise_sigma=sigma)
    rho = theta["vf"] / (4 / 3 * np.pi * theta["radius"] ** 3)
    return path, rho, fit_adc(clean.T, B, b_min=100.0, weighting="none").adc, m


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dosepaint.dwi_estimate", *map(str, args)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_command_on_a_hand_written_npz(hand_npz, tmp_path):
    path, rho, adc_clean, _ = hand_npz
    res = _run(path, tmp_path / "out.npz")
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert set(out.files) >= {"cell_density", "cell_density_lo", "cell_density_hi", "adc", "flags"}
        lo, hi, adc = out["cell_density_lo"], out["cell_density_hi"], out["adc"]
        assert out["cell_density"].shape == (400,) and out["flags"].dtype == np.uint8
    assert 0.85 <= np.mean((rho >= lo) & (rho <= hi)) <= 1.0
    # ADC from the noise-floor-corrected signal: within 2 % of the noise-free fit (median ratio).
    assert abs(np.median(adc / adc_clean) - 1) < 0.02


def test_command_estimates_the_noise_and_reads_a_config(hand_npz, tmp_path):
    path, rho, _, m = hand_npz
    bare = tmp_path / "bare.npz"
    np.savez(bare, signal=m, bvalues=B, delta_ms=20.0, Delta_ms=40.0)  # no noise_sigma
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dwi:\n  credible_level: 0.5\n  prior:\n    radius_um: [4.0, 14.0]\n")
    assert _run(bare, tmp_path / "o.npz", "--config", cfg).returncode == 0
    with np.load(tmp_path / "o.npz") as out:
        width = np.median(np.log(out["cell_density_hi"] / out["cell_density_lo"]))
    assert _run(bare, tmp_path / "o90.npz").returncode == 0
    with np.load(tmp_path / "o90.npz") as out:
        assert width < np.median(np.log(out["cell_density_hi"] / out["cell_density_lo"]))


def test_command_refuses_bad_input_clearly(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, signal=np.ones((5, 3)), bvalues=B, delta_ms=20.0, Delta_ms=40.0)
    res = _run(bad, tmp_path / "o.npz")
    assert res.returncode == 2 and "signal has shape (5, 3), expected (n_voxels, 6)" in res.stderr
    assert "Traceback" not in res.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dwi:\n  priors: {}\n")
    np.savez(bad, signal=np.ones((5, 6)), bvalues=B, delta_ms=20.0, Delta_ms=40.0, noise_sigma=1.0)
    res = _run(bad, tmp_path / "o.npz", "--config", cfg)
    assert res.returncode == 2 and "unknown dwi keys ['priors']" in res.stderr


def test_empirical_prior_learns_a_narrow_population_and_sharpens_its_voxels():
    """Voxels of one tumour (narrow vf and D_free, radius 7–10 µm): reweighting the broad prior by EM
    narrows the intervals and improves the ranking, and the weights stay a distribution with the floor."""
    from scipy.stats import spearmanr

    from dosepaint.dwi_posterior import empirical_prior

    rng = np.random.default_rng(21)
    n = 800
    theta = {"radius": rng.uniform(7e-3, 10e-3, n), "vf": rng.uniform(0.3, 0.45, n),
             "d_in": rng.uniform(1.0e-3, 1.3e-3, n), "d_free": rng.uniform(2.4e-3, 2.7e-3, n)}  # fmt: skip
    _, m, sigma = _voxels(theta, snr=50.0, seed=22)
    rho = theta["vf"] / (4 / 3 * np.pi * theta["radius"] ** 3)
    lib = build_prior_library(B, n_samples=4096, seed=0, **TIMING)
    w = empirical_prior(m, sigma=sigma, library=lib, floor=0.1)
    assert w.sum() == pytest.approx(1.0) and w.min() >= 0.1 / w.size * (1 - 1e-12)
    broad = posterior(m, sigma=sigma, library=lib)
    eb = posterior(m, sigma=sigma, library=lib, prior_weights=w)
    width = {k: np.median(np.log(p.cell_density_hi / p.cell_density_lo)) for k, p in (("broad", broad), ("eb", eb))}
    assert width["eb"] < width["broad"]
    assert spearmanr(rho, eb.cell_density_median)[0] > spearmanr(rho, broad.cell_density_median)[0]
    assert np.mean((rho >= eb.cell_density_lo) & (rho <= eb.cell_density_hi)) >= 0.85


def test_the_fast_likelihood_equals_the_rician_density_up_to_a_voxel_constant():
    """The in-place float32 sum over b-values (asymptotic log I0 with the i0e correction where mν/σ² ≤ 100)
    against rician_loglik_core summed, for a low-SNR voxel (both branches) and a high-SNR one."""
    from dosepaint.dwi_posterior import _loglik

    lib = build_prior_library(B, n_samples=256, seed=0, **TIMING)
    use = B >= lib.b_min
    E = lib.signals[:, use]
    m = np.array([[30.0, 12.0, 6.0, 3.0], [900.0, 700.0, 520.0, 400.0]])
    sigma = np.array([[4.0] * 4, [10.0] * 4])
    ll, s0 = _loglik(m, sigma, E)
    ref = sum(rician_loglik_core(m[:, [j]], s0 * E[None, :, j], sigma[:, [j]]) for j in range(E.shape[1]))
    diff = ll - ref
    assert np.allclose(diff - diff[:, :1], 0.0, atol=2e-2)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """The README's hand-made IN.npz, then the command it shows."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Cell density from your own signals") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    res = _run("in.npz", "out.npz")
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert np.isfinite(out["cell_density"]).all() and out["cell_density"].shape == (200,)
        # a mono-exponential 1.1e-3 mm²/s: the floor-corrected ADC within 2 %
        assert abs(np.median(out["adc"]) / 1.1e-3 - 1) < 0.02
