"""PET segmentation methods of the literature and TG-211 evaluation metrics (docs/method.md §4).

Every method is a pure function ``method(suv, region, *, spacing_mm, background, **params)``:
``suv`` (z, y, x) in g/mL, ``region`` a boolean search region of the same shape, ``spacing_mm``
the voxel size (x, y, z), ``background`` the background SUV (the caller measures it, e.g. in a
shell around the region).  It returns a boolean mask, False outside the region.  Parameters
are keyword-only and come from the config; none is hidden here.

No library in our stack ships these PET thresholding rules (SimpleITK has the filters the
watershed uses; scikit-fuzzy's cmeans would pull networkx for a one-feature problem), so the
thresholds and the one-dimensional fuzzy C-means are written here and tested on known answers.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def _region_values(suv: np.ndarray, region: np.ndarray) -> np.ndarray:
    if suv.shape != region.shape:
        raise ValueError(f"SUV {suv.shape} and region {region.shape} differ in shape")
    values = suv[region]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("the search region is empty")
    return values


def _above(suv, region, threshold: float) -> np.ndarray:
    return region & (np.nan_to_num(suv, nan=-np.inf) >= threshold)


def _fixed_point(values: np.ndarray, t: float, update, *, tol: float, max_iter: int) -> float:
    """Iterate T ← update(mean(values ≥ T)) until T moves by less than ``tol``."""
    for _ in range(max_iter):
        above = values[values >= t]
        if above.size == 0:
            break
        t_new = update(above.mean())
        if abs(t_new - t) < tol:
            return t_new
        t = t_new
    return t


# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------


def fixed_threshold(suv, region, *, spacing_mm=None, background=None, threshold: float = 2.5) -> np.ndarray:
    """SUV ≥ ``threshold`` (docs/method.md §4; 2.5 g/mL is the classic FDG malignancy cut-off).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region; nothing outside it is segmented.
    spacing_mm, background : optional
        Unused (the common signature of :data:`METHODS`).
    threshold : float
        g/mL.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    _region_values(suv, region)
    return _above(suv, region, threshold)


def fraction_of_max(suv, region, *, spacing_mm=None, background=None, fraction: float = 0.4) -> np.ndarray:
    """SUV ≥ ``fraction`` · SUVmax of the region (40 % and 50 % in the literature; docs/method.md §4).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm, background : optional
        Unused (the common signature of :data:`METHODS`).
    fraction : float
        Of SUVmax, 0–1.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    return _above(suv, region, fraction * _region_values(suv, region).max())


def nestle(suv, region, *, spacing_mm=None, background: float, beta: float = 0.15) -> np.ndarray:
    """Nestle et al. (J Nucl Med 2005): T = β · mean(SUV ≥ 0.7 SUVmax) + background (docs/method.md §4).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm : optional
        Unused (the common signature of :data:`METHODS`).
    background : float
        Background SUV, g/mL.
    beta : float
        β.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    v = _region_values(suv, region)
    return _above(suv, region, beta * v[v >= 0.7 * v.max()].mean() + background)


def black(
    suv,
    region,
    *,
    spacing_mm=None,
    background=None,
    slope: float = 0.307,
    intercept: float = 0.588,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> np.ndarray:
    """Black et al. (IJROBP 2004), iterated: T ← slope · mean(SUV ≥ T) + intercept (docs/method.md §4).

    Starts at T = 0.5 · SUVmax and stops when T moves by less than ``tol`` (g/mL).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm, background : optional
        Unused (the common signature of :data:`METHODS`).
    slope, intercept : float
        Of the regression (dimensionless, g/mL).
    tol : float
        g/mL.
    max_iter : int
        Iterations at most.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    v = _region_values(suv, region)
    t = _fixed_point(v, 0.5 * v.max(), lambda mean: slope * mean + intercept, tol=tol, max_iter=max_iter)
    return _above(suv, region, t)


def adaptive_sbr(suv, region, *, spacing_mm=None, background: float, a: float = 0.5, b: float = 0.5) -> np.ndarray:
    """Source-to-background adaptive threshold (Daisne et al., Radiother Oncol 2003, form; docs/method.md §4).

    T = (a + b / SBR) · S, with S = mean(SUV ≥ 0.7 SUVmax) the source and SBR = S / background. The
    defaults a = b = 0.5 are the ideal step-edge values (T = background + ½(S − background) for a large
    lesion blurred by a symmetric PSF); calibrate a, b on your scanner's phantom.

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm : optional
        Unused (the common signature of :data:`METHODS`).
    background : float
        Background SUV, g/mL.
    a, b : float
        The threshold's coefficients.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    v = _region_values(suv, region)
    source = v[v >= 0.7 * v.max()].mean()
    sbr = source / max(background, 1e-6)
    return _above(suv, region, (a + b / sbr) * source)


def iterative_background_subtracted(
    suv, region, *, spacing_mm=None, background: float, fraction: float = 0.5, tol: float = 1e-4, max_iter: int = 100
) -> np.ndarray:
    """Iterative background-subtracted threshold (Jentzen 2007 / van Dalen 2007 form; docs/method.md §4).

    T ← background + ``fraction`` · (mean(SUV ≥ T) − background), from
    T = background + ``fraction`` · (SUVmax − background), until T moves by less than ``tol``. Using the
    mean of the segmented voxels rather than the (noisy) maximum is what the iteration buys.

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm : optional
        Unused (the common signature of :data:`METHODS`).
    background : float
        Background SUV, g/mL.
    fraction : float
        0–1.
    tol : float
        g/mL.
    max_iter : int
        Iterations at most.

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    v = _region_values(suv, region)
    t = _fixed_point(
        v,
        background + fraction * (v.max() - background),
        lambda mean: background + fraction * (mean - background),
        tol=tol,
        max_iter=max_iter,
    )
    return _above(suv, region, t)


# ---------------------------------------------------------------------------------------------
# Clustering and watershed
# ---------------------------------------------------------------------------------------------


def fuzzy_c_means_1d(
    values, *, n_clusters: int = 2, m: float = 2.0, tol: float = 1e-6, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Fuzzy C-means (Bezdek) on one feature.

    Parameters
    ----------
    values : array_like (n,)
    n_clusters : int
    m : float
        Fuzzifier (> 1).

    Returns
    -------
    centres : ndarray (n_clusters,), ascending
    membership : ndarray (n_clusters, n)
        u_kj = 1 / Σ_l (|x_j − c_k| / |x_j − c_l|)^{2/(m−1)}; columns sum to 1.
    """
    x = np.asarray(values, float).ravel()
    # Deterministic start: centres at evenly spaced quantiles (no random draw to seed).
    c = np.quantile(x, (np.arange(n_clusters) + 0.5) / n_clusters)
    p = 2.0 / (m - 1.0)
    for _ in range(max_iter):
        d = np.abs(x[None, :] - c[:, None]) + 1e-12
        u = 1.0 / ((d[:, None, :] / d[None, :, :]) ** p).sum(axis=1)
        um = u**m
        c_new = (um @ x) / um.sum(axis=1)
        if np.max(np.abs(c_new - c)) < tol:
            c = c_new
            break
        c = c_new
    order = np.argsort(c)
    d = np.abs(x[None, :] - c[:, None]) + 1e-12
    u = 1.0 / ((d[:, None, :] / d[None, :, :]) ** p).sum(axis=1)
    return c[order], u[order]


def fuzzy_c_means(suv, region, *, spacing_mm=None, background=None, n_clusters: int = 2, m: float = 2.0) -> np.ndarray:
    """Voxels whose membership of the hottest of ``n_clusters`` fuzzy C-means clusters exceeds ½
    (docs/method.md §4; our own 20 lines: scikit-fuzzy has it, but would be a dependency for this alone).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region (the voxels clustered).
    spacing_mm, background : optional
        Unused (the common signature of :data:`METHODS`).
    n_clusters : int
        Clusters.
    m : float
        Fuzzifier (> 1).

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    v = _region_values(suv, region)
    _, u = fuzzy_c_means_1d(v, n_clusters=n_clusters, m=m)
    out = np.zeros(suv.shape, bool)
    idx = np.flatnonzero(region.ravel() & np.isfinite(suv.ravel()))
    out.ravel()[idx[u[-1] > 0.5]] = True
    return out


def gradient_watershed(
    suv,
    region,
    *,
    spacing_mm,
    background: float,
    iterations: int = 10,
    conductance: float = 1.0,
    sigma_mm: float = 2.0,
    lesion_level: float = 0.7,
    background_level: float = 0.2,
) -> np.ndarray:
    """Marker-controlled watershed on the gradient magnitude after edge-preserving denoising
    (docs/method.md §4).

    SimpleITK: CurvatureAnisotropicDiffusion (``iterations``, ``conductance``), then
    GradientMagnitudeRecursiveGaussian (``sigma_mm``), then MorphologicalWatershedFromMarkers. Markers:
    lesion where the denoised SUV ≥ background + ``lesion_level``·(max − background); background
    outside the region and where it is ≤ background + ``background_level``·(max − background).

    Parameters
    ----------
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm : sequence of 3 float
        Voxel size (x, y, z), mm.
    background : float
        Background SUV, g/mL.
    iterations, conductance : int, float
        Of the anisotropic diffusion.
    sigma_mm : float
        Of the gradient's Gaussian, mm.
    lesion_level, background_level : float
        Marker levels, fractions of (max − background).

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.
    """
    _region_values(suv, region)
    img = sitk.GetImageFromArray(np.nan_to_num(suv, nan=0.0).astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing_mm))
    step = 0.95 * min(spacing_mm) / 2**4  # below ITK's stability limit min(spacing)/2^(N+1), N = 3
    smooth = sitk.CurvatureAnisotropicDiffusion(
        img, timeStep=step, conductanceParameter=conductance, numberOfIterations=iterations
    )
    grad = sitk.GradientMagnitudeRecursiveGaussian(smooth, sigma=sigma_mm)
    s = sitk.GetArrayFromImage(smooth)
    top = s[region].max()
    span = top - background
    markers = np.zeros(s.shape, np.uint8)
    markers[(~region) | (s <= background + background_level * span)] = 1
    markers[region & (s >= background + lesion_level * span)] = 2
    marker_img = sitk.GetImageFromArray(markers)
    marker_img.CopyInformation(grad)
    ws = sitk.MorphologicalWatershedFromMarkers(grad, marker_img, markWatershedLine=False, fullyConnected=True)
    return region & (sitk.GetArrayFromImage(ws) == 2)


#: Method name (config) → function.
METHODS = {
    "suv2.5": (fixed_threshold, {"threshold": 2.5}),
    "max40": (fraction_of_max, {"fraction": 0.4}),
    "max50": (fraction_of_max, {"fraction": 0.5}),
    "nestle": (nestle, {}),
    "black": (black, {}),
    "adaptive_sbr": (adaptive_sbr, {}),
    "iterative_bg": (iterative_background_subtracted, {}),
    "fcm": (fuzzy_c_means, {}),
    "watershed": (gradient_watershed, {}),
}


def segment(name: str, suv, region, *, spacing_mm, background: float, params: dict | None = None) -> np.ndarray:
    """Run method ``name`` of :data:`METHODS` with its defaults updated by ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`METHODS` (``pet.methods``).
    suv : ndarray, (z, y, x)
        SUVbw, g/mL.
    region : ndarray of bool, (z, y, x)
        The search region.
    spacing_mm : sequence of 3 float
        Voxel size (x, y, z), mm.
    background : float
        Background SUV, g/mL.
    params : dict, optional
        The method's parameters that differ from its defaults (``pet.method_params``).

    Returns
    -------
    ndarray of bool, (z, y, x)
        The segmentation.

    Raises
    ------
    ValueError
        An unknown method.
    """
    if name not in METHODS:
        raise ValueError(f"unknown PET segmentation method {name!r}; known: {sorted(METHODS)}")
    fn, defaults = METHODS[name]
    return fn(suv, region, spacing_mm=spacing_mm, background=background, **{**defaults, **(params or {})})  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# TG-211 metrics
# ---------------------------------------------------------------------------------------------


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, *, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and back.

    Surfaces are the voxels removed by one 6-connected erosion; distances are exact Euclidean (scipy's
    EDT with the voxel spacing), as in medpy's and DeepMind's surface-distance code.

    Parameters
    ----------
    a, b : ndarray of bool, (z, y, x)
        Masks on one grid.
    spacing_mm : sequence of 3 float
        Voxel size (x, y, z), mm.

    Returns
    -------
    a_to_b, b_to_a : ndarray
        Distances, mm, one per surface voxel.
    """
    sampling = tuple(float(s) for s in spacing_mm)[::-1]
    sa, sb = _surface(a), _surface(b)
    d_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    d_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return d_to_b[sa], d_to_a[sb]


def overlap_metrics(test: np.ndarray, reference: np.ndarray, *, spacing_mm) -> dict:
    """AAPM TG-211 metrics of ``test`` against ``reference`` (docs/method.md §4).

    Parameters
    ----------
    test, reference : ndarray of bool, (z, y, x)
        Masks on one grid.
    spacing_mm : sequence of 3 float
        Voxel size (x, y, z), mm.

    Returns
    -------
    dict
        dice, jaccard, sensitivity (TP/|ref|), ppv (TP/|test|), hd95_mm (95th percentile of the pooled
        symmetric surface distances), msd_mm (mean of the two directed mean surface distances), rve
        (relative volume error, (|test| − |ref|)/|ref|), and both volumes (mL). Empty masks give NaN where
        a metric is undefined.
    """
    t, r = np.asarray(test, bool), np.asarray(reference, bool)
    if t.shape != r.shape:
        raise ValueError(f"masks differ in shape: {t.shape} vs {r.shape}")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    tp, nt, nr = int((t & r).sum()), int(t.sum()), int(r.sum())
    nan = float("nan")
    out = {
        "dice": 2.0 * tp / (nt + nr) if nt + nr else nan,
        "jaccard": tp / (nt + nr - tp) if nt + nr - tp else nan,
        "sensitivity": tp / nr if nr else nan,
        "ppv": tp / nt if nt else nan,
        "rve": (nt - nr) / nr if nr else nan,
        "volume_ml": nt * voxel_ml,
        "reference_volume_ml": nr * voxel_ml,
    }
    if nt and nr:
        d_tr, d_rt = surface_distances(t, r, spacing_mm=spacing_mm)
        out["hd95_mm"] = float(np.percentile(np.concatenate([d_tr, d_rt]), 95))
        out["msd_mm"] = float(0.5 * (d_tr.mean() + d_rt.mean()))
    else:
        out["hd95_mm"] = out["msd_mm"] = nan
    return out
