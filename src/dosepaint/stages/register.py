"""Registration of one series onto another with its QC: the step the input check and the ingest share.

A registration that ITK cannot run, or whose QC misses a threshold of ``ingest.registration.qc``
(:mod:`dosepaint.registration_qc`), raises a :class:`DosepaintInputError` naming the patient, the
series (number and description, never identity attributes), the measure and its threshold, so the
input check excludes the patient before the split.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import DosepaintInputError
from ..registration import RegistrationError, RigidResult, register_rigid
from ..registration_qc import perturbed, qc_failures, registration_qc


def registration_kwargs(reg: dict) -> dict:
    """:func:`dosepaint.registration.register_rigid`'s keywords from the config's ``ingest.registration``."""
    return dict(
        bins=reg["histogram_bins"],
        sampling=reg["sampling_fraction"],
        sampling_strategy=reg["sampling_strategy"],
        min_samples=reg["min_samples"],
        shrink=reg["shrink_factors"],
        smoothing_mm=reg["smoothing_mm"],
        iterations=reg["iterations"],
        convergence=reg["convergence_minimum_value"],
        seed=reg["seed"],
        refine=reg["refine"],
        refine_sampling=reg["refine_sampling_fraction"],
        threads=reg.get("threads", 1),
        z_step_mm=reg["z_step_mm"],
        keep=reg["keep_starts"],
        swap_below=reg["swap_below"],
    )


def register_checked(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    reg: dict,
    patient: str,
    series,
    what: str,
    initial: str,
    fixed_threshold: float | None = None,
) -> tuple[RigidResult, dict]:
    """Register ``moving`` (the series ``series``) onto ``fixed`` and check the result.

    Parameters
    ----------
    reg : dict
        The config's ``ingest.registration`` (with its ``qc`` thresholds).
    series : SeriesInfo
        The moving series, for the error message.
    what : str
        E.g. ``"T2w → CT"``.
    initial : str
        ``"auto"``, ``"moments"`` or ``"identity"`` (see :func:`register_rigid`).

    Returns
    -------
    (RigidResult, dict)
        The result and its QC record (the measures, the thresholds, the start used).
    """
    kw = registration_kwargs(reg)
    try:
        result = register_rigid(fixed, moving, fixed_threshold=fixed_threshold, initial=initial, **kw)
        qc_cfg = reg["qc"]
        second = None
        if qc_cfg["second_run"]:
            restart = perturbed(
                result.transform, shift_mm=qc_cfg["perturbation_mm"], angle_deg=qc_cfg["perturbation_deg"]
            )
            second = register_rigid(fixed, moving, fixed_threshold=fixed_threshold, initial=restart, **kw).transform
        qc = registration_qc(
            fixed, moving, result.transform, fixed_threshold=fixed_threshold, moving_threshold=None, second=second
        )
    except RegistrationError as exc:
        raise DosepaintInputError(
            f"{what} registration of {series.label} failed: {exc}", patient=patient, path=series.files[0]
        ) from exc
    thresholds = {k: qc_cfg[k] for k in ("min_inside_fraction", "min_body_dice", "max_tre_proxy_mm")}
    failures = qc_failures(qc, **thresholds)
    if qc_cfg["max_metric"] is not None and result.metric > qc_cfg["max_metric"]:
        failures.append(f"final Mattes MI {result.metric:.3f} (maximum {qc_cfg['max_metric']})")
    if failures:
        raise DosepaintInputError(
            f"{what} registration of {series.label} fails its QC: "
            + "; ".join(failures)
            + " (thresholds: ingest.registration.qc)",
            patient=patient,
            path=series.files[0],
        )
    return result, {**qc, "metric_mattes_mi": result.metric, "initial": initial, "thresholds": thresholds}


def transform_record(t: sitk.Euler3DTransform) -> dict:
    """An Euler transform as JSON (exact doubles): parameters and fixed parameters."""
    return {"parameters": list(t.GetParameters()), "fixed_parameters": list(t.GetFixedParameters())}


def transform_from(record: dict) -> sitk.Euler3DTransform:
    """Inverse of :func:`transform_record`."""
    t = sitk.Euler3DTransform()
    t.SetFixedParameters(record["fixed_parameters"])
    t.SetParameters(record["parameters"])
    return t


def angles_deg(t: sitk.Euler3DTransform) -> list[float]:
    return list(np.rad2deg([t.GetAngleX(), t.GetAngleY(), t.GetAngleZ()]))


def register_export(ex, *, patient: str, reg: dict) -> dict:
    """Register the T2w onto the CT and the DWI (b = 0) onto the T2w of a read export, with QC.

    ``ex`` is :class:`dosepaint.stages.ingest.Export`. Returns a JSON-able record per registration
    (``t2w_to_ct``, ``dwi_to_t2w``: the transform, its QC and how it ended), absent where the export
    has no such series. Raises :class:`DosepaintInputError` on a failure or a QC miss.
    """
    out: dict = {}
    if ex.t2w is None:
        return out
    t2, t2_grid = ex.t2w
    t2_img = t2_grid.image(t2)
    r, qc = register_checked(
        ex.ct_grid.image(ex.ct),
        t2_img,
        reg=reg,
        patient=patient,
        series=ex.chosen["T2W"],
        what="T2w → CT",
        initial=reg["initial"],
        fixed_threshold=-400.0,
    )
    out["t2w_to_ct"] = {
        "transform": transform_record(r.transform),
        "metric_mattes_mi": r.metric,
        "iterations": r.iterations,
        "stop": r.stop,
        "sampling_fraction": r.sampling_fraction,
        "angles_deg": angles_deg(r.transform),
        "translation_mm": list(r.transform.GetTranslation()),
        "qc": qc,
    }
    if ex.dwi is not None:
        signals, _, dwi_grid, _ = ex.dwi
        same_frame = ex.chosen["DWI"].frame_of_reference == ex.chosen["T2W"].frame_of_reference
        r, qc = register_checked(
            t2_img,
            dwi_grid.image(signals[0]),
            reg=reg,
            patient=patient,
            series=ex.chosen["DWI"],
            what="DWI → T2w",
            initial="identity" if same_frame else reg["initial"],
        )
        out["dwi_to_t2w"] = {
            "transform": transform_record(r.transform),
            "metric_mattes_mi": r.metric,
            "iterations": r.iterations,
            "stop": r.stop,
            "sampling_fraction": r.sampling_fraction,
            "translation_mm": list(r.transform.GetTranslation()),
            "qc": qc,
        }
    return out
