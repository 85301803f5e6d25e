"""Noise level of a magnitude DWI series, per b-value (docs/method.md §3).

Units: the signal's own (arbitrary) units; b in s/mm².  Volumes carry the b-value axis first:
``(nb, z, y, x)``.

Per-b-value estimates take care of differing NumberOfAverages (and vendor rescaling) between b-values
without reading either from the header: each b-value's volume is measured on its own.  dipy's
``estimate_sigma``/``piesno`` assume a coil count and work on 4-D series of one b-value shell at a time;
the Rayleigh background median below is the same estimator piesno starts from, and the residual
fallback covers exports whose background is masked to zero.
"""

from __future__ import annotations

import numpy as np

#: Median of a Rayleigh(σ) variable, in units of σ: sqrt(2 ln 2).
RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))


def background_mask(volume, *, fraction: float = 0.1, erode: int = 2) -> np.ndarray:
    """Air around the body in a magnitude volume: nonzero voxels below ``fraction`` of its 99th
    percentile, in regions that touch the volume's border (dark tissue such as fat, bone or gas inside
    the body is not noise), eroded by ``erode`` voxels (away from partial-volume edges).

    Parameters
    ----------
    volume : array_like, (z, y, x)
        The lowest-b image (highest SNR).
    fraction : float
        Threshold relative to the 99th percentile.
    erode : int
        Erosion iterations (voxels).

    Returns
    -------
    ndarray of bool, (z, y, x)
        Exact zeros (vendor masking, zero-filled slabs) are not background: they carry no noise.
    """
    from scipy import ndimage

    v = np.asarray(volume, float)
    finite = np.isfinite(v)
    top = np.percentile(v[finite], 99) if finite.any() else 0.0
    dark = finite & (v > 0) & (v < fraction * top)
    labels, _ = ndimage.label(dark)
    border = np.zeros(v.shape, bool)
    for axis in range(v.ndim):
        for end in (0, -1):
            border[(slice(None),) * axis + (end,)] = True
    outside = np.isin(labels, np.unique(labels[border & dark]))
    if not erode:
        return outside
    in_plane = ndimage.generate_binary_structure(2, 1).reshape((1,) * (v.ndim - 2) + (3, 3))  # (z, y, x): not z
    return ndimage.binary_erosion(outside, structure=in_plane, iterations=erode)


def background_sigma(volumes, *, min_voxels: int = 500, fraction: float = 0.1) -> np.ndarray | None:
    """σ per b-value from the Rayleigh background: median(m)/sqrt(2 ln 2) over the air of the lowest b.

    Parameters
    ----------
    volumes : array_like, (nb, z, y, x)
        Magnitude volumes, lowest b first or not (the brightest volume defines the air).
    min_voxels : int
        Fewest background voxels for an estimate.
    fraction : float
        See :func:`background_mask`.

    Returns
    -------
    ndarray, (nb,) or None
        None where the background is too small (tight field of view, masked export).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> air = np.hypot(rng.normal(0, 2.0, (2, 1, 40, 40)), rng.normal(0, 2.0, (2, 1, 40, 40)))
    >>> air[:, :, 10:30, 10:30] += 200.0
    >>> background_sigma(air).round(1)
    array([2., 2.])
    """
    v = np.asarray(volumes, float)
    ref = int(np.argmax([np.nanpercentile(x, 99) for x in v]))
    bg = background_mask(v[ref], fraction=fraction)
    if bg.sum() < min_voxels:
        return None
    return np.array([np.median(x[bg]) / RAYLEIGH_MEDIAN for x in v])


def residual_sigma(signals, bvalues, *, adc, s0, b_min: float, min_voxels: int = 50) -> np.ndarray | None:
    """One σ for all b-values from the residuals of the mono-exponential fit in tissue.

    Per voxel the residual sum of squares over b ≥ b_min has about σ²·χ²(n − 2); σ² is its median over
    voxels divided by the median of χ²(n − 2) (robust to outlying voxels).  Model misfit (non-mono-
    exponential decay) adds to the residual, so this errs on the large side; it is the fallback when there
    is no background, and it cannot tell b-values with more averages apart.

    Parameters
    ----------
    signals : array_like, (nb, n)
        Magnitudes of the voxels (any spatial shape flattened).
    bvalues : array_like, (nb,)
        s/mm².
    adc, s0 : array_like, (n,)
        The ADC fit (mm²/s, signal units); NaN voxels are skipped.
    b_min : float
        The fit's lowest b-value.
    min_voxels : int
        Fewest fitted voxels for an estimate.

    Returns
    -------
    ndarray, (nb,) or None
        The same σ for every b-value; None with too few fitted voxels or fewer than 3 b-values ≥ b_min.
    """
    from scipy.stats import chi2

    b = np.asarray(bvalues, float)
    s = np.asarray(signals, float).reshape(b.size, -1)
    a, s0 = np.asarray(adc, float).ravel(), np.asarray(s0, float).ravel()
    ok = np.isfinite(a) & np.isfinite(s0)
    use = b >= b_min
    if ok.sum() < min_voxels or use.sum() < 3:
        return None
    resid = s[np.ix_(use, ok)] - s0[ok] * np.exp(-np.outer(b[use], a[ok]))
    dof = int(use.sum()) - 2
    sigma = np.sqrt(np.median(np.sum(resid**2, axis=0)) / chi2.median(dof))
    return np.full(b.size, sigma)
