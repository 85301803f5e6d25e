"""Input check stage: does one patient's export pass every check of the ingest? Never fails on bad input.

The check reads the export exactly as the ingest does (:func:`dosepaint.stages.ingest.read_export`:
series, pixel data, slice geometry, contours rasterised on the CT, b-values, signal signs, frames of
reference) and, where PET is required, whether an SUV can be made of its header. It registers the T2w
onto the CT and the DWI onto the T2w with their QC (:mod:`dosepaint.stages.register`: seconds), so a
failed or implausible registration excludes the patient before the split; the transforms are kept in
the record and the ingest reuses them. A patient whose export fails is *excluded*: the record names
the file (relative to the
patient's DICOM folder) and the problem, the log says it at ERROR level, and the cohort stages (split,
fit, statistics, report) go on with the patients that pass. With ``on_input_error: stop`` the check
raises instead, and the workflow stops on that patient as the ingest would.

Output ``input_check.json``::

    {"patient_id": ..., "status": "included" | "excluded", "file": ... | null, "problem": ... | null,
     "registration": {"t2w_to_ct": {...}, "dwi_to_t2w": {...}} | null,
     "dwi_protocol": {"bvalues_s_per_mm2": [...], "pgse_delta_ms": ..., "pgse_Delta_ms": ...,
                      "timing_source": ...} | null}

The DWI protocol (:func:`dosepaint.stages.ingest.dwi_protocol`) is what the workflow names the
patient's DWI library by; it is known here, so the DWI jobs' inputs do not wait on the ingest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DosepaintInputError
from ..io import files
from .ingest import dwi_protocol, export_relative, read_export, suv_record
from .register import register_export

log = logging.getLogger(__name__)


def check_export(folder, *, patient: str, params: dict) -> dict:
    """Raise the :class:`DosepaintInputError` the ingest or the PET stage would raise on this export.

    ``params`` as :func:`dosepaint.stages.ingest.run`. Returns the record's ``registration`` and
    ``dwi_protocol`` (None without a DWI).
    """
    ex = read_export(folder, patient=patient, params=params)
    registration = register_export(ex, patient=patient, reg=params["registration"])
    if ex.pet is not None and "PT" in params["required_modalities"]:
        record = suv_record(ex.pet[2])
        if record["suv_error"]:
            raise DosepaintInputError(
                f"no SUV can be computed from the PET header: {record['suv_error']}",
                patient=patient,
                path=ex.chosen["PT"].files[0],
            )
    protocol = dwi_protocol(ex.dwi, params=params) if ex.dwi is not None else None
    return {"registration": registration, "dwi_protocol": protocol}


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Check one patient's export and write the verdict.

    Parameters
    ----------
    inputs : dict
        ``dicom_dir``: the patient's DICOM folder (read only).
    outputs : dict
        ``check``: the JSON record.
    params : dict
        The ingest's params (see :func:`dosepaint.stages.ingest.run`) and ``on_input_error``
        (``"exclude"`` or ``"stop"``).

    Returns
    -------
    dict
        The record written.
    """
    pid = params["patient_id"]
    folder = Path(inputs["dicom_dir"])
    record = {"patient_id": pid, "status": "included", "file": None, "problem": None, "registration": None,
              "dwi_protocol": None}  # fmt: skip
    try:
        record.update(check_export(folder, patient=pid, params=params))
    except DosepaintInputError as exc:
        if params["on_input_error"] == "stop":
            raise
        log.error("EXCLUDED %s", exc)
        record.update(
            status="excluded", file=export_relative(exc.path, folder) if exc.path else None, problem=exc.problem
        )
    else:
        log.info("%s: the export passes every input check", pid)
    files.write_json(record, outputs["check"])
    return record
