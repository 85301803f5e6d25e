"""Memory to declare for the heavy per-patient jobs, from the patient's files (read by the workflow's
``resources:`` at parse and scheduling time, so this module imports nothing heavy at import time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Declared before a job's inputs exist (a dry run, or the DAG before the ingest ran), MB.
MEM_MB_BEFORE_INPUTS = 4000


def ctv_ld_voxels(masks_dir) -> tuple[float, float] | None:
    """CTV_LD volume (cm³) and the dose grid's voxels per cm³ relative to a 3 mm grid (1 at 3 mm,
    0.216 at 5 mm): memory per spot scales with the voxels a spot reaches. None before the ingest.
    """
    import SimpleITK as sitk

    path = Path(masks_dir) / "CTV_LD.nii.gz"
    if not path.exists():
        return None
    mask = sitk.ReadImage(str(path))
    voxel_mm3 = float(np.prod(mask.GetSpacing()))
    cm3 = float(sitk.GetArrayViewFromImage(mask).astype(bool).sum()) * voxel_mm3 / 1000.0
    return cm3, 27.0 / voxel_mm3


def influence_mem_mb(masks_dir) -> int:
    """Memory (MB) to declare for the dose influence of one patient: 500 MB + 6.5 MB per cm³ of
    CTV_LD on a 3 mm grid, scaled by the voxel density (default cohort, 3 mm grid, 6 mm spots,
    carbon: 2.4 GB at 330 cm³, 15 GB at the largest CTV_LD; 5 mm grid: 1.2 GB for a 466 cm³ GTV).
    """
    known = ctv_ld_voxels(masks_dir)
    if known is None:
        return MEM_MB_BEFORE_INPUTS
    cm3, density = known
    return int(500 + 6.5 * cm3 * density)


def plan_mem_mb(influence_path) -> int:
    """Memory (MB) to declare for the plans of one patient: 1.5 GB + 3 × the cached influence.

    The LEM matrices share one int32 sparsity pattern when loaded, the threaded products work on
    views, and the optimiser's restricted copies share one pattern too (:func:`subset_shared`);
    measured peaks: SYN025 1.8 GB for a 0.65 GB file, SYN014 7.6 GB for 2.7 GB, SYN011 15.0 GB
    for 4.9 GB (the largest default-cohort patient).
    """
    if not Path(influence_path).exists():
        return MEM_MB_BEFORE_INPUTS
    return int(1500 + 3.0 * Path(influence_path).stat().st_size / 1e6)


def scenario_mem_mb(masks_dir) -> int:
    """Memory (MB) to declare for one recalculated scenario: 1 GB + 2.5 MB per cm³ of CTV_LD on a
    3 mm grid, scaled by the voxel density (one beam's influence on the evaluation voxels is held,
    :meth:`PyRadPlanEngine.forward_many`; 1.4 GB peak measured on a 5 mm grid for a 466 cm³ GTV).
    """
    known = ctv_ld_voxels(masks_dir)
    if known is None:
        return MEM_MB_BEFORE_INPUTS
    cm3, density = known
    return int(1000 + 2.5 * cm3 * density)
