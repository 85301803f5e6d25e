"""Shared fixtures: paths, schemas, a generated tiny synthetic patient, public test data."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dosepaint import cohort

from .helpers import checksums, generate_tiny, ingest_params, outputs_in

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "workflow" / "schemas"
CACHE = ROOT / ".testdata-cache"

# Public test data no one here wrote, shipped inside these sdists (not their wheels).
SDISTS = {"dicompyler-core": "0.5.6", "heudiconv": "1.5.1", "pysuv": "0.1.0"}


NETWORK_FIXTURES = {"dicompyler_data", "heudiconv_dwi", "pysuv_data"}


def pytest_collection_modifyitems(items):
    """Mark ``network`` every test that needs a fetched sdist, so the lanes can select them."""
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session")
def config_schema():
    return cohort.load_yaml(SCHEMAS / "config.schema.yaml")


@pytest.fixture(scope="session")
def sheet_schema():
    return cohort.load_yaml(SCHEMAS / "patients.schema.yaml")


def _sdist(name: str) -> Path:
    version = SDISTS[name]
    folder = CACHE / f"{name}-{version}"
    if folder.is_dir():
        return folder
    CACHE.mkdir(exist_ok=True)
    archive = CACHE / f"{name}-{version}.tar.gz"
    if not archive.exists():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{name}=={version}",
                "-d",
                str(CACHE),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not archive.exists():
            pytest.fail(f"could not fetch the {name} sdist from the package registry:\n{proc.stderr[-2000:]}")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return folder


@pytest.fixture(scope="session")
def dicompyler_data() -> Path:
    return _sdist("dicompyler-core") / "tests" / "testdata" / "example_data"


@pytest.fixture(scope="session")
def heudiconv_dwi() -> Path:
    return _sdist("heudiconv") / "heudiconv" / "tests" / "data" / "b0dwiForFmap"


@pytest.fixture(scope="session")
def tiny_patient(tmp_path_factory):
    """One tiny-preset synthetic patient (index 0, prone), DICOM and truth."""

    base = tmp_path_factory.mktemp("syn")
    truth = generate_tiny(base / "dicom" / "SYN001", base / "truth" / "SYN001")
    return {"base": base, "dicom": base / "dicom" / "SYN001", "truth_dir": base / "truth" / "SYN001", "truth": truth}


@pytest.fixture(scope="session")
def ingested(tiny_patient, config_schema, tmp_path_factory):
    """The tiny patient ingested once per session (shared by the ingest and DWI tests)."""
    from dosepaint.stages import ingest

    before = checksums(tiny_patient["dicom"])
    out = tmp_path_factory.mktemp("ingest")
    qc = ingest.run({"dicom_dir": str(tiny_patient["dicom"])}, outputs_in(out), params=ingest_params(config_schema))
    return {"out": out, "qc": qc, "before": before, **tiny_patient}


@pytest.fixture(scope="session")
def pysuv_data() -> Path:
    """pysuv's test data: the QIBA PET DRO slice and IDC/TCIA vendor samples (GE, Siemens, Philips)."""
    return _sdist("pysuv") / "tests" / "data"
