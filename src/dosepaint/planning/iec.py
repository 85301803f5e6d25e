"""Beam geometry between pyRadPlan's patient-fixed convention and IEC 61217 (DICOM RT Ion Plan).

pyRadPlan (as matRad) places beams in patient coordinates: its isocentre is a point of the CT (DICOM
LPS, mm), its source point and ray positions are vectors from the isocentre in LPS.  A DICOM RT Ion
Plan describes the same beam in the treatment room: a gantry angle in the IEC fixed system, spot
positions (X, Y) in the IEC gantry system at the isocentre plane, and the patient's position on the
couch (PatientPosition, e.g. HFS).  Neither pyRadPlan nor pydicom converts between the two, so the
rotations are written out here (docs/method.md §8 "The DICOM RT package").

IEC 61217, patient support at 0°, as seen from the foot of the couch facing the gantry: X_f to the
right, Y_f toward the gantry, Z_f up.  Gantry angle G rotates the gantry system about Y_f; the source
lies along Z_g = (sin G, 0, cos G), X_g = (cos G, 0, −sin G), Y_g = Y_f.
"""

from __future__ import annotations

import numpy as np

#: Patient LPS → IEC fixed (patient support at 0°) for the four recumbent positions: each row is an
#: IEC axis (X_f, Y_f, Z_f) written in LPS.  HFS: the patient's left to X_f, the head toward the
#: gantry, anterior up.  Decubitus positions are not covered.
PATIENT_TO_FIXED = {
    "HFS": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "HFP": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    "FFS": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]),
    "FFP": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
}


def patient_to_fixed(patient_position: str) -> np.ndarray:
    """The 3 × 3 rotation from patient LPS to IEC fixed coordinates for ``patient_position``.

    Raises
    ------
    ValueError
        For a position other than HFS, HFP, FFS or FFP.
    """
    try:
        return PATIENT_TO_FIXED[str(patient_position).upper()]
    except KeyError:
        raise ValueError(
            f"patient position {patient_position!r} is not one of {sorted(PATIENT_TO_FIXED)} "
            "(decubitus set-ups are not converted to IEC gantry angles)"
        ) from None


def gantry_axes(gantry_deg: float) -> np.ndarray:
    """Rows X_g, Y_g, Z_g of the IEC gantry system in IEC fixed coordinates (patient support 0°)."""
    g = np.deg2rad(float(gantry_deg))
    return np.array([[np.cos(g), 0.0, -np.sin(g)], [0.0, 1.0, 0.0], [np.sin(g), 0.0, np.cos(g)]])


def gantry_angle(source_lps, *, patient_position: str, tol: float = 1e-6) -> float:
    """IEC gantry angle (degrees in [0, 360)) of a beam whose source lies along ``source_lps``.

    Parameters
    ----------
    source_lps : array_like (3,)
        Vector from the isocentre to the source, patient LPS (any length).
    patient_position : str
        DICOM PatientPosition of the planning CT.

    Raises
    ------
    ValueError
        When the beam is not coplanar with the gantry's rotation (it would need a couch rotation).
    """
    d = patient_to_fixed(patient_position) @ np.asarray(source_lps, float)
    d = d / np.linalg.norm(d)
    if abs(d[1]) > tol:
        raise ValueError("the beam is not in the gantry's plane of rotation: couch rotations are not exported")
    return float(np.round(np.rad2deg(np.arctan2(d[0], d[2])) % 360.0, 6) % 360.0)


def spot_positions(offsets_lps, *, gantry_deg: float, patient_position: str) -> np.ndarray:
    """IEC gantry (X, Y) in mm of spots whose rays cross the isocentre plane at ``offsets_lps``.

    Parameters
    ----------
    offsets_lps : array_like (n, 3)
        Ray positions at the isocentre plane relative to the isocentre, patient LPS (mm);
        pyRadPlan's ``ray.ray_pos``.

    Returns
    -------
    ndarray (n, 2)
        ScanSpotPositionMap pairs (X_g, Y_g), mm.
    """
    rot = gantry_axes(gantry_deg)[:2] @ patient_to_fixed(patient_position)
    return np.asarray(offsets_lps, float).reshape(-1, 3) @ rot.T


def spot_offsets(xy, *, gantry_deg: float, patient_position: str) -> np.ndarray:
    """Inverse of :func:`spot_positions`: LPS offsets (n, 3) at the isocentre plane of IEC (X, Y) pairs."""
    rot = gantry_axes(gantry_deg)[:2] @ patient_to_fixed(patient_position)
    return np.asarray(xy, float).reshape(-1, 2) @ rot


def weights_on_spots(beams: list[dict], spots: dict, *, tol_mm: float = 0.05, tol_energy: float = 0.01) -> np.ndarray:
    """Spot weights read from a plan's beams, put back on the columns of a spot map.

    Parameters
    ----------
    beams : list of dict
        One fraction group's beams as :func:`dosepaint.io.rtplan.read_rt_ion_plan` returns them, in the
        spot map's beam order (``isocentre``, ``energy``, ``offset``, ``weight``).
    spots : dict
        :meth:`dosepaint.planning.engine.PyRadPlanEngine.spot_map`.
    tol_mm, tol_energy : float
        How far a plan's spot may lie from a spot of the map (mm at the isocentre plane, MeV/u).

    Returns
    -------
    ndarray (n_spot,)
        The weight of every spot of the map (0 where the plan has none).

    Raises
    ------
    ValueError
        When a beam's isocentre or one of its spots has no counterpart in the map.
    """
    from scipy.spatial import cKDTree

    out = np.zeros(spots["beam"].size)
    for b, beam in enumerate(beams):
        if not np.allclose(beam["isocentre"], spots["isocentre"][b], atol=1e-3):
            raise ValueError(f"beam {b + 1}: isocentre {beam['isocentre']} is not the planned one")
        cols = np.flatnonzero(spots["beam"] == b)
        scale = tol_mm / tol_energy  # an energy difference of tol_energy weighs as much as tol_mm
        tree = cKDTree(np.column_stack([spots["offset"][cols], spots["energy"][cols] * scale]))
        dist, idx = tree.query(np.column_stack([beam["offset"], beam["energy"] * scale]))
        if np.any(dist > tol_mm * np.sqrt(2)):
            raise ValueError(f"beam {b + 1}: {int(np.sum(dist > tol_mm * np.sqrt(2)))} spots match no planned spot")
        out[cols[idx]] += beam["weight"]
    return out
