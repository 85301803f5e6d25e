"""Provenance stage: what produced these results (``results/provenance.json``).

Records the validated configuration and its hash, the seeds in it, the versions of Python and of the
packages that compute results, the workflow's git commit when it is a checkout, and a SHA-256 of
every input file of every patient (the DICOM exports and the patient sheet), so that a rerun on the
same inputs can be checked against this record. Patient identity never enters it: files are named by
their path relative to the patient's folder, patients by their pseudonymous id.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from ..io import files

PACKAGES = (
    "dosepaint",
    "numpy",
    "scipy",
    "pandas",
    "pydicom",
    "SimpleITK",
    "scikit-image",
    "nibabel",
    "matplotlib",
    "pyradplan",
    "lifelines",
    "statsmodels",
    "snakemake",
    "jsonschema",
)


def sha256_file(path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def folder_checksums(folder) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, keyed by the relative path (sorted; POSIX separators)."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def digest(checksums: dict[str, str]) -> str:
    """One SHA-256 over a folder's (path, checksum) pairs: equal when every file is equal."""
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


def config_hash(config: dict) -> str:
    """SHA-256 of the validated configuration as canonical JSON (sorted keys), without ``results``: where
    the outputs go does not change the analysis, so two runs of one analysis hash alike.
    """
    analysis = {k: v for k, v in config.items() if k != "results"}
    return hashlib.sha256(json.dumps(analysis, sort_keys=True, default=str).encode()).hexdigest()


def find_seeds(config: dict, prefix: str = "") -> dict:
    """Every ``*seed`` key of the configuration, by its dotted path."""
    out = {}
    for k, v in config.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(find_seeds(v, f"{path}."))
        elif k.endswith("seed"):
            out[path] = v
    return out


def package_versions(names=PACKAGES) -> dict:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(folder) -> str | None:
    """The commit of the workflow checkout (with ``-dirty`` for local changes), or None."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(folder), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev.stdout.strip() or None if rev.returncode == 0 else None


def run(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """``inputs``: ``sheet`` and ``dicom`` (one folder per patient, order of ``params["patient_ids"]``);
    ``params``: patient_ids, config (validated), workflow_dir.
    """
    ids = list(params["patient_ids"])
    folders = files.as_paths(inputs["dicom"])
    if len(folders) != len(ids):
        raise ValueError(f"{len(folders)} DICOM folders for {len(ids)} patients")
    patients: dict[str, dict] = {}
    for pid, folder in zip(ids, folders):
        sums = folder_checksums(folder)
        patients[pid] = {"n_files": len(sums), "sha256": digest(sums), "files": sums}
    config = params["config"]
    record = {
        "config": config,
        "config_sha256": config_hash(config),
        "seeds": find_seeds(config),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "workflow_commit": git_commit(params["workflow_dir"]),
        "sheet_sha256": sha256_file(inputs["sheet"]),
        "inputs_sha256": digest({pid: p["sha256"] for pid, p in patients.items()}),
        "patients": patients,
    }
    files.write_json(record, outputs["provenance"])
    return record
