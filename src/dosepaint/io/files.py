"""Files other than DICOM: NIfTI images, transforms, TSV and JSON.

Every writer writes to a temporary name in the destination folder and renames
it into place, so an interrupted job never leaves a half-written output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..geometry import Grid
from .tables import as_paths, atomic_path, read_json, read_tsv, write_json, write_text, write_tsv  # noqa: F401 (re-exported: files is the I/O layer's one entry point for stages)


def write_image(image: sitk.Image, path) -> None:
    """Write a SimpleITK image (NIfTI when the name ends in .nii.gz)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def write_array(array: np.ndarray, grid: Grid, path, dtype=np.float32) -> None:
    """Write an array (z, y, x) — or (n, z, y, x) as a 4-D image — on ``grid``."""
    array = np.asarray(array, dtype=dtype)
    if array.ndim == 4:
        img = sitk.JoinSeries([grid.image(a, dtype=dtype) for a in array])
        # JoinSeries appends a 4th axis with spacing 1; keep the 3-D geometry in the first three.
    else:
        img = grid.image(array, dtype=dtype)
    write_image(img, path)


def _is_nifti(path) -> bool:
    return str(path).endswith((".nii", ".nii.gz"))


def _voxels(path, img: sitk.Image) -> np.ndarray:
    """Voxel values in SimpleITK's axis order.

    SimpleITK 2.x (ITK 5) silently replaces NaN and ±Inf by 0 when reading
    NIfTI (fixed in ITK 6, InsightSoftwareConsortium/ITK#6683); flagged voxels
    are NaN by design here, so float NIfTI data are read with nibabel instead.
    """
    arr = sitk.GetArrayFromImage(img)
    if _is_nifti(path) and arr.dtype.kind == "f":
        import nibabel as nib

        arr = np.asarray(nib.load(str(path)).dataobj, dtype=arr.dtype).T  # type: ignore[attr-defined]  # (x, y, z[, t]) → (…, z, y, x)
    return arr


def read_image(path) -> sitk.Image:
    """Read an image; NaN voxels of float NIfTI files are kept (see :func:`_voxels`)."""
    img = sitk.ReadImage(str(path))
    if _is_nifti(path) and img.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        out = sitk.GetImageFromArray(_voxels(path, img))
        out.CopyInformation(img)
        return out
    return img


def read_array(path) -> tuple[np.ndarray, Grid]:
    """Read a 3-D or 4-D NIfTI as (array, 3-D grid); 4-D arrays come back (n, z, y, x)."""
    img = sitk.ReadImage(str(path))
    arr = _voxels(path, img)
    if img.GetDimension() == 4:
        size = img.GetSize()
        d4 = np.asarray(img.GetDirection()).reshape(4, 4)
        grid = Grid(
            (size[2], size[1], size[0]),
            tuple(img.GetSpacing()[:3]),
            tuple(img.GetOrigin()[:3]),
            tuple(d4[:3, :3].ravel()),
        )
        return arr, grid
    return arr, Grid.from_image(img)


def read_masks(folder, names, *, pid: str, needed_by: str, required=None) -> tuple[dict, Grid]:
    """Read ``{name}.nii.gz`` masks (bool (z, y, x)) from an ingest mask folder.

    ``required`` (default: all ``names``) must exist, else a :class:`DosepaintInputError` names the
    patient, the file and the stage (``needed_by``) that needs it; other missing names are skipped.
    Returns the masks and the grid of the last one read; none read is an error too.
    """
    from ..errors import DosepaintInputError

    required = set(names if required is None else required)
    out, grid = {}, None
    for name in names:
        path = Path(folder) / f"{name}.nii.gz"
        if not path.exists():
            if name in required:
                raise DosepaintInputError(
                    f"structure {name} is needed by {needed_by} but was not ingested", patient=pid, path=path
                )
            continue
        arr, grid = read_array(path)
        out[name] = arr > 0
    if grid is None:
        raise DosepaintInputError(
            f"none of the structures {list(names)} needed by {needed_by} was ingested", patient=pid, path=folder
        )
    return out, grid


def write_transform(transform: sitk.Transform, path) -> None:
    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))


def read_transform(path) -> sitk.Transform:
    return sitk.ReadTransform(str(path))


def write_spot_weights(path, *, phase1: np.ndarray, phase2: np.ndarray, n_ld: int, n_hd: int) -> None:
    """Spot weights of one plan's two phases (per fraction, in the order of the cached influence's
    columns), so that a plan can be recalculated under setup/range scenarios.
    """
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            phase1=np.asarray(phase1, np.float64),
            phase2=np.asarray(phase2, np.float64),
            n_ld=int(n_ld),
            n_hd=int(n_hd),
        )


def read_spot_weights(path) -> dict:
    """``{"phase1", "phase2", "n_ld", "n_hd"}`` from :func:`write_spot_weights`."""
    with np.load(path, allow_pickle=False) as z:
        return {"phase1": z["phase1"], "phase2": z["phase2"], "n_ld": int(z["n_ld"]), "n_hd": int(z["n_hd"])}
