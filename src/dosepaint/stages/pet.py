"""PET stage: SUV, segmentations, TG-211 metrics and dose-painting prescriptions (docs/method.md §4).

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
from pathlib import Path

import numpy as np
import pandas as pd

from .. import pet_segmentation as seg
from .. import prescription
from ..errors import DosepaintInputError
from ..geometry import Grid, resample_array
from ..io import files
from ..logs import timed
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


def _search_region(suv, ct_grid: Grid, inputs: dict, *, params: dict, pid: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The search region (structure + margin, inside BODY), its background shell and the background SUV."""
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
    return region, outer, background


def _reference(inputs: dict, ct_grid: Grid, *, params: dict, pid: str) -> tuple[np.ndarray, str]:
    """The segmentations' reference: the synthetic truth's active volume when given, else a structure."""
    if not inputs.get("truth"):
        return _mask(inputs["masks_ct"], params["reference_structure"], pid=pid)[0], params["reference_structure"]
    ref_path = Path(inputs["truth"]) / params["reference_mask"]
    if not ref_path.exists():
        raise DosepaintInputError("the truth has no reference mask", patient=pid, path=ref_path)
    ref_arr, ref_grid = files.read_array(ref_path)
    return _on_grid(ref_arr > 0, ref_grid, ct_grid), "truth"


def _segment_all(suv, region, reference, box, ct_grid: Grid, *, background: float, params: dict, outputs: dict,
                 ref_name: str, pid: str) -> tuple[pd.DataFrame, dict, dict]:  # fmt: skip
    """Every configured method inside the box; masks written, overlap with the reference per method."""
    mask_dir = Path(outputs["masks"])
    mask_dir.mkdir(parents=True, exist_ok=True)
    rows, masks, seconds = [], {}, dict[str, float]()
    for name in params["methods"]:
        with timed(seconds, name):
            m_box = seg.segment(name, suv[box], region[box], spacing_mm=ct_grid.spacing, background=background,
                                params=params.get("method_params", {}).get(name))  # fmt: skip
            mask = np.zeros(suv.shape, bool)
            mask[box] = m_box
            masks[name] = mask
            files.write_array(mask, ct_grid, mask_dir / f"{name}.nii.gz", dtype=np.uint8)
            metrics = seg.overlap_metrics(m_box, reference[box], spacing_mm=ct_grid.spacing)
            # timings go to qc.json, not to the metrics table, which must reproduce byte for byte
            rows.append({"patient_id": pid, "method": name, "reference": ref_name, **metrics,
                         "suv_mean": float(suv[mask].mean()) if mask.any() else np.nan})  # fmt: skip
    return pd.DataFrame(rows), masks, seconds


def _write_prescriptions(masks: dict, suv_dose, ct_grid: Grid, dose_grid: Grid, inputs: dict, outputs: dict, *,
                         params: dict, pid: str) -> float:  # fmt: skip
    """BTV on the dose grid and the PET prescriptions by contours and by numbers; the BTV volume in the
    target (mL).
    """
    rx = params["prescription"]
    if rx["btv_method"] not in masks:
        raise DosepaintInputError(
            f"prescription.btv_method {rx['btv_method']!r} is not among the methods run ({params['methods']})",
            patient=pid,
        )
    target, _ = _mask(inputs["masks_dose"], rx["target"], pid=pid)
    btv_dose = _on_grid(masks[rx["btv_method"]], ct_grid, dose_grid)
    files.write_array(btv_dose, dose_grid, outputs["btv_dose"], dtype=np.uint8)
    contours = prescription.by_contours(target, btv_dose, base_gy=rx["base_gy"], boost_gy=rx["boost_gy"])
    files.write_array(contours, dose_grid, outputs["prescription_contours"])
    numbers = prescription.by_numbers(suv_dose, target, d_min_gy=rx["d_min_gy"], d_max_gy=rx["d_max_gy"])
    files.write_array(numbers, dose_grid, outputs["prescription_numbers"])
    return float((btv_dose & target).sum() * dose_grid.voxel_volume / 1000.0)


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """Per-patient PET analysis.

    ``params``: patient_id; methods (list of names of :data:`dosepaint.pet_segmentation.METHODS`);
    method_params ({name: {param: value}}); search_structure, search_margin_mm,
    background_shell_mm (the background SUV is the median in a shell of that thickness around
    the search region, inside BODY); reference_structure (used when no ``reference`` input);
    prescription: {btv_method, target, base_gy, boost_gy, d_min_gy, d_max_gy}.
    """
    pid, seconds = params["patient_id"], dict[str, float]()
    with timed(seconds, "total"):
        factor = suv_factor(files.read_json(inputs["pet_json"]), pid=pid, path=inputs["pet_json"])
        pet_ct, ct_grid = files.read_array(inputs["pet_ct"])
        pet_dose, dose_grid = files.read_array(inputs["pet_dose"])
        suv = (pet_ct * factor).astype(np.float32)
        suv_dose = (pet_dose * factor).astype(np.float32)
        files.write_array(suv, ct_grid, outputs["suv"])
        files.write_array(suv_dose, dose_grid, outputs["suv_dose"])
        region, outer, background = _search_region(suv, ct_grid, inputs, params=params, pid=pid)
        reference, ref_name = _reference(inputs, ct_grid, params=params, pid=pid)
        box = _crop(region | reference | outer)  # segment inside a box around the region, not the whole CT
        table, masks, method_seconds = _segment_all(
            suv, region, reference, box, ct_grid, background=background, params=params, outputs=outputs,
            ref_name=ref_name, pid=pid
        )  # fmt: skip
        files.write_tsv(table, outputs["metrics"])
        btv_ml = _write_prescriptions(masks, suv_dose, ct_grid, dose_grid, inputs, outputs, params=params, pid=pid)
    v = suv[region]
    qc = {"patient_id": pid, "suv_factor": factor, "background_suv": background,
          "suv_max_region": float(np.nanmax(v)), "suv_mean_region": float(np.nanmean(v)),
          "region_volume_ml": float(region.sum() * ct_grid.voxel_volume / 1000.0), "reference": ref_name,
          "reference_volume_ml": float(reference.sum() * ct_grid.voxel_volume / 1000.0),
          "btv_method": params["prescription"]["btv_method"], "btv_volume_in_target_ml": btv_ml,
          "method_seconds": method_seconds, "seconds": seconds["total"]}  # fmt: skip
    files.write_json(qc, outputs["qc"])
    log.info("PET %s: SUVmax %.2f, background %.2f, %d methods in %.1f s", pid, qc["suv_max_region"], background,
             len(table), qc["seconds"])  # fmt: skip
    return table


def median_iqr(s: pd.Series) -> str:
    """``median [Q1–Q3]`` to three decimals, in Table 1's format (:func:`statistics.format_median_iqr`)."""
    from .. import statistics  # here: SciPy's stats and statsmodels cost 0.4 s of each per-patient PET job

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
