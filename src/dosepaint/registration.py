"""Rigid multi-modal registration with SimpleITK (Mattes mutual information).

SimpleITK's convention is kept throughout: a registration of ``moving`` onto
``fixed`` returns the transform that maps *fixed* points to *moving* points,
which is what :func:`SimpleITK.Resample` needs to bring ``moving`` onto the
fixed grid.
"""

from __future__ import annotations

from contextlib import contextmanager

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass
class RigidResult:
    """Outcome of :func:`register_rigid`."""

    transform: sitk.Euler3DTransform
    metric: float            # final Mattes MI (negative; lower is better)
    sampling_fraction: float  # fraction of the fixed mask sampled by the metric
    iterations: int
    stop: str
    initial_translation_mm: tuple[float, float, float]


def _body_mask(image: sitk.Image, threshold: float | None) -> sitk.Image:
    """Largest connected foreground component, holes filled.

    ``threshold`` None means 5 % of the 99th intensity percentile: a body
    outline for MR, where fat suppression or a bright lesion defeats Otsu.
    """
    if threshold is None:
        arr = sitk.GetArrayViewFromImage(image)
        threshold = 0.05 * float(np.percentile(arr, 99))
    fg = sitk.BinaryThreshold(image, lowerThreshold=threshold, upperThreshold=1e12, insideValue=1,
                              outsideValue=0)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(fg), sortByObjectSize=True)
    return sitk.BinaryFillhole(sitk.Cast(cc == 1, sitk.sitkUInt8))


def register_rigid(fixed: sitk.Image, moving: sitk.Image, *, fixed_threshold: float | None = None,
                   moving_threshold: float | None = None, bins: int = 50, sampling: float = 0.05,
                   min_samples: int = 100_000, sampling_strategy: str = "regular", shrink=(4, 2),
                   smoothing_mm=(4.0, 2.0), iterations: int = 100, seed: int = 7, initial: str = "moments",
                   refine: bool = True, refine_sampling: float = 0.1, threads: int | None = 1) -> RigidResult:
    """Rigid (6-dof) registration of ``moving`` onto ``fixed`` by mutual information.

    With ``initial="moments"`` the initial transform aligns the centroids of
    the two body masks (``fixed_threshold`` / ``moving_threshold`` are
    intensity thresholds for them), so images on unrelated frames of
    reference start close; ``initial="identity"`` suits images that share a
    frame of reference (DWI and T2w of one MR session).  The metric is
    evaluated inside the fixed body mask on a regular (or seeded random)
    sample of ``sampling`` of its voxels, but at least ``min_samples`` voxels
    (coarse images need a larger fraction for a stable joint histogram), so
    the result is reproducible.

    The pyramid levels (``shrink``, ``smoothing_mm``) run line-search
    gradient descent; with ``refine`` a derivative-free Powell search at full
    resolution (``refine_sampling`` of the mask, at least ``min_samples``)
    finishes the job.  Gradient descent alone stalled 1–4 mm short along the
    cranio-caudal axis on the synthetic pelvis, where the body is nearly
    translation-invariant and the metric is poorly conditioned (measured:
    median 1.2 mm, worst 3.9 mm over 37 patients; Powell refinement brought
    the two worst to 0.46 and 0.68 mm).

    ITK sums the metric over its threads' parts, so with several threads the result depends on their
    number (1 vs 2 threads: 4th digit of the transform on the tiny cohort) and, in the last bits, on
    their scheduling. ``threads`` (default 1) fixes SimpleITK's global default inside the call (restored
    afterwards; ``None`` keeps the machine's): with 1 the registration reproduces bit for bit on any
    machine and executor. Run patients in parallel instead.

    Returns
    -------
    RigidResult
        ``transform`` maps fixed points (mm, LPS) to moving points.
    """
    with itk_threads(threads):
        return _register_rigid(fixed, moving, fixed_threshold=fixed_threshold, moving_threshold=moving_threshold,
                               bins=bins, sampling=sampling, min_samples=min_samples,
                               sampling_strategy=sampling_strategy, shrink=shrink, smoothing_mm=smoothing_mm,
                               iterations=iterations, seed=seed, initial=initial, refine=refine,
                               refine_sampling=refine_sampling)


@contextmanager
def itk_threads(threads: int | None):
    """SimpleITK's global default number of threads set to ``threads`` inside the block (None: unchanged)."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if threads is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _register_rigid(fixed, moving, *, fixed_threshold, moving_threshold, bins, sampling, min_samples,
                    sampling_strategy, shrink, smoothing_mm, iterations, seed, initial, refine,
                    refine_sampling) -> RigidResult:
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    fmask = _body_mask(fixed, fixed_threshold)
    mmask = _body_mask(moving, moving_threshold)
    if initial == "moments":
        init = sitk.CenteredTransformInitializer(
            sitk.Cast(fmask, sitk.sitkFloat32), sitk.Cast(mmask, sitk.sitkFloat32), sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS)
        init = sitk.Euler3DTransform(init)
    elif initial == "identity":
        init = sitk.Euler3DTransform()
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(fmask)
        init.SetCenter(stats.GetCentroid(1))
    else:
        raise ValueError(f"initial must be 'moments' or 'identity', not {initial!r}")
    metric_mask = sitk.BinaryDilate(fmask, [3, 3, 1])
    n_mask = int(np.count_nonzero(sitk.GetArrayViewFromImage(metric_mask)))

    def mi_method(fraction: float) -> sitk.ImageRegistrationMethod:
        """Mattes MI in the fixed body mask on ``fraction`` of it (at least ``min_samples`` voxels)."""
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        method.SetMetricSamplingStrategy(method.REGULAR if sampling_strategy == "regular" else method.RANDOM)
        method.SetMetricSamplingPercentage(min(1.0, max(fraction, min_samples / max(n_mask, 1))), seed)
        method.SetMetricFixedMask(metric_mask)
        method.SetInterpolator(sitk.sitkLinear)
        return method

    reg = mi_method(sampling)
    fraction = reg.GetMetricSamplingPercentagePerLevel()[0]
    # Line-search gradient descent: regular-step descent stalls ~2 mm short of the
    # optimum on these shallow MI landscapes (measured on the synthetic cohort).
    reg.SetOptimizerAsGradientDescentLineSearch(learningRate=1.0, numberOfIterations=iterations,
                                                convergenceMinimumValue=1e-7, convergenceWindowSize=10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(smoothing_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(fixed, moving)
    if isinstance(out, sitk.CompositeTransform) or out.GetName() == "CompositeTransform":
        out = sitk.CompositeTransform(out).GetNthTransform(0)
    result = sitk.Euler3DTransform(out)
    metric, iters, stop = float(reg.GetMetricValue()), int(reg.GetOptimizerIteration()), \
        reg.GetOptimizerStopConditionDescription()
    if refine:
        fine = mi_method(refine_sampling)
        fine.SetOptimizerAsPowell(numberOfIterations=20, maximumLineIterations=30, stepLength=1.0,
                                  stepTolerance=0.01, valueTolerance=1e-6)
        fine.SetOptimizerScalesFromPhysicalShift()
        fine.SetInitialTransform(result, inPlace=True)
        fine.Execute(fixed, moving)
        metric, stop = float(fine.GetMetricValue()), f"{stop} | Powell: {fine.GetOptimizerStopConditionDescription()}"
        iters += int(fine.GetOptimizerIteration())
    return RigidResult(result, metric, fraction, iters, stop, tuple(init.GetTranslation()))


def compose(first: sitk.Transform, second: sitk.Transform) -> sitk.CompositeTransform:
    """Transform that applies ``first`` then ``second`` (SimpleITK applies the last added first)."""
    comp = sitk.CompositeTransform(3)
    comp.AddTransform(second)
    comp.AddTransform(first)
    return comp


def rigid_error(estimated: sitk.Transform, reference: sitk.Transform, points_mm: np.ndarray) -> dict:
    """Discrepancy between two point maps of the same direction.

    Parameters
    ----------
    estimated, reference : sitk.Transform
        Both map the same source space to the same target space (rigid).
    points_mm : ndarray (n, 3)
        Source points (e.g. the fixed body or GTV) at which to compare.

    Returns
    -------
    dict
        ``mean_mm``, ``max_mm`` (target registration error over the points) and
        ``rotation_deg`` (angle of the residual rotation).
    """
    pts = np.asarray(points_mm, float)
    est = np.array([estimated.TransformPoint(tuple(p)) for p in pts])
    ref = np.array([reference.TransformPoint(tuple(p)) for p in pts])
    err = np.linalg.norm(est - ref, axis=1)
    r_est = _rotation_of(estimated)
    r_ref = _rotation_of(reference)
    resid = r_est @ r_ref.T
    angle = float(np.degrees(np.arccos(np.clip((np.trace(resid) - 1) / 2, -1, 1))))
    return {"mean_mm": float(err.mean()), "max_mm": float(err.max()), "rotation_deg": angle}


def _rotation_of(t: sitk.Transform) -> np.ndarray:
    """Rotation part of a rigid (possibly composite) transform, by finite differences."""
    o = np.asarray(t.TransformPoint((0.0, 0.0, 0.0)))
    cols = [np.asarray(t.TransformPoint(tuple(e))) - o for e in np.eye(3) * 100.0]
    return np.column_stack(cols) / 100.0
