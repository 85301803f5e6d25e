"""PET stage: SUV, segmentations, TG-211 metrics and dose-painting prescriptions (SCIENCE.md §4).

Inputs (from ingest): ``pet_ct.nii.gz`` and ``pet_dose.nii.gz`` (pixel units on the CT and
dose grids), ``pet.json`` (the SUV factor settled at ingest, or why there is none),
``masks_ct/``, ``masks_dose/``; optionally ``truth``, the synthetic truth folder whose
``params["reference_mask"]`` scores the segmentations (the true active volume).  Without it the GTV is the
reference, as TG-211 allows when no truth exists.

Outputs (``results/patients/{pid}/pet/``): ``suv.nii.gz`` (CT grid, g/mL), ``suv_dose.nii.gz``,
``masks/{method}.nii.gz`` (CT grid), ``metrics.tsv`` (one row per method),
``btv_dose.nii.gz`` (the chosen method's BTV on the dose grid), ``prescription_contours.nii.gz``
and ``prescription_numbers.nii.gz`` (Gy(RBE), dose grid, NaN outside the target),
``qc.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import pet_segmentation as seg
from .. import prescription, statistics
from ..errors import DosepaintInputError
from ..geometry import Grid, resample_array
from ..io import files
from ..structures import expand

log = logging.getLogger(__name__)


def _mask(folder, name: str, *, pid: str) -> tuple[np.ndarray, Grid]:
    masks, grid = files.read_masks(folder, [name], pid=pid, needed_by="the PET stage")
    return masks[name], grid


def _on_grid(mask: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """A mask moved to another grid: the resampled occupancy ≥ ½."""
    if src.same_as(dst):
        return mask.astype(bool)
    return resample_array(mask.astype(np.float32), src, dst) >= 0.5


def _crop(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def suv_factor(pet_json: dict, *, pid: str, path) -> float:
    """The SUV factor from ``pet.json``, or the ingest's reason why there is none, as an input error."""
    if pet_json.get("suv_factor") is None:
        header = pet_json.get("header_file", "?")
        raise DosepaintInputError(
            f"no SUV can be computed from the PET header (DICOM file {header}): "
            f"{pet_json.get('suv_error', 'no SUV factor recorded')}",
            patient=pid,
            path=path,
        )
    return float(pet_json["suv_factor"])


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per-patient PET analysis.

    ``params``: patient_id; methods (list of names of :data:`dosepaint.pet_segmentation.METHODS`);
    method_params ({name: {param: value}}); search_structure, search_margin_mm,
    background_shell_mm (the background SUV is the median in a shell of that thickness around
    the search region, inside BODY); reference_structure (used when no ``reference`` input);
    prescription: {btv_method, target, base_gy, boost_gy, d_min_gy, d_max_gy}.
    """
    pid = params["patient_id"]
    t0 = time.perf_counter()
    factor = suv_factor(files.read_json(inputs["pet_json"]), pid=pid, path=inputs["pet_json"])
    pet_ct, ct_grid = files.read_array(inputs["pet_ct"])
    pet_dose, dose_grid = files.read_array(inputs["pet_dose"])
    suv = (pet_ct * factor).astype(np.float32)
    suv_dose = (pet_dose * factor).astype(np.float32)
    files.write_array(suv, ct_grid, outputs["suv"])
    files.write_array(suv_dose, dose_grid, outputs["suv_dose"])

    body, _ = _mask(inputs["masks_ct"], "BODY", pid=pid)
    search_struct, _ = _mask(inputs["masks_ct"], params["search_structure"], pid=pid)
    if not search_struct.any():
        raise DosepaintInputError(
            f"{params['search_structure']} is empty: no PET search region",
            patient=pid,
            path=Path(inputs["masks_ct"]) / f"{params['search_structure']}.nii.gz",
        )
    region = expand(search_struct, ct_grid, margin_mm=params["search_margin_mm"]) & body
    if not np.nanmax(suv[region]) > 0:
        raise DosepaintInputError(
            f"the PET has no uptake in the search region ({params['search_structure']} + "
            f"{params['search_margin_mm']} mm): SUVmax 0, nothing to segment",
            patient=pid,
            path=inputs["pet_json"],
        )
    outer = expand(region, ct_grid, margin_mm=params["background_shell_mm"]) & body & ~region
    background = float(np.nanmedian(suv[outer])) if outer.any() else float(np.nanmedian(suv[region]))

    if inputs.get("truth"):
        ref_path = Path(inputs["truth"]) / params["reference_mask"]
        if not ref_path.exists():
            raise DosepaintInputError("the truth has no reference mask", patient=pid, path=ref_path)
        ref_arr, ref_grid = files.read_array(ref_path)
        reference = _on_grid(ref_arr > 0, ref_grid, ct_grid)
        reference_name = "truth"
    else:
        reference = _mask(inputs["masks_ct"], params["reference_structure"], pid=pid)[0]
        reference_name = params["reference_structure"]

    # Segment inside a box around the region (and the reference), not the whole CT volume.
    box = _crop(region | reference | outer)
    spacing = ct_grid.spacing
    mask_dir = Path(outputs["masks"])
    mask_dir.mkdir(parents=True, exist_ok=True)
    rows, masks, seconds = [], {}, {}
    for name in params["methods"]:
        t = time.perf_counter()
        m_box = seg.segment(
            name,
            suv[box],
            region[box],
            spacing_mm=spacing,
            background=background,
            params=params.get("method_params", {}).get(name),
        )
        mask = np.zeros(suv.shape, bool)
        mask[box] = m_box
        masks[name] = mask
        files.write_array(mask, ct_grid, mask_dir / f"{name}.nii.gz", dtype=np.uint8)
        metrics = seg.overlap_metrics(m_box, reference[box], spacing_mm=spacing)
        rows.append(
            {
                "patient_id": pid,
                "method": name,
                "reference": reference_name,
                **metrics,
                "suv_mean": float(suv[mask].mean()) if mask.any() else np.nan,
            }
        )
        # timings go to qc.json, not to the metrics table, which must reproduce byte for byte
        seconds[name] = time.perf_counter() - t
    table = pd.DataFrame(rows)
    files.write_tsv(table, outputs["metrics"])

    rx = params["prescription"]
    if rx["btv_method"] not in masks:
        raise DosepaintInputError(
            f"prescription.btv_method {rx['btv_method']!r} is not among the methods run ({params['methods']})",
            patient=pid,
        )
    target, _ = _mask(inputs["masks_dose"], rx["target"], pid=pid)
    btv_dose = _on_grid(masks[rx["btv_method"]], ct_grid, dose_grid)
    files.write_array(btv_dose, dose_grid, outputs["btv_dose"], dtype=np.uint8)
    files.write_array(
        prescription.by_contours(target, btv_dose, base_gy=rx["base_gy"], boost_gy=rx["boost_gy"]),
        dose_grid,
        outputs["prescription_contours"],
    )
    files.write_array(
        prescription.by_numbers(suv_dose, target, d_min_gy=rx["d_min_gy"], d_max_gy=rx["d_max_gy"]),
        dose_grid,
        outputs["prescription_numbers"],
    )

    v = suv[region]
    qc = {
        "patient_id": pid,
        "suv_factor": factor,
        "background_suv": background,
        "suv_max_region": float(np.nanmax(v)),
        "suv_mean_region": float(np.nanmean(v)),
        "region_volume_ml": float(region.sum() * ct_grid.voxel_volume / 1000.0),
        "reference": reference_name,
        "reference_volume_ml": float(reference.sum() * ct_grid.voxel_volume / 1000.0),
        "btv_method": rx["btv_method"],
        "btv_volume_in_target_ml": float((btv_dose & target).sum() * dose_grid.voxel_volume / 1000.0),
        "method_seconds": seconds,
        "seconds": time.perf_counter() - t0,
    }
    files.write_json(qc, outputs["qc"])
    log.info(
        "PET %s: SUVmax %.2f, background %.2f, %d methods in %.1f s",
        pid,
        qc["suv_max_region"],
        background,
        len(rows),
        qc["seconds"],
    )
    return table


def median_iqr(s: pd.Series) -> str:
    """``median [Q1–Q3]`` to three decimals, in Table 1's format (:func:`statistics.format_median_iqr`)."""
    return statistics.format_median_iqr(*statistics.median_iqr(s), digits=3)


SUMMARY_METRICS = ("dice", "jaccard", "sensitivity", "ppv", "hd95_mm", "msd_mm", "rve")


def run_summary(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Cohort table (median [IQR] per method × metric) and figure from the per-patient metrics.

    ``inputs``: ``metrics`` (list of per-patient TSVs).  ``outputs``: ``metrics`` (all rows),
    ``summary`` (TSV), ``figure`` (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = inputs["metrics"]
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    table = pd.concat([files.read_tsv(p) for p in paths], ignore_index=True)
    files.write_tsv(table, outputs["metrics"])
    order = list(dict.fromkeys(table["method"]))
    summary = pd.DataFrame(
        {m: table.groupby("method", sort=False)[m].apply(median_iqr) for m in SUMMARY_METRICS}
    ).reindex(order)
    summary.insert(0, "patients", table.groupby("method", sort=False)["patient_id"].nunique().reindex(order))
    summary = summary.reset_index().rename(columns={"index": "method"})
    files.write_tsv(summary, outputs["summary"])

    panels = ("dice", "sensitivity", "ppv", "hd95_mm", "msd_mm", "rve")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, metric in zip(axes.ravel(), panels):
        data = [table.loc[table["method"] == m, metric].dropna().to_numpy() for m in order]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(order) + 1), order, rotation=45, ha="right")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"PET segmentation vs {', '.join(sorted(set(table['reference'])))} ({table['patient_id'].nunique()} patients)"
    )
    Path(outputs["figure"]).parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(outputs["figure"], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return summary
