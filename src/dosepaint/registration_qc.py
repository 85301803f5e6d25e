"""Quality control of a rigid registration after the fact: did it land, and how well is it pinned?

Three measures, each against a threshold of the config (``ingest.registration.qc``):

- ``inside_fraction``: the fraction of the moving body that the transform puts inside the fixed
  image's field of view (a slab that lands outside the CT has registered to nothing);
- ``body_dice``: Dice of the fixed and the registered moving body masks, counted only where the
  moving image has data (so a partial field of view is not penalised for what it does not cover);
- ``tre_proxy_mm``: the mean distance, over the fixed body inside the overlap, between the result and
  a second registration started from a perturbed result. A well-posed optimum brings both back to
  the same place; a wrong anatomy or a flat metric does not.

SimpleITK has no registration QC of its own; these are the checks a physicist makes by eye.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .registration import _mask_points, body_mask


def affine_of(t: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """The matrix and offset of a rigid or affine (possibly composite) transform.

    Parameters
    ----------
    t : SimpleITK.Transform
        3-D, linear.

    Returns
    -------
    A : ndarray, (3, 3)
    b : ndarray, (3,), mm
        With ``t(p) = A p + b`` for LPS points p (mm).
    """
    b = np.asarray(t.TransformPoint((0.0, 0.0, 0.0)))
    a = np.column_stack([np.asarray(t.TransformPoint(tuple(e))) - b for e in np.eye(3) * 100.0]) / 100.0
    return a, b


def perturbed(t: sitk.Euler3DTransform, *, shift_mm: float, angle_deg: float) -> sitk.Euler3DTransform:
    """``t`` moved by ``shift_mm`` along each axis and rotated by ``angle_deg`` about each: the start of
    the QC's second registration (docs/method.md §6).

    Parameters
    ----------
    t : SimpleITK.Euler3DTransform
        The registration's result.
    shift_mm : float
        mm.
    angle_deg : float
        Degrees.

    Returns
    -------
    SimpleITK.Euler3DTransform
        A new transform.
    """
    out = sitk.Euler3DTransform(t)
    out.SetTranslation(tuple(np.asarray(t.GetTranslation()) + np.array([1.0, -1.0, 1.0]) * shift_mm))
    a = np.deg2rad(angle_deg)
    out.SetRotation(t.GetAngleX() + a, t.GetAngleY() - a, t.GetAngleZ() + a)
    return out


def _inside(points: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Which physical points (n, 3) fall inside ``image``'s voxel extent."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    idx = (points - np.array(image.GetOrigin())) @ direction / np.array(image.GetSpacing())
    size = np.array(image.GetSize())
    return np.all((idx >= -0.5) & (idx <= size - 0.5), axis=1)


def registration_qc(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    *,
    fixed_threshold: float | None,
    moving_threshold: float | None,
    second: sitk.Transform | None = None,
) -> dict:
    """QC measures of ``transform`` (fixed → moving points, SimpleITK's convention).

    Parameters
    ----------
    fixed, moving : sitk.Image
        The registered images (physical units mm, LPS).
    transform : sitk.Transform
        The result; maps fixed points to moving points.
    fixed_threshold, moving_threshold : float or None
        Intensity thresholds of the body masks (None: 5 % of the 99th percentile).
    second : sitk.Transform, optional
        A second registration (from a perturbed start) for ``tre_proxy_mm``.

    Returns
    -------
    dict
        ``inside_fraction`` (0–1), ``body_dice`` (0–1), ``tre_proxy_mm`` (mm, None without
        ``second``), ``overlap_fraction`` (fraction of the fixed body the moving image covers).
    """
    fmask, mmask = body_mask(fixed, fixed_threshold), body_mask(moving, moving_threshold)
    a, b = affine_of(transform)
    mpts = _mask_points(mmask)
    to_fixed = (mpts - b) @ np.linalg.inv(a).T
    inside = float(np.mean(_inside(to_fixed, fixed)))
    fpts = _mask_points(fmask)
    in_fov = _inside(fpts @ a.T + b, moving)
    warped = sitk.Resample(mmask, fixed, transform, sitk.sitkNearestNeighbor, 0)
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    fov = sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor, 0)
    f = sitk.GetArrayViewFromImage(fmask) > 0
    w = sitk.GetArrayViewFromImage(warped) > 0
    v = sitk.GetArrayViewFromImage(fov) > 0
    denom = np.count_nonzero(f & v) + np.count_nonzero(w)
    dice = 2.0 * np.count_nonzero(f & w & v) / denom if denom else 0.0
    tre = None
    if second is not None and in_fov.any():
        a2, b2 = affine_of(second)
        pts = fpts[in_fov]
        tre = float(np.mean(np.linalg.norm(pts @ (a - a2).T + (b - b2), axis=1)))
    return {
        "inside_fraction": inside,
        "body_dice": float(dice),
        "tre_proxy_mm": tre,
        "overlap_fraction": float(np.mean(in_fov)),
    }


def qc_failures(qc: dict, *, min_inside_fraction: float, min_body_dice: float, max_tre_proxy_mm: float) -> list[str]:
    """The QC measures that miss their threshold (``ingest.registration.qc``).

    Parameters
    ----------
    qc : dict
        From :func:`registration_qc` (inside_fraction, body_dice, tre_proxy_mm, …).
    min_inside_fraction, min_body_dice : float
        Lower bounds, 0–1.
    max_tre_proxy_mm : float
        mm.

    Returns
    -------
    list of str
        Each failing measure as 'measure value (threshold)'; empty when all pass.
    """
    out = []
    if qc["inside_fraction"] < min_inside_fraction:
        out.append(f"moving body inside the fixed image {qc['inside_fraction']:.2f} (minimum {min_inside_fraction})")
    if qc["body_dice"] < min_body_dice:
        out.append(f"body-mask Dice {qc['body_dice']:.2f} (minimum {min_body_dice})")
    if qc["tre_proxy_mm"] is not None and qc["tre_proxy_mm"] > max_tre_proxy_mm:
        out.append(f"TRE proxy {qc['tre_proxy_mm']:.2f} mm between two runs (maximum {max_tre_proxy_mm} mm)")
    return out
