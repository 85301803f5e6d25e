import numpy as np
import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.geometry import ORIENTATIONS, Grid
from dosepaint.structures import (
    contours_to_mask,
    derived_structures,
    expand,
    fill_polygon,
    map_roi_names,
    mask_to_contours,
    normalise_name,
    shell,
)


def oriented_grid(orientation, shape=(40, 64, 64), spacing=(1.0, 1.0, 2.0)):
    g = Grid.from_orientation(shape=shape, spacing=spacing, origin=(0, 0, 0), iop=ORIENTATIONS[orientation])
    centre = g.world()
    return g, np.array([c.mean() for c in centre])


@pytest.mark.parametrize("orientation", ["HFS", "HFP", "FFS", "FFP"])
def test_sphere_round_trip_and_volume(orientation):
    g, c = oriented_grid(orientation)
    x, y, z = g.world()
    r = 20.0
    sphere = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r**2
    back = contours_to_mask(mask_to_contours(sphere, g), g)
    assert np.array_equal(back, sphere)
    # Voxelised volume close to 4/3 π r³ = 33.51 cm³.
    assert back.sum() * g.voxel_volume / 1000 == pytest.approx(4 / 3 * np.pi * r**3 / 1000, rel=0.02)


def test_holes_are_kept():
    g, c = oriented_grid("HFS", shape=(3, 64, 64), spacing=(1, 1, 3))
    x, y, _ = g.world()
    rr = np.hypot(x - c[0], y - c[1])
    ring = (rr < 25) & (rr > 10)
    back = contours_to_mask(mask_to_contours(ring, g), g)
    assert np.array_equal(back, ring)


def test_hand_written_square_contour():
    g = Grid((2, 10, 10), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    square = np.array([[1.5, 1.5, 2.0], [5.5, 1.5, 2.0], [5.5, 3.5, 2.0], [1.5, 3.5, 2.0]])
    m = contours_to_mask([square], g)
    assert m.sum() == 4 * 2
    assert m[1, 2:4, 2:6].all()


def _polygons(rng):
    """Simple polygons of three kinds: float stars, convex ones with integer vertices (pixel centres on
    edges and vertices), and marching-squares contours of random blobs shifted by 0 and 0.5 pixel."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull
    from skimage.measure import find_contours

    for _ in range(300):
        ang, rad = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 40))), rng.uniform(5, 20)
        rad = rad * rng.uniform(0.6, 1.0, ang.size)
        yield 25 + rad * np.sin(ang), 30 + rad * np.cos(ang)
        pts = rng.integers(0, 50, (rng.integers(3, 25), 2)).astype(float)
        if np.linalg.matrix_rank(pts - pts[0]) == 2:
            v = pts[ConvexHull(pts).vertices]
            yield v[:, 0], v[:, 1]
    for _ in range(40):
        blob = ndimage.binary_opening(ndimage.gaussian_filter(rng.uniform(size=(48, 58)), 3) > 0.5)
        for c in find_contours(np.pad(blob, 1).astype(float), 0.5):  # padded: closed contours
            for shift in (0.0, 0.5):
                yield c[:, 0] - 1 + shift, c[:, 1] - 1 + shift


def test_scanline_fill_gives_scikit_image_polygon2mask_pixels():
    from skimage.draw import polygon2mask

    n = 0
    for rows, cols in _polygons(np.random.default_rng(4)):
        expect = polygon2mask((50, 60), np.column_stack([rows, cols]))
        np.testing.assert_array_equal(fill_polygon((50, 60), rows=rows, cols=cols), expect)
        n += 1
    assert n > 900


def test_contour_between_slices_is_an_error():
    g = Grid((4, 10, 10), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    tri = np.array([[1.0, 1.0, 4.5], [5.0, 1.0, 4.5], [3.0, 5.0, 4.5]])
    with pytest.raises(DosepaintInputError, match="between image slices"):
        contours_to_mask([tri], g, patient="P9", name="GTV")


def test_roi_names_map_across_clinics():
    found = map_roi_names(["GTV 1", "CTV 74", "ctv_low", "External", "Colon_Sigmoid", "PTV", "Rectum"])
    assert found == {
        "GTV": "GTV 1",
        "CTV_HD": "CTV 74",
        "CTV_LD": "ctv_low",
        "BODY": "External",
        "SIGMA": "Colon_Sigmoid",
        "RECTUM": "Rectum",
    }
    assert map_roi_names(["Tumour_A"], {"GTV": ["tumour a"]}) == {"GTV": "Tumour_A"}
    assert normalise_name("CTV 73.6") == "ctv736"


def test_ambiguous_roi_names_are_an_error():
    with pytest.raises(DosepaintInputError, match="both map to GTV"):
        map_roi_names(["GTV", "GTVp"], patient="P1", path="RS.dcm")


def test_margins_and_derived_structures():
    g = Grid((30, 30, 30), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    gtv = np.zeros(g.shape, bool)
    gtv[15, 15, 15] = True
    ctv = expand(gtv, g, margin_mm=5.0)
    # Voxels within 5 mm of a point: lattice points in a ball of radius 5 = 515.
    assert ctv.sum() == 515
    d = derived_structures({"GTV": gtv, "CTV_HD": ctv})
    assert d["CTV_HD_minus_GTV"].sum() == 514
    body = np.ones(g.shape, bool)
    # In-plane border is outside, the end slices are not: a 1-voxel ring on every slice.
    assert shell(body, g, thickness_mm=1.0).sum() == 30 * (30**2 - 28**2)


@pytest.mark.parametrize(
    "roi,canon",
    [
        ("Intestino", "BOWEL"),
        ("Intestino_tenue", "BOWEL"),
        ("Dünndarm", "BOWEL"),
        ("Intestin grêle", "BOWEL"),
        ("Radici_Sacrali", "NERVES"),
        ("Racines sacrées", "NERVES"),
        ("Raíces sacras", "NERVES"),
        ("Rektum", "RECTUM"),
        ("Retto", "RECTUM"),
        ("Sigmoide", "SIGMA"),
        ("Piel", "SKIN"),
        ("Haut", "SKIN"),
        ("Contorno Externo", "BODY"),
        ("Femur_L", None),
        ("Vescica", None),
    ],
)
def test_unmapped_clinic_names_get_a_suggested_structure(roi, canon):
    from dosepaint.structures import map_roi_names, suggest_canonical

    assert suggest_canonical(roi) == canon
    assert map_roi_names([roi]) == {}  # a suggestion only: nothing is mapped without the user's word


@pytest.mark.slow
def test_an_oar_without_its_alias_excludes_the_patient_or_warns_when_optional(
    tiny_patient, config_schema, tmp_path, caplog
):
    """The bowel named 'Intestino': excluded with the ROIs and a suggested alias; with BOWEL optional, the
    export passes, and the ingest says loudly that the plans will have no bowel constraint."""
    import logging
    import shutil

    from dosepaint.io import files
    from dosepaint.stages import check, ingest

    from .helpers import ingest_params, outputs_in
    from .test_bad_inputs import missing_structure

    export = tmp_path / "export"
    shutil.copytree(tiny_patient["dicom"], export)
    rs = missing_structure(export, tiny_patient["truth"]["roi_names"]["BOWEL"])
    import pydicom

    ds = pydicom.dcmread(rs)
    for r in ds.StructureSetROISequence:
        if r.ROIName == "Unknown_ROI":
            r.ROIName = "Intestino"
    ds.save_as(rs)
    oars = ["RECTUM", "SIGMA", "BOWEL", "NERVES", "SKIN"]
    params = {**ingest_params(config_schema, planned_oars=oars), "on_input_error": "exclude"}
    params["registration"] = {**params["registration"], "qc": {**params["registration"]["qc"], "second_run": False}}
    record = check.run({"dicom_dir": str(export)}, {"check": str(tmp_path / "c.json")}, params=params)
    assert record["status"] == "excluded" and record["file"] == str(rs.relative_to(export))
    assert record["problem"].startswith("OAR(s) ['BOWEL'] constrained by planning (planning.oar_limits_gy) not found")
    assert "'Intestino' may be BOWEL" in record["problem"] and "planning.optional_oars" in record["problem"]
    params["optional_oars"] = ["BOWEL"]
    with caplog.at_level(logging.WARNING):
        qc = ingest.run({"dicom_dir": str(export)}, outputs_in(tmp_path / "out"), params=params)
    assert qc["structures"]["missing_oars"] == ["BOWEL"]
    assert qc["structures"]["alias_suggestions"] == {"Intestino": "BOWEL"}
    assert "NO constraint on them" in caplog.text and "BOWEL" in caplog.text
    assert files.read_json(tmp_path / "out" / "qc.json")["structures"]["missing_oars"] == ["BOWEL"]
