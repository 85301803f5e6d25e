"""Tables and records: TSV, JSON and text files, each written atomically.

Every writer writes to a temporary name in the destination folder and renames it into place, so an
interrupted job never leaves a half-written output. Images live in :mod:`dosepaint.io.files`; this
module is what the workflow reads at parse time, so it imports nothing heavier than pandas.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


def as_paths(x) -> list:
    """A rule input that may be one path or a list of them (Snakemake passes a one-file input as a
    string), always as a list.
    """
    return [x] if isinstance(x, (str, Path)) else list(x)


@contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    A reader never sees a half-written ``path``.  A process killed mid-write (SIGKILL) leaves its
    hidden temporary ``.{name}.*`` behind; the next write of the same ``path`` removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_tsv(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def write_text(text: str, path) -> None:
    """A UTF-8 text file (Markdown, LaTeX), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_tsv(path) -> pd.DataFrame:
    """A TSV table; ``patient_id`` stays a string (a sheet's "007" must not become 7)."""
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str})
