import numpy as np

from dosepaint.geometry import Grid
from dosepaint.io import files


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


def test_writes_are_atomic(tmp_path):
    files.write_json({"a": np.float32(1.5), "b": np.arange(2)}, tmp_path / "x.json")
    assert files.read_json(tmp_path / "x.json") == {"a": 1.5, "b": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temporary left behind
