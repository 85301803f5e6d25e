"""Failure isolation of per-patient stages: one patient's failure is recorded, not fatal to the cohort.

Snakemake stops every cohort job downstream of a failed job, so a per-patient stage never fails on a
patient's problem (``cohort.on_input_error: exclude``, the default). :func:`run_guarded` runs the stage;
on any exception it logs the full error, writes the stage's *status* record
(``patients/{pid}/status/{stage}.json``: patient, stage, status, file, problem) and leaves every other
declared output as an empty placeholder (an empty file, or an empty folder for an output without a
suffix), so the job completes. A stage whose upstream status is not ``ok`` does not run: it writes the
placeholders and a ``skipped`` status naming the stage that failed. The cohort's gates
(``excluded.tsv`` before the split, ``planning_failures.tsv`` after the plans) read the status records
and leave such a patient out of every cohort result, listed with the stage, the file and the problem.

Placeholders are never read: only the gates decide which patients later stages see. With
``on_input_error: stop`` the exception propagates and the workflow stops on that patient. Snakemake
has no "optional output" (Nextflow's ``errorStrategy 'ignore'``), hence this module.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import DosepaintInputError
from ..io import files

log = logging.getLogger(__name__)


def read_status(path) -> dict:
    """A stage's status record."""
    return files.read_json(path)


def _problem(exc: BaseException) -> tuple[str, str | None]:
    """(problem, file) of an exception: a DosepaintInputError's own words, else the type and last line."""
    if isinstance(exc, DosepaintInputError):
        return exc.problem, exc.path
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else 'no message'}", None


def _relative(path: str | None, patient: str) -> str | None:
    """A file named without the user's folders: from ``patients/{pid}/`` for a results file, relative to
    the working directory below it, else the file name alone.
    """
    if not path:
        return None
    parts = Path(path).parts
    for i in range(len(parts) - 1):
        if parts[i] == "patients" and parts[i + 1] == patient:
            return str(Path(*parts[i:]))
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else Path(path).name
    except ValueError:
        return Path(path).name


def _placeholders(outputs: dict) -> None:
    """Empty files (or folders, for outputs without a suffix) for every declared output not written."""
    for value in outputs.values():
        for path in files.as_paths(value):
            path = Path(path)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)


def _write(status_path, record: dict) -> dict:
    files.write_json(record, status_path)
    return record


def run_guarded(run, inputs: dict, outputs: dict, *, params: dict, stage: str) -> dict:
    """Run one per-patient stage ``run(inputs, outputs, params=params)`` with failure isolation.

    Parameters
    ----------
    run : callable
        The stage function.
    inputs : dict
        The stage's inputs; ``upstream`` (a path or a list): the status records of the stages it
        needs, removed before ``run`` sees the inputs.
    outputs : dict
        The stage's outputs; ``status``: this stage's status record, removed before ``run``.
    params : dict
        The stage's params; ``patient_id`` and ``on_input_error`` (``exclude`` or ``stop``) are read.
    stage : str
        The stage's name in the records (``ingest``, ``dwi``, ``pet``, ``plan``, …).

    Returns
    -------
    dict
        The status record written.
    """
    inputs, outputs = dict(inputs), dict(outputs)
    upstream = files.as_paths(inputs.pop("upstream", None) or [])
    status_path = outputs.pop("status")
    record = {"patient_id": params["patient_id"], "stage": stage, "status": "ok", "file": None, "problem": None}
    for path in upstream:
        up = read_status(path)
        if up["status"] != "ok":
            log.warning("%s: %s not run: %s %s", record["patient_id"], stage, up["stage"], up["status"])
            _placeholders(outputs)
            origin = up.get("origin", up["stage"])
            return _write(
                status_path,
                {**record, "status": "skipped", "origin": origin, "problem": f"not run: the {origin} stage failed"},
            )
    try:
        run(inputs, outputs, params=params)
    except Exception as exc:  # a patient's failure of any kind is recorded, never fatal to the cohort
        if params.get("on_input_error", "exclude") == "stop":
            raise
        problem, path = _problem(exc)
        log.error("FAILED %s at %s: %s", record["patient_id"], stage, exc, exc_info=True)
        _placeholders(outputs)
        failed = {**record, "status": "failed", "file": _relative(path, record["patient_id"]), "problem": problem}
        return _write(status_path, failed)
    return _write(status_path, record)
