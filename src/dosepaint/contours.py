"""Planar contours of a mask, slice by slice, in patient coordinates (for an RTSTRUCT).

scikit-image's marching squares (:func:`skimage.measure.find_contours`) traces each slice at the 0.5
level, so a contour runs half-way between an inside and an outside voxel centre: a reader that fills
the polygons (and takes inner ones as holes, the even-odd rule of DVH tools) recovers the mask on the
same grid.  What skimage lacks is only the step to patient coordinates, done here.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import find_contours

from .geometry import Grid


def mask_contours(mask: np.ndarray, grid: Grid) -> list[np.ndarray]:
    """Closed planar contours of ``mask`` on every slice, in patient LPS mm.

    Parameters
    ----------
    mask : ndarray of bool, (z, y, x)
        The region on ``grid``.
    grid : Grid
        Its geometry; each contour lies in one of its slice planes.

    Returns
    -------
    list of ndarray (n, 3)
        One (n, 3) array of LPS points (mm) per closed contour (first point not repeated), outer
        boundaries and hole boundaries alike, slice by slice.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != tuple(grid.shape):
        raise ValueError(f"mask {mask.shape} is not on the grid {tuple(grid.shape)}")
    out = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        padded = np.pad(mask[k].astype(np.float32), 1)  # closes contours that touch the slice's edge
        for rc in find_contours(padded, 0.5):
            ijk = np.column_stack([rc[:-1, 1] - 1.0, rc[:-1, 0] - 1.0, np.full(len(rc) - 1, float(k))])
            out.append(index_to_lps(ijk, grid))
    return out


def index_to_lps(ijk: np.ndarray, grid: Grid) -> np.ndarray:
    """Continuous (column, row, slice) indices (n, 3) to patient LPS points (n, 3), mm."""
    return np.asarray(grid.origin, float) + (np.asarray(ijk, float) * np.asarray(grid.spacing, float)) @ grid.matrix.T
