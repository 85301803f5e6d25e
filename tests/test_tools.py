"""The maintenance tools: the function-length check, the docstring check and the run comparison."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_long_functions_counts_code_not_docstrings(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    doc = '    """' + "\n".join(["doc"] * 30) + '"""\n'
    (tmp_path / "ok.py").write_text(f"def ok():\n{doc}{body}\n")  # 60 lines of code, 30 of docstring
    assert _run("tools/long_functions.py", str(tmp_path), "--max-lines", "60").returncode == 0
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n    y = 1\n")  # 61 lines
    proc = _run("tools/long_functions.py", str(tmp_path), "--max-lines", "60")
    assert proc.returncode == 1 and "61 lines" in proc.stdout and "long.py:1 long" in proc.stdout


def test_every_public_science_function_has_numpydoc_sections():
    proc = _run("tools/docstrings.py", "--check")
    assert proc.returncode == 0, proc.stdout


def test_compare_runs_ignores_timings_and_finds_a_changed_table(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, seconds in ((a, 1.0), (b, 2.0)):
        (root / "cohort").mkdir(parents=True)
        (root / "cohort" / "t.tsv").write_text("x\n1\n")
        (root / "qc.json").write_text(json.dumps({"n": 3, "timings": {"total_s": seconds}}))
        np.savez(root / "v.npz", x=np.array([np.nan, 1.0]))
    assert _run("tools/compare_runs.py", str(a), str(b)).returncode == 0
    (b / "cohort" / "t.tsv").write_text("x\n2\n")
    proc = _run("tools/compare_runs.py", str(a), str(b))
    assert proc.returncode == 1 and "differ: cohort/t.tsv" in proc.stdout
