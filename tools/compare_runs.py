"""Compare two results folders of the same configuration file by file (a refactor must change nothing).

    python tools/compare_runs.py RESULTS_A RESULTS_B

Tables, images, DICOM and arrays must be byte-identical (``.npz`` array by array, NaN equal to NaN);
JSON records are compared without their timing and provenance fields (wall times, peak memory, dates,
commit), which differ from run to run. Logs and benchmark files are skipped. Exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

SKIP_DIRS = {"logs", "benchmarks"}
# Timings and provenance; ``config`` holds each run's own results folder (and any key added since).
VOLATILE = {"timings", "seconds", "method_seconds", "total_s", "stf_s", "dij_s", "peak_rss_mb", "created",
            "workflow_commit", "python", "platform", "packages", "started", "finished", "config",
            "config_sha256"}  # fmt: skip


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _npz_equal(a: Path, b: Path) -> bool:
    with np.load(a) as x, np.load(b) as y:
        if sorted(x.files) != sorted(y.files):
            return False
        for k in x.files:
            if k == "meta":  # the influence's JSON record
                if _strip(json.loads(str(x[k]))) != _strip(json.loads(str(y[k]))):
                    return False
            elif not np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"):
                return False
    return True


def _undated(pdf: Path) -> bytes:
    return re.sub(rb"/CreationDate \([^)]*\)", b"", pdf.read_bytes())


def same(a: Path, b: Path) -> bool:
    """Whether two files of the two runs agree (see the module's docstring)."""
    if a.suffix == ".json":
        return _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))
    if a.suffix == ".npz":
        return _npz_equal(a, b)
    if a.suffix == ".pdf":  # matplotlib stamps the creation time
        return _undated(a) == _undated(b)
    return a.read_bytes() == b.read_bytes()


def _files(root: Path) -> list[Path]:
    return sorted(
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts)
    )


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_a", type=Path)
    ap.add_argument("results_b", type=Path)
    args = ap.parse_args(argv)
    ra, rb = args.results_a, args.results_b
    files, in_b = _files(ra), _files(rb)
    set_a, set_b = set(files), set(in_b)
    missing = [f for f in files if f not in set_b]
    extra = [f for f in in_b if f not in set_a]
    differ = [f for f in files if f in set_b and not same(ra / f, rb / f)]
    for label, items in (("only in A", missing), ("only in B", extra), ("differ", differ)):
        for f in items:
            print(f"{label}: {f}")
    tables = [f for f in files if f.suffix == ".tsv"]
    print(f"{len(files)} files compared ({len(tables)} tables): {len(differ)} differ, {len(missing)} only in A, "
          f"{len(extra)} only in B")  # fmt: skip
    return 1 if differ or missing or extra else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
