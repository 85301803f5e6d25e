"""Image grids in DICOM patient coordinates (LPS, mm).

A :class:`Grid` is the geometry of a 3-D image: voxel ``(i, j, k)`` along
(column, row, slice) has its centre at ``origin + direction @ (spacing * [i, j, k])``.
Arrays on a grid are indexed ``(z, y, x)`` = ``(k, j, i)``.  SimpleITK images
use the same convention, so :meth:`Grid.from_image` / :meth:`Grid.image` are
lossless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# Patient orientations as DICOM ImageOrientationPatient (row direction, column direction).
ORIENTATIONS: dict[str, tuple[float, ...]] = {
    "HFS": (1, 0, 0, 0, 1, 0),
    "HFP": (-1, 0, 0, 0, -1, 0),
    "FFS": (-1, 0, 0, 0, 1, 0),
    "FFP": (1, 0, 0, 0, -1, 0),
}


@dataclass(frozen=True)
class Grid:
    """Geometry of a 3-D image.

    Attributes
    ----------
    shape : tuple of int
        Array shape ``(nz, ny, nx)``.
    spacing : tuple of float
        Voxel size in mm along (column, row, slice) = (x, y, z) index axes.
    origin : tuple of float
        Centre of voxel (0, 0, 0), LPS mm.
    direction : tuple of float
        3×3 row-major matrix whose *columns* are the unit vectors of the
        (column, row, slice) index axes in LPS.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume(self) -> float:
        """Voxel volume in mm³."""
        return float(np.prod(self.spacing))

    def same_as(self, other: Grid, *, atol_mm: float = 1e-3) -> bool:
        """Same shape, spacing, direction and origin (within ``atol_mm``): voxels coincide."""
        return (
            tuple(self.shape) == tuple(other.shape)
            and np.allclose(self.origin, other.origin, atol=atol_mm)
            and np.allclose(self.spacing, other.spacing, atol=1e-6)
            and np.allclose(self.direction, other.direction)
        )

    @classmethod
    def from_image(cls, image: sitk.Image) -> Grid:
        size = image.GetSize()
        return cls(
            shape=(size[2], size[1], size[0]),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @classmethod
    def from_orientation(cls, *, shape, spacing, origin, iop) -> Grid:
        """Grid from a DICOM ImageOrientationPatient (slice axis = row × column)."""
        row = np.asarray(iop[:3], float)
        col = np.asarray(iop[3:], float)
        normal = np.cross(row, col)
        mat = np.column_stack([row, col, normal])
        return cls(
            tuple(int(s) for s in shape),
            tuple(float(s) for s in spacing),
            tuple(float(o) for o in origin),
            tuple(float(v) for v in mat.ravel()),
        )

    def image(self, array: np.ndarray | None = None, dtype=np.float32) -> sitk.Image:
        """A SimpleITK image on this grid (zeros if ``array`` is None)."""
        if array is None:
            array = np.zeros(self.shape, dtype=dtype)
        if array.shape != tuple(self.shape):
            raise ValueError(f"array shape {array.shape} does not match grid {self.shape}")
        img = sitk.GetImageFromArray(np.ascontiguousarray(array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def world(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates (mm) of all voxel centres, each an array of ``shape``."""
        nz, ny, nx = self.shape
        k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        idx = np.stack([i * self.spacing[0], j * self.spacing[1], k * self.spacing[2]], axis=-1)
        pts = idx @ self.matrix.T + np.asarray(self.origin)
        return pts[..., 0], pts[..., 1], pts[..., 2]

    def corners(self) -> np.ndarray:
        """LPS coordinates (mm) of the 8 corner voxel centres, shape (8, 3)."""
        nz, ny, nx = self.shape
        ijk = np.array([[i, j, k] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)], float)
        return (ijk * np.asarray(self.spacing)) @ self.matrix.T + np.asarray(self.origin)


def grid_covering(
    points_lps: np.ndarray, *, spacing: float, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), margin_mm: float = 0.0
) -> Grid:
    """Smallest grid of isotropic ``spacing`` (mm) with ``direction`` covering the points.

    Parameters
    ----------
    points_lps : ndarray, shape (n, 3)
        LPS points (mm) to cover.
    spacing : float
        Isotropic voxel size (mm).
    direction : sequence of 9 float
        Index-axis directions (see :class:`Grid`).
    margin_mm : float
        Extra margin on every side (mm).

    Returns
    -------
    Grid
        Voxel centres on the points' bounding box (in the grid's axes) grown by the margin.
    """
    mat = np.asarray(direction, float).reshape(3, 3)
    local = np.asarray(points_lps, float) @ mat  # coordinates along the index axes
    lo = local.min(axis=0) - margin_mm
    hi = local.max(axis=0) + margin_mm
    n = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 1)
    origin = mat @ lo
    return Grid(
        (int(n[2]), int(n[1]), int(n[0])),
        (float(spacing),) * 3,
        tuple(float(v) for v in origin),
        tuple(float(v) for v in mat.ravel()),
    )


def resample(
    image: sitk.Image,
    reference: sitk.Image | Grid,
    *,
    transform: sitk.Transform | None = None,
    interpolator: str = "linear",
    default: float = 0.0,
) -> sitk.Image:
    """Resample ``image`` onto ``reference`` (SimpleITK).

    ``transform`` maps reference (fixed) points to ``image`` (moving) points, SimpleITK's convention.
    Intensive quantities only (HU, dose, SUV, density): extensive ones (cell counts) must be recomputed
    on the target.

    Parameters
    ----------
    image : SimpleITK.Image
        The image to move.
    reference : SimpleITK.Image or Grid
        The target geometry.
    transform : SimpleITK.Transform, optional
        Reference → image points (mm, LPS); identity by default.
    interpolator : {"linear", "nearest", "bspline"}
        Interpolation.
    default : float
        Value outside ``image``.

    Returns
    -------
    SimpleITK.Image
        On the reference's grid, float32.
    """
    if isinstance(reference, Grid):
        reference = reference.image()
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}[interpolator]
    return sitk.Resample(image, reference, transform or sitk.Transform(), interp, default, sitk.sitkFloat32)


def resample_array(
    array: np.ndarray, src: Grid, dst: Grid | sitk.Image, *, transform: sitk.Transform | None = None
) -> np.ndarray:
    """:func:`resample` for an array.

    Parameters
    ----------
    array : ndarray, (z, y, x)
        An intensive quantity on ``src``.
    src : Grid
        Its geometry.
    dst : Grid or SimpleITK.Image
        The target geometry.
    transform : SimpleITK.Transform, optional
        ``dst`` → ``src`` points (mm, LPS).

    Returns
    -------
    ndarray, (z, y, x) of ``dst``, float32
        Linear interpolation; 0 outside ``src``.
    """
    img = resample(src.image(np.asarray(array, np.float32)), dst, transform=transform)
    return sitk.GetArrayFromImage(img)
