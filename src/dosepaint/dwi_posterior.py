"""Bayesian posterior of tumour microstructure and cell density from a voxel's multi-b signal
(docs/method.md §3).

Units: b in s/mm², diffusivities in mm²/s, radii in mm, timing in s, ρ in cells/mm³.  Signal arrays
here carry the voxel axis first: ``(n_voxels, nb)`` (the stage transposes its ``(nb, z, y, x)`` volumes).

The posterior over θ = (R, vf, D_in, D_free) is evaluated on a fixed sample of the prior (scrambled
Sobol points, so the sample is reproducible and even): the weight of sample j in voxel i is its
likelihood, the Rician density of the voxel's magnitudes at b ≥ b_min around S0·E(θ_j), with S0 profiled
per sample (weighted least squares).  Quantiles of ρ come from the weights sorted by ρ.  Neither dipy nor
dmipy offers a vectorised grid/sample posterior with a Rician likelihood and a free S0, so it is here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import i0e

from .dwi import Library, fit_adc
from .microstructure import cell_density, extracellular_diffusivity, two_compartment_signal

#: The default prior (docs/method.md §3): physically broad, not tuned to any generator — tumour cell
#: diameters 6–30 µm, volume fractions from myxoid to packed, intracellular diffusivity from slow to free
#: water, extracellular free diffusivity of tissue water.  Each entry is ``[low, high]``; the radius is
#: log-uniform (µm), the others uniform (vf: 1, diffusivities: mm²/s).
DEFAULT_PRIOR = {"radius_um": [3.0, 15.0], "vf": [0.02, 0.8], "d_in": [0.5e-3, 2.5e-3], "d_free": [1.5e-3, 3.2e-3]}

#: Posterior flag (bit field shared with :mod:`dosepaint.dwi`): fewer effective prior samples than
#: ``min_ess`` carry the voxel's posterior (the sample is too coarse where the data are this precise).
FLAG_LOW_ESS = 32


def sample_prior(prior: dict | None = None, *, n_samples: int = 16384, seed: int = 0) -> dict:
    """Scrambled-Sobol sample of the prior over (R, vf, D_in, D_free).

    Parameters
    ----------
    prior : dict, optional
        ``{"radius_um": [lo, hi], "vf": [lo, hi], "d_in": [lo, hi], "d_free": [lo, hi]}`` (radius log-uniform);
        missing keys take :data:`DEFAULT_PRIOR`.
    n_samples : int
        Rounded up to a power of two (Sobol balance).
    seed : int
        Scrambling seed.

    Returns
    -------
    dict of ndarray, shape (n,)
        ``radius`` (mm), ``vf``, ``d_in``, ``d_free`` (mm²/s) and ``cell_density`` (cells/mm³).

    Examples
    --------
    >>> p = sample_prior(n_samples=1000, seed=1)
    >>> p["radius"].size, bool(p["radius"].min() >= 3e-3), bool(p["vf"].max() <= 0.8)
    (1024, True, True)
    """
    from scipy.stats import qmc

    pr = {**DEFAULT_PRIOR, **(prior or {})}
    for key, (lo, hi) in pr.items():
        if not 0 < lo < hi:
            raise ValueError(f"prior {key}: need 0 < low < high, got [{lo}, {hi}]")
    u = qmc.Sobol(d=4, scramble=True, seed=seed).random_base2(int(np.ceil(np.log2(max(n_samples, 2)))))
    (r_lo, r_hi), (v_lo, v_hi), (i_lo, i_hi), (f_lo, f_hi) = (pr[k] for k in ("radius_um", "vf", "d_in", "d_free"))
    radius = np.exp(np.log(r_lo) + u[:, 0] * np.log(r_hi / r_lo)) * 1e-3
    vf = v_lo + u[:, 1] * (v_hi - v_lo)
    out = {"radius": radius, "vf": vf, "d_in": i_lo + u[:, 2] * (i_hi - i_lo), "d_free": f_lo + u[:, 3] * (f_hi - f_lo)}
    out["cell_density"] = cell_density(radius=radius, vf=vf)
    return out


def build_prior_library(
    bvalues, *, delta: float, Delta: float, b_min: float = 100.0, prior: dict | None = None,
    n_samples: int = 4096, seed: int = 0, weighting: str = "signal", intracellular=None,
) -> Library:  # fmt: skip
    """Model signals S/S0 of a prior sample for one protocol (docs/method.md §3).

    Parameters
    ----------
    bvalues : array_like, shape (nb,)
        s/mm².
    delta, Delta : float
        PGSE timing, s.
    b_min : float
        Lowest b-value of the likelihood and of the entries' ADC (s/mm²).
    prior, n_samples, seed
        See :func:`sample_prior`.
    weighting : {"signal", "none"}
        Weights of the entries' ADC fit (the ADC-lookup option can use the same library).
    intracellular : callable, optional
        ``f(radius, d_in) -> (n, nb)`` S/S0 inside the cells at ``bvalues`` (e.g. the Monte Carlo table of
        :mod:`dosepaint.dwi_montecarlo`); default the Gaussian-phase sphere signal.

    Returns
    -------
    Library
        ``params`` are the prior sample; ``signals`` (n, nb).
    """
    p = sample_prior(prior, n_samples=n_samples, seed=seed)
    b = np.asarray(bvalues, float)
    if intracellular is None:
        sig = two_compartment_signal(b, radius=p["radius"], vf=p["vf"], d_in=p["d_in"], d_free=p["d_free"],
                                     delta=delta, Delta=Delta)  # fmt: skip
    else:
        e_ex = np.exp(-extracellular_diffusivity(p["vf"], p["d_free"])[:, None] * b)
        sig = p["vf"][:, None] * intracellular(p["radius"], p["d_in"]) + (1 - p["vf"][:, None]) * e_ex
    adc = fit_adc(sig.T, b, b_min=b_min, adc_max=np.inf, weighting=weighting).adc
    return Library(b, float(delta), float(Delta), p, sig, adc, float(b_min), weighting)


def rician_loglik_core(m, nu, sigma) -> np.ndarray:
    """Rician log-density of magnitude ``m`` given the noise-free ``nu`` and noise ``sigma``, up to terms
    free of ``nu``: −ν²/(2σ²) + log I0(mν/σ²).

    Parameters
    ----------
    m, nu, sigma : array_like, broadcastable
        Magnitude, noise-free signal and the SD of each Gaussian channel (same units).

    Returns
    -------
    ndarray
        The ν-dependent part of log p(m | ν, σ).  ``log I0(x)`` is ``log(i0e(x)) + x``, with the asymptotic
        series x − ½ log(2πx) + log(1 + 1/(8x) + 9/(128x²) + 225/(3072x³)) where x > 100 (error < 1e-9;
        it spares i0e, the costly part).

    Examples
    --------
    >>> from scipy.stats import rice
    >>> m, nu, s = 3.0, np.array([1.0, 2.5]), 1.2
    >>> full = rice.logpdf(m, nu / s, scale=s)
    >>> core = rician_loglik_core(m, nu, s)
    >>> bool(np.allclose(full - core, (full - core)[0]))
    True
    """
    m, nu, sigma = np.broadcast_arrays(*(np.asarray(a, float) for a in (m, nu, sigma)))
    s2 = sigma * sigma
    x = m * nu / s2
    big = x > 100.0
    with np.errstate(divide="ignore"):
        xb = np.where(big, x, 1.0)
        inv = 1.0 / xb
        log_i0 = np.where(
            big, xb - 0.5 * np.log(2 * np.pi * xb) + np.log1p(inv / 8 + 9 * inv**2 / 128 + 225 * inv**3 / 3072), 0.0
        )
        small = ~big
        log_i0[small] = np.log(i0e(x[small])) + x[small]
    return -(nu * nu) / (2 * s2) + log_i0


#: Coefficients c_n = ((2n−1)!!)² / (n! 8ⁿ), n = 1…8, of I0(x) e^(−x) √(2πx) ~ 1 + Σ c_n x⁻ⁿ
#: (Abramowitz & Stegun 9.7.1).
_I0_SERIES = (0.125, 0.0703125, 0.0732421875, 0.112152099609375, 0.22710800170898438, 0.5725014209747314,
              1.7277275025844574, 6.074042001273483)  # fmt: skip
#: From here up the eight-term series replaces i0e (error < 1e-9; 4 ns a value against i0e's 33).
SERIES_FROM = 15.0


def log_i0_scaled(x) -> np.ndarray:
    """log(I0(x) e^(−x) √(2πx)), x ≥ 0 (float64; x below 1e-30 taken as 1e-30 in the root): the
    correction of log I0 to its leading asymptote x − ½ log(2πx).

    SciPy's ``i0e`` where x < :data:`SERIES_FROM`, the asymptotic series beyond (absolute error < 1e-9;
    4 ns a value against ``i0e``'s 33 ns: the DWI posterior's likelihood evaluates it for every low-SNR
    voxel, b-value and prior sample).  SciPy has no log-I0 cheaper than ``i0e``, so the series is here.

    Examples
    --------
    >>> from scipy.special import i0e
    >>> x = np.array([0.5, 14.9, 15.0, 60.0, 100.0])
    >>> bool(np.allclose(log_i0_scaled(x), np.log(i0e(x) * np.sqrt(2 * np.pi * x)), rtol=0, atol=1e-9))
    True
    """
    x = np.asarray(x, float)
    out = _asymptotic_series(np.maximum(x, SERIES_FROM))  # on every value, then overwritten below 15:
    lo = np.flatnonzero(x < SERIES_FROM)  # cheaper than boolean masks on both sides
    xl = x.ravel()[lo]
    out.ravel()[lo] = np.log(i0e(xl)) + 0.5 * np.log(2 * np.pi * np.maximum(xl, 1e-30))  # as _loglik's asymptote
    return out


def _asymptotic_series(x) -> np.ndarray:
    """log(1 + Σ c_n x⁻ⁿ) of :data:`_I0_SERIES` (Horner in 1/x, in place), for x ≥ :data:`SERIES_FROM`."""
    inv = 1.0 / x
    s = inv * _I0_SERIES[-1]
    for c in _I0_SERIES[-2::-1]:
        s += c
        s *= inv
    return np.log1p(s, out=s)


@dataclass
class Posterior:
    """Per-voxel posterior summaries (arrays of shape (n_voxels,); NaN where not estimated).

    Attributes
    ----------
    cell_density, cell_density_median : ndarray
        Posterior mean and median of ρ (cells/mm³).
    cell_density_lo, cell_density_hi : ndarray
        Equal-tailed credible interval of ρ (5th and 95th percentiles at ``level`` 0.9).
    sd_log_cell_density : ndarray
        Posterior SD of ln ρ.
    radius, vf, d_in, d_free : ndarray
        Posterior means (mm, 1, mm²/s, mm²/s).
    s0 : ndarray
        Posterior mean of the profiled S0 (signal units).
    rmse : ndarray
        RMS of measured/S0 − posterior-mean S/S0 over b ≥ b_min.
    ess : ndarray
        Effective number of prior samples, 1/Σw².
    """

    cell_density: np.ndarray
    cell_density_median: np.ndarray
    cell_density_lo: np.ndarray
    cell_density_hi: np.ndarray
    sd_log_cell_density: np.ndarray
    radius: np.ndarray
    vf: np.ndarray
    d_in: np.ndarray
    d_free: np.ndarray
    s0: np.ndarray
    rmse: np.ndarray
    ess: np.ndarray


def _loglik(m, sigma, E) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood (n, M) of each prior sample up to a per-voxel constant, and the profiled S0 (n, M).

    m, sigma : (n, k) magnitudes and noise SDs at the used b-values; E : (M, k) model S/S0.  The Rician
    term is :func:`rician_loglik_core`, written out in place here for speed (the voxel loop's cost): the
    asymptotic log I0 everywhere, corrected where mν/σ² ≤ 100 (SNR below 10: 28 % of the values in a
    synthetic tumour's) by :func:`log_i0_scaled` (``i0e`` below 15, the series above), in float32
    (the log-likelihood's differences that matter are O(1); float32 keeps 1e-3 of them at 1e4).
    """
    iv = 1.0 / sigma**2
    s0 = (((m * iv) @ E.T) / (iv @ (E * E).T)).astype(np.float32)  # weighted least squares S0
    np.maximum(s0, 1e-12, out=s0)
    ll = np.zeros(s0.shape, np.float32)
    nu, x, t = (np.empty_like(s0) for _ in range(3))
    E32 = E.astype(np.float32)
    for j in range(E.shape[1]):
        np.multiply(s0, E32[None, :, j], out=nu)
        np.multiply(nu, (m[:, j] * iv[:, j]).astype(np.float32)[:, None], out=x)  # x = mν/σ²
        np.multiply(nu, nu, out=t)
        t *= (0.5 * iv[:, j]).astype(np.float32)[:, None]
        ll -= t  # −ν²/(2σ²)
        np.maximum(x, 1e-30, out=t)
        ll += t
        np.log(t, out=t)
        ll -= 0.5 * t  # x − ½ log x: log I0(x) + ½ log 2π for large x
        small = np.flatnonzero(x.ravel() <= 100.0)
        if small.size:
            ll.ravel()[small] += log_i0_scaled(x.ravel()[small].astype(np.float64)).astype(np.float32)
    return ll, s0


def _normalise(ll, log_prior=None) -> np.ndarray:
    """Posterior weights (n, M) from log-likelihoods and optional log prior weights (M,)."""
    ll = ll.astype(np.float64)
    if log_prior is not None:
        ll = ll + log_prior[None, :]
    ll = ll - ll.max(axis=1, keepdims=True)
    w = np.exp(ll)
    w /= w.sum(axis=1, keepdims=True)
    return w


def _quantiles(w_sorted, values_sorted, probs) -> list[np.ndarray]:
    """Weighted quantiles per row (rows of ``w_sorted`` follow ``values_sorted``, increasing)."""
    cdf = np.cumsum(w_sorted, axis=1)
    return [values_sorted[np.minimum((cdf < p).sum(axis=1), values_sorted.size - 1)] for p in probs]


def posterior(
    signals, *, sigma, library: Library, level: float = 0.9, chunk: int = 32, prior_weights=None
) -> Posterior:
    """Posterior of (R, vf, D_in, D_free) and ρ per voxel under the library's prior sample
    (docs/method.md §3).

    Parameters
    ----------
    signals : array_like, shape (n_voxels, nb)
        Magnitudes at ``library.bvalues`` (any units); rows with a non-finite value are skipped (NaN out).
    sigma : array_like, broadcastable to (n_voxels, nb)
        Noise SD of each Gaussian channel (same units as ``signals``), per b-value where averages differ.
    library : Library
        A prior sample (:func:`build_prior_library`); only b ≥ ``library.b_min`` enter the likelihood.
    level : float
        Credible level of the equal-tailed interval.
    chunk : int
        Voxels per vectorised block (memory ≈ chunk × n_samples × 8 bytes × a few).
    prior_weights : array_like, shape (n_samples,), optional
        Weights of the prior sample (e.g. :func:`empirical_prior`); equal by default.

    Returns
    -------
    Posterior
    """
    log_prior = None if prior_weights is None else np.log(np.maximum(np.asarray(prior_weights, float), 1e-300))
    m_all = np.asarray(signals, float)
    use = library.bvalues >= library.b_min
    sig_all = np.broadcast_to(np.asarray(sigma, float), m_all.shape)[:, use]
    m_all = m_all[:, use]
    E = library.signals[:, use]
    order = np.argsort(library.params["cell_density"])
    rho_sorted = library.params["cell_density"][order]
    log_rho = np.log(library.params["cell_density"])
    names = [f.name for f in Posterior.__dataclass_fields__.values()]
    out = {k: np.full(m_all.shape[0], np.nan) for k in names}
    ok = np.flatnonzero(np.all(np.isfinite(m_all), axis=1) & np.all(np.isfinite(sig_all) & (sig_all > 0), axis=1))
    tail = (1.0 - level) / 2
    for start in range(0, ok.size, chunk):
        idx = ok[start : start + chunk]
        m, s = m_all[idx], sig_all[idx]
        ll, s0 = _loglik(m, s, E)
        w = _normalise(ll, log_prior)
        out["cell_density"][idx] = w @ library.params["cell_density"]
        mean_log = w @ log_rho
        out["sd_log_cell_density"][idx] = np.sqrt(np.maximum(w @ log_rho**2 - mean_log**2, 0.0))
        lo, med, hi = _quantiles(w[:, order], rho_sorted, (tail, 0.5, 1.0 - tail))
        out["cell_density_lo"][idx], out["cell_density_median"][idx], out["cell_density_hi"][idx] = lo, med, hi
        for key in ("radius", "vf", "d_in", "d_free"):
            out[key][idx] = w @ library.params[key]
        s0_mean = np.sum(w * s0, axis=1)
        out["s0"][idx] = s0_mean
        out["rmse"][idx] = np.sqrt(np.mean((m / s0_mean[:, None] - w @ E) ** 2, axis=1))
        out["ess"][idx] = 1.0 / np.sum(w * w, axis=1)
    return Posterior(**out)


def empirical_prior(
    signals, *, sigma, library: Library, n_iter: int = 10, floor: float = 0.1, max_voxels: int = 4000, rng=None
) -> np.ndarray:
    """Weights of the prior sample that best explain a population of voxels (docs/method.md §3).

    Empirical Bayes by the EM iteration of a nonparametric mixing distribution on the fixed sample
    (π ← mean over voxels of the posterior weights under π), mixed with the broad prior (``floor``) so
    that no parameter region the data cannot exclude is dropped.  Directions the data do not inform
    keep the broad prior's proportions; directions they do inform follow the population.

    Parameters
    ----------
    signals : array_like, shape (n_voxels, nb)
        Magnitudes (non-finite rows skipped).
    sigma : array_like, broadcastable to (n_voxels, nb)
        Noise SD per channel.
    library : Library
        The broad prior's sample.
    n_iter : int
        EM iterations (few: a smooth, early-stopped estimate rather than the spiky full NPMLE).
    floor : float
        Share of the broad prior in the result, 0–1.
    max_voxels : int
        At most this many voxels (a random subset, drawn with ``rng``) enter the iteration.
    rng : numpy.random.Generator, optional
        For the subset; ``default_rng(0)`` if None.

    Returns
    -------
    ndarray, shape (n_samples,)
        Weights summing to 1.
    """
    m = np.asarray(signals, float)
    s = np.broadcast_to(np.asarray(sigma, float), m.shape)
    ok = np.flatnonzero(np.all(np.isfinite(m), axis=1))
    if ok.size > max_voxels:
        ok = np.sort((rng or np.random.default_rng(0)).choice(ok, max_voxels, replace=False))
    use = library.bvalues >= library.b_min
    M = library.signals.shape[0]
    if ok.size == 0:
        return np.full(M, 1.0 / M)
    lik = np.concatenate([_normalise(_loglik(m[i][:, use], s[i][:, use], library.signals[:, use])[0])
                          for i in np.array_split(ok, max(1, ok.size // 64))])  # fmt: skip
    pi = np.full(M, 1.0 / M)
    for _ in range(n_iter):
        post = lik * pi[None, :]
        post /= post.sum(axis=1, keepdims=True)
        pi = post.mean(axis=0)
    return (1.0 - floor) * pi + floor / M
