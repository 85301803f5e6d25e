from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dosepaint.geometry import Grid
from dosepaint.io import files, tables


def test_nan_survives_a_nifti_round_trip(tmp_path):
    # SimpleITK 2.x reads NaN in NIfTI as 0; flagged voxels must stay NaN.
    g = Grid((2, 3, 4), (1.0, 2.0, 3.0), (5.0, -6.0, 7.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    a = np.arange(24, dtype=float).reshape(2, 3, 4)
    a[1, 2, 3] = np.nan
    files.write_array(a, g, tmp_path / "a.nii.gz")
    b, g2 = files.read_array(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(b, a.astype(np.float32))
    assert g2 == g
    img = files.read_image(tmp_path / "a.nii.gz")
    assert np.isnan(files.sitk.GetArrayFromImage(img)[1, 2, 3])


def test_4d_round_trip(tmp_path):
    g = Grid((2, 3, 4), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    a = np.random.default_rng(0).normal(size=(5, 2, 3, 4))
    a[2, 0, 0, 0] = np.nan
    files.write_array(a, g, tmp_path / "b.nii.gz")
    b, g2 = files.read_array(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(b, a.astype(np.float32))
    assert g2 == g


WRITERS = {
    "x.json": lambda path, v: files.write_json({"v": v}, path),
    "x.tsv": lambda path, v: files.write_tsv(pd.DataFrame({"v": [v]}), path),
    "x.txt": lambda path, v: files.write_text(f"v={v}\n", path),
    "x.nii.gz": lambda path, v: files.write_array(np.full((2, 2, 2), v), Grid((2, 2, 2), (1.0,) * 3, (0.0,) * 3), path),
}


@pytest.mark.parametrize("name", WRITERS)
def test_writes_are_atomic(tmp_path, monkeypatch, name):
    # The destination changes only by one rename of a finished temporary beside it: a writer that
    # wrote in place would have clobbered the old file before the (failing) rename.
    path = tmp_path / name
    WRITERS[name](path, 1.0)
    before = path.read_bytes()
    renames = []

    def crash(src, dst):
        renames.append((Path(src).parent, Path(src).name.startswith(f".{name}."), Path(dst)))
        raise OSError("killed before the rename")

    monkeypatch.setattr(tables.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        WRITERS[name](path, 2.0)
    assert path.read_bytes() == before
    assert renames == [(tmp_path, True, path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left behind
    monkeypatch.undo()
    WRITERS[name](path, 2.0)
    assert path.read_bytes() != before and sorted(p.name for p in tmp_path.iterdir()) == [name]
