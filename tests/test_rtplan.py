"""RT Ion Plan: IEC beam geometry (known answers), writing, dciodvfy, reading back, and pyRadPlan's
forward calculation of the re-read spots on a phantom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dosepaint.errors import DosepaintInputError
from dosepaint.io import dicom_rt, rtplan
from dosepaint.planning import iec

from .rt_checks import dciodvfy_errors
from .test_planning import _phantom


@pytest.mark.parametrize(
    ("position", "source", "gantry"),
    [
        ("HFS", (0, -1, 0), 0.0),  # from anterior, the patient lying on the back: from above
        ("HFS", (1, 0, 0), 90.0),  # from the patient's left: IEC 90° (the source at +X_f)
        ("HFS", (0, 1, 0), 180.0),
        ("HFS", (-1, 0, 0), 270.0),
        ("HFP", (0, 1, 0), 0.0),  # prone: posterior is up
        ("HFP", (1, 0, 0), 270.0),  # prone, head first: the patient's left lies at −X_f
        ("FFS", (1, 0, 0), 270.0),  # supine, feet first: the patient's left lies at −X_f
        ("FFP", (1, 0, 0), 90.0),
    ],
)
def test_gantry_angle_of_a_source_direction(position, source, gantry):
    assert iec.gantry_angle(np.array(source, float) * 1e4, patient_position=position) == pytest.approx(gantry)


def test_positions_are_proper_rotations_and_others_are_refused():
    for m in iec.PATIENT_TO_FIXED.values():
        np.testing.assert_allclose(m @ m.T, np.eye(3))
        assert np.linalg.det(m) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decubitus"):
        iec.patient_to_fixed("HFDL")
    with pytest.raises(ValueError, match="couch rotations"):
        iec.gantry_angle([0.0, -1.0, 1.0], patient_position="HFS")


def test_spot_positions_of_hfs_are_the_beams_eye_view():
    """HFS, gantry 90° (source at the patient's left): IEC X_g points posterior, Y_g superior. pyRadPlan's
    ray at beam's-eye-view (x, z) = (−50, −10) crosses the isocentre plane at LPS (0, −50, −10)."""
    xy = iec.spot_positions([[0.0, -50.0, -10.0]], gantry_deg=90.0, patient_position="HFS")
    np.testing.assert_allclose(xy, [[-50.0, -10.0]])
    # gantry 180 (source posterior): X_g = −x (towards the patient's right)
    np.testing.assert_allclose(
        iec.spot_positions([[50.0, 0.0, -30.0]], gantry_deg=180.0, patient_position="HFS"), [[-50.0, -30.0]]
    )


@pytest.mark.parametrize("position", sorted(iec.PATIENT_TO_FIXED))
def test_spot_offsets_invert_spot_positions_in_the_isocentre_plane(position):
    rng = np.random.default_rng(5)
    source = np.array([1.0, 0.0, 0.0]) if position in ("HFS", "FFP") else np.array([0.0, 1.0, 0.0])
    g = iec.gantry_angle(source, patient_position=position)
    plane = np.linalg.svd(source[None, :])[2][1:]  # two unit vectors perpendicular to the beam
    offsets = rng.uniform(-80, 80, (20, 2)) @ plane
    xy = iec.spot_positions(offsets, gantry_deg=g, patient_position=position)
    np.testing.assert_allclose(iec.spot_offsets(xy, gantry_deg=g, patient_position=position), offsets, atol=1e-9)


def _spots():
    """A hand-made spot map: two beams (HFS gantry 90 and 180), 6 spots in 2 layers per beam."""
    offsets = np.array(
        [
            [0, -5, 0],
            [0, 5, 0],
            [0, 0, 5],
            [0, -5, 0],
            [0, 5, 5],
            [0, 0, -5],
            [5, 0, 0],
            [-5, 0, 0],
            [0, 0, 5],
            [5, 0, 0],
            [-5, 0, 5],
            [0, 0, -5],
        ],
        float,
    )
    return {
        "isocentre": np.array([[1.5, -2.0, 30.0], [1.5, -2.0, 30.0]]),
        "source": np.array([[1e4, 0, 0], [0, 1e4, 0]], float),
        "gantry_deg": np.array([90.0, 180.0]),
        "couch_deg": np.zeros(2),
        "beam": np.repeat([0, 1], 6).astype(np.int32),
        "energy": np.array([150.0, 150, 150, 120, 120, 120, 160, 160, 160, 140, 140, 140]),
        "offset": offsets,
        "radiation": "protons",
    }


def _write(path, spots, groups):
    uids = dicom_rt.package_uids("PT01")
    return rtplan.write_rt_ion_plan(
        path,
        spots,
        groups,
        label="DE",
        patient_position="HFS",
        ids=dicom_rt.plan_ids("PT01", uids, role="de plan", number=10),
        structure_set_uid=dicom_rt.dose_sop("PT01", "x"),
        finish=dicom_rt.finisher(frame=uids["frame"]),
    )


def test_rt_ion_plan_validates_and_reads_back_its_spots(tmp_path):
    spots = _spots()
    w1 = np.array([1.0, 2, 0, 3, 0, 4, 5, 0, 0, 0, 0, 0])  # beam 2 has no spot in its lower layer
    w2 = np.linspace(0.5, 1.6, 12)
    groups = [
        {"weights": w1, "n_fx": 9, "description": "CTV_LD", "dose_uid": "1.2.3"},
        {"weights": w2, "n_fx": 7, "description": "CTV_HD", "dose_uid": "1.2.3"},
    ]
    path = tmp_path / "RP.dcm"
    _write(path, spots, groups)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.PlanIntent == "RESEARCH" and ds.RTPlanLabel.startswith("RESEARCH") and ds.ApprovalStatus == "UNAPPROVED"
    assert [int(g.NumberOfFractionsPlanned) for g in ds.FractionGroupSequence] == [9, 7]
    beam1 = ds.IonBeamSequence[0]
    assert beam1.PrimaryDosimeterUnit == "NP" and float(beam1.IonControlPointSequence[0].GantryAngle) == 90.0
    energies = [float(cp.NominalBeamEnergy) for cp in beam1.IonControlPointSequence]
    assert energies == [150.0, 150.0, 120.0, 120.0]  # layers in decreasing energy, two points each
    assert float(beam1.FinalCumulativeMetersetWeight) == pytest.approx(10e6)  # weights 1+2+3+4, × 10⁶ particles
    assert int(ds.IonBeamSequence[1].NumberOfControlPoints) == 2  # one weighted layer
    back = rtplan.read_rt_ion_plan(path)
    for g, w in zip(back["fraction_groups"], (w1, w2), strict=True):
        np.testing.assert_allclose(iec.weights_on_spots(g["beams"], spots), w, rtol=1e-6)


def test_a_spot_off_the_map_is_refused(tmp_path):
    spots = _spots()
    path = tmp_path / "RP.dcm"
    _write(path, spots, [{"weights": np.ones(12), "n_fx": 9, "description": "CTV_LD", "dose_uid": None}])
    for key, index, change in (("offset", 2, [0.0, 0.3, 0.0]), ("energy", 0, 0.5)):
        beams = rtplan.read_rt_ion_plan(path)["fraction_groups"][0]["beams"]
        beams[0][key][index] += change
        with pytest.raises(ValueError, match="beam 1: 1 spots match no planned spot"):
            iec.weights_on_spots(beams, spots)


def test_a_file_that_is_no_ion_plan_is_named():
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")  # pydicom's own test CT
    with pytest.raises(DosepaintInputError, match="not an RT Ion Plan") as err:
        rtplan.read_rt_ion_plan(ct)
    assert err.value.path == ct


@pytest.mark.slow
def test_pyradplan_recomputes_the_dose_of_the_re_read_plan(tmp_path):
    """Proton phantom stored head-first-prone style: the exported spots, re-read and matched, give
    pyRadPlan's forward dose of the plan's own weights."""
    from dosepaint.planning.engine import PyRadPlanEngine

    img, body, target = _phantom()
    eng = PyRadPlanEngine(
        modality="protons", gantry_angles_deg=[180.0, 270.0], bixel_width_mm=6.0, layer_spacing_mm=6.0
    )
    inf = eng.influence(img, target=target, calc_voxels=target)
    spots = {**eng.spot_map(img, inf), "radiation": "protons"}
    assert spots["energy"].size == inf.n_spots
    w = np.random.default_rng(3).uniform(0.2, 1.0, inf.n_spots) * (np.arange(inf.n_spots) % 5 != 0)
    path = tmp_path / "RP.dcm"
    _write(path, spots, [{"weights": w, "n_fx": 16, "description": "CTV", "dose_uid": None}])
    assert dciodvfy_errors(path) == []
    g = rtplan.read_rt_ion_plan(path)["fraction_groups"][0]
    assert [b["gantry_deg"] for b in g["beams"]] == [180.0, 270.0]  # HFS default: IEC angles are pyRadPlan's
    back = iec.weights_on_spots(g["beams"], spots)
    np.testing.assert_allclose(back, w, rtol=1e-6)
    d_plan, d_back = (eng.forward_many(img, inf, [v], body=body)[0]["physical_dose"] for v in (w, back))
    assert np.max(np.abs(d_back - d_plan)) < 1e-5 * d_plan.max()
