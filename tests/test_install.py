"""The locked install: no LLM or cloud SDK, and pyRadPlan still imports and computes dose without them."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pyRadPlan 0.5.0's hard requirements for its pyRadPlan.ai agents, and what they pull (requirements/excludes.txt).
NOT_INSTALLED = [
    "pydantic-ai",
    "pydantic-ai-slim",
    "huggingface-hub",
    "safetensors",
    "openai",
    "anthropic",
    "mistralai",
    "groq",
    "cohere",
    "google-genai",
    "xai-sdk",
    "logfire",
    "temporalio",
    "boto3",
    "botocore",
]


@pytest.mark.parametrize("name", NOT_INSTALLED)
def test_no_llm_or_cloud_sdk_is_installed(name):
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(name)


def test_excluded_packages_are_exactly_pyradplans_ai_requirements():
    excluded = {
        line.strip()
        for line in (ROOT / "requirements" / "excludes.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert excluded == {"pydantic-ai", "huggingface-hub", "safetensors"}
    required = {
        r.split(";")[0].split("<")[0].split(">")[0].strip().lower().replace("_", "-")
        for r in metadata.requires("pyradplan")
    }
    assert excluded <= required  # still what pyRadPlan asks for: drop the exclusion when it no longer does


def test_every_locked_package_is_pinned_with_hashes():
    for name in ("runtime.lock", "test.lock"):
        text = (ROOT / "requirements" / name).read_text()
        entries = [line for line in text.splitlines() if line[:1].isalnum()]
        assert entries and all("==" in e for e in entries), name
        assert text.count("--hash=sha256:") >= len(entries), name
        assert not any(e.split("==")[0] in NOT_INSTALLED for e in entries), name


def test_pyradplan_computes_carbon_dose_without_its_ai_extras():
    # A fresh interpreter: importing pyRadPlan and a carbon dose influence on a water box must not need
    # (nor import) the excluded packages.
    code = """
import sys
import numpy as np, SimpleITK as sitk
import pyRadPlan
from dosepaint.planning.engine import PyRadPlanEngine
hu = np.full((12, 16, 16), -1000.0, np.float32); hu[1:11, 2:14, 2:14] = 0.0
img = sitk.GetImageFromArray(hu); img.SetSpacing((6.0, 6.0, 6.0))
target = np.zeros(hu.shape, bool); target[5:7, 6:10, 6:10] = True
eng = PyRadPlanEngine(modality="carbon", gantry_angles_deg=[0.0], bixel_width_mm=6.0, layer_spacing_mm=6.0)
inf = eng.influence(img, target=target, calc_voxels=target)
dose = inf.physical @ np.ones(inf.n_spots)
assert inf.n_spots > 0 and dose.min() > 0, (inf.n_spots, dose.min())
bad = [m for m in sys.modules if m.split(".")[0] in ("pydantic_ai", "huggingface_hub", "safetensors", "openai")]
assert not bad and "pyRadPlan.ai" not in sys.modules, bad
print("ok", inf.n_spots)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-3000:]


def test_pip_check_names_only_the_excluded_ai_requirements():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert sorted(lines) == [
        f"pyradplan 0.5.0 requires {name}, which is not installed."
        for name in ("huggingface-hub", "pydantic-ai", "safetensors")
    ], proc.stdout


def test_ci_runs_the_readmes_test_command():
    # .ci/run installs and tests exactly as the README's second set-up command says.
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```")[0].strip() for b in readme.split("```bash\n")[1:3]]
    assert "runtime.lock" in blocks[0] and "snakemake" in blocks[0]
    assert blocks[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_runtime_lock_holds_what_the_main_job_imports_beyond_pyproject():
    # Packages the old, unlocked install only had through pyRadPlan's AI stack: `snakemake --report`
    # imports pygments (snakemake's "reports" extra). The tests' lock has it through pytest, so only
    # the runtime lock tells.
    text = (ROOT / "requirements" / "runtime.lock").read_text()
    names = {line.split("==")[0].lower() for line in text.splitlines() if line[:1].isalnum()}
    assert {"pygments", "snakemake", "pyradplan"} <= names
