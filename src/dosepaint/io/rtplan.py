"""DICOM RT Ion Plan: writing a research plan from pyRadPlan spots, and reading one back.

highdicom has no RT Ion Plan IOD and pyRadPlan no DICOM plan export (OpenTPS writes one for protons
only), so the IOD's modules are filled here with pydicom.  Conventions (docs/method.md §8):

- one IonBeam per pyRadPlan beam and fraction group; a fraction group per phase of the sequential
  course (CTV_LD, then CTV_HD), each beam listed with its meterset;
- one energy layer per pair of control points (the first carries the spots, the second closes the
  layer with zero weights), layers in decreasing energy, spots of weight 0 left out;
- ``PrimaryDosimeterUnit`` NP (number of particles): pyRadPlan's spot weight 1 is 10⁶ primary
  particles (its pencil-beam engine's ``num_particles_per_mu``), so ScanSpotMetersetWeights are
  weight × 10⁶ particles per fraction. A TPS must recompute the dose with its own beam model; the
  particle numbers of pyRadPlan's generic machine are not those of a clinical beam line;
- the plan is marked RESEARCH (PlanIntent), its label starts with "RESEARCH" and it is UNAPPROVED.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..errors import DosepaintInputError
from ..planning import iec
from .dicom_write import RT_DOSE, RT_STRUCT, _new_dataset, _save, referenced

RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
PARTICLES_PER_WEIGHT = 1.0e6
_IONS: dict[str, tuple[int, int, int] | None] = {
    "carbon": (6, 12, 6),
    "protons": None,
}  # (Z, A, charge) of an ION beam; protons are PROTON


def _layer_points(energy, xy, weight_np, *, index: int, cumulative: float) -> tuple[list, float]:
    """The two control points of one energy layer (spots, then the layer's end)."""
    points = []
    for k, (w, cum) in enumerate(((weight_np, cumulative), (np.zeros_like(weight_np), cumulative + weight_np.sum()))):
        cp = Dataset()
        cp.ControlPointIndex = index + k
        cp.NominalBeamEnergy = f"{energy:.6g}"
        cp.CumulativeMetersetWeight = f"{cum:.10g}"
        cp.ScanSpotTuneID = "1"
        cp.NumberOfScanSpotPositions = len(w)
        cp.ScanSpotPositionMap = [float(v) for v in np.asarray(xy, np.float32).ravel()]
        cp.ScanSpotMetersetWeights = [float(v) for v in np.asarray(w, np.float32)]
        cp.NumberOfPaintings = 1
        points.append(cp)
    return points, cumulative + float(weight_np.sum())


def _first_point(cp: Dataset, *, gantry: float, isocentre) -> None:
    """Machine angles and isocentre, given once in a beam's first control point."""
    cp.GantryAngle = f"{gantry:.6g}"
    cp.GantryRotationDirection = "NONE"
    cp.BeamLimitingDeviceAngle = "0"
    cp.BeamLimitingDeviceRotationDirection = "NONE"
    cp.PatientSupportAngle = "0"
    cp.PatientSupportRotationDirection = "NONE"
    cp.TableTopPitchAngle = 0.0
    cp.TableTopPitchRotationDirection = "NONE"
    cp.TableTopRollAngle = 0.0
    cp.TableTopRollRotationDirection = "NONE"
    cp.IsocenterPosition = [f"{v:.4f}" for v in isocentre]
    cp.SnoutPosition = None
    cp.TableTopVerticalPosition = cp.TableTopLongitudinalPosition = cp.TableTopLateralPosition = None


def _beam_static(beam: Dataset, *, radiation: str, sad_mm: float) -> None:
    """Beam-level attributes that do not depend on the spots: radiation, machine, no devices."""
    if radiation not in _IONS:
        raise ValueError(f"no RT Ion Plan radiation for modality {radiation!r}")
    ion = _IONS[radiation]
    if ion is None:
        beam.RadiationType = "PROTON"
    else:
        beam.RadiationType = "ION"
        beam.RadiationAtomicNumber, beam.RadiationMassNumber, beam.RadiationChargeState = ion
    beam.TreatmentMachineName = "Generic"  # pyRadPlan's machine (SH: 16 characters at most)
    beam.Manufacturer = "dosepaint (research)"
    beam.PrimaryDosimeterUnit = "NP"
    beam.BeamType = "STATIC"
    beam.TreatmentDeliveryType = "TREATMENT"
    beam.ScanMode = "MODULATED"
    beam.ModulatedScanModeType = "STATIONARY"  # discrete spots, the beam off between them
    beam.VirtualSourceAxisDistances = [float(sad_mm), float(sad_mm)]
    for key in (
        "NumberOfWedges",
        "NumberOfCompensators",
        "NumberOfBoli",
        "NumberOfBlocks",
        "NumberOfRangeShifters",
        "NumberOfLateralSpreadingDevices",
        "NumberOfRangeModulators",
    ):
        setattr(beam, key, 0)
    beam.PatientSupportType = "TABLE"
    beam.ReferencedPatientSetupNumber = 1


def ion_beam(number: int, spots: dict, weights: np.ndarray, *, beam: int, patient_position: str, name: str) -> Dataset:
    """One IonBeam of ``spots`` (:meth:`~dosepaint.planning.engine.PyRadPlanEngine.spot_map`) with
    pyRadPlan ``weights`` (per fraction, all spots), its spots of weight > 0 in layers.
    """
    gantry = iec.gantry_angle(spots["source"][beam], patient_position=patient_position)
    sel = (spots["beam"] == beam) & (weights > 0)
    xy = iec.spot_positions(spots["offset"][sel], gantry_deg=gantry, patient_position=patient_position)
    energy, w_np = spots["energy"][sel], weights[sel] * PARTICLES_PER_WEIGHT
    ds = Dataset()
    ds.BeamNumber = number
    ds.BeamName = name[:16]
    _beam_static(ds, radiation=spots["radiation"], sad_mm=float(np.linalg.norm(spots["source"][beam])))
    points: list = []
    cumulative = 0.0
    for e in sorted(set(energy.tolist()), reverse=True):
        layer = energy == e
        pts, cumulative = _layer_points(e, xy[layer], w_np[layer], index=len(points), cumulative=cumulative)
        points += pts
    if not points:  # a beam without weighted spots still needs its two control points
        points, cumulative = _layer_points(
            float(spots["energy"][spots["beam"] == beam].max()), np.zeros((0, 2)), np.zeros(0), index=0, cumulative=0.0
        )
    _first_point(points[0], gantry=gantry, isocentre=spots["isocentre"][beam])
    ds.NumberOfControlPoints = len(points)
    ds.FinalCumulativeMetersetWeight = f"{cumulative:.10g}"
    ds.IonControlPointSequence = Sequence(points)
    return ds


def _fraction_group(number: int, *, n_fx: int, beams: list[Dataset], description: str, dose_uid: str | None):
    fg = Dataset()
    fg.FractionGroupNumber = number
    fg.FractionGroupDescription = description
    fg.NumberOfFractionsPlanned = int(n_fx)
    fg.NumberOfBeams = len(beams)
    fg.NumberOfBrachyApplicationSetups = 0
    refs = []
    for b in beams:
        r = Dataset()
        r.ReferencedBeamNumber = b.BeamNumber
        r.BeamMeterset = f"{float(b.FinalCumulativeMetersetWeight):.10g}"
        refs.append(r)
    fg.ReferencedBeamSequence = Sequence(refs)
    if dose_uid:
        fg.ReferencedDoseSequence = Sequence([referenced(RT_DOSE, dose_uid)])
    return fg


def write_rt_ion_plan(
    path,
    spots: dict,
    fraction_groups: list[dict],
    *,
    label: str,
    patient_position: str,
    ids: dict,
    structure_set_uid: str,
    finish=None,
) -> str:
    """Write an RT Ion Plan; returns its SOPInstanceUID.

    Parameters
    ----------
    spots : dict
        :meth:`~dosepaint.planning.engine.PyRadPlanEngine.spot_map` plus ``radiation``
        ("carbon" or "protons").
    fraction_groups : list of dict
        ``{"weights": (n_spot,) per fraction, "n_fx": int, "description": str, "dose_uid": str | None}``
        in course order.
    ids : dict
        ``patient``, ``study``, ``series`` attribute dicts and ``sop`` (the SOPInstanceUID).
    finish : callable, optional
        ``f(ds)`` applied before saving (the package's common attributes).
    """
    ds = _new_dataset(RT_ION_PLAN, ids["sop"], patient=ids["patient"], study=ids["study"], series=ids["series"])
    ds.Modality = "RTPLAN"
    ds.RTPlanLabel = f"RESEARCH {label}"[:16]
    ds.RTPlanName = f"dosepaint {label} (research, not for treatment)"[:64]
    ds.RTPlanDescription = "Research plan from dosepaint; pyRadPlan generic machine; recompute before any use."
    ds.RTPlanDate = ds.RTPlanTime = None
    ds.PlanIntent = "RESEARCH"
    ds.RTPlanGeometry = "PATIENT"
    ds.ReferencedStructureSetSequence = Sequence([referenced(RT_STRUCT, structure_set_uid)])
    ds.ApprovalStatus = "UNAPPROVED"
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = patient_position
    ds.PatientSetupSequence = Sequence([setup])
    n_beam = len(spots["isocentre"])
    beams, groups = [], []
    for g, fg in enumerate(fraction_groups):
        w = np.asarray(fg["weights"], float)
        fg_beams = [
            ion_beam(
                g * n_beam + b + 1,
                spots,
                w,
                beam=b,
                patient_position=patient_position,
                name=f"{fg['description']} B{b + 1}",
            )
            for b in range(n_beam)
        ]
        beams += fg_beams
        groups.append(
            _fraction_group(
                g + 1, n_fx=fg["n_fx"], beams=fg_beams, description=fg["description"], dose_uid=fg.get("dose_uid")
            )
        )
    ds.FractionGroupSequence = Sequence(groups)
    ds.IonBeamSequence = Sequence(beams)
    if finish is not None:
        finish(ds)
    _save(ds, Path(path))
    return ids["sop"]


def read_rt_ion_plan(path) -> dict:
    """Spots and fraction groups of an RT Ion Plan (patient LPS, pyRadPlan weights per fraction).

    Returns
    -------
    dict
        ``patient_position``; ``fraction_groups``: list of ``{"n_fx", "description", "beams"}``, each
        beam ``{"gantry_deg", "isocentre" (3,), "energy" (n,), "offset" (n, 3) LPS mm from the
        isocentre, "weight" (n,) pyRadPlan weight per fraction}``.

    Raises
    ------
    DosepaintInputError
        When the file is not an RT Ion Plan with NP metersets and spot maps.
    """
    ds = pydicom.dcmread(path)
    if ds.get("SOPClassUID") != RT_ION_PLAN:
        raise DosepaintInputError("not an RT Ion Plan", path=path)
    position = str(ds.PatientSetupSequence[0].PatientPosition)
    beams = {int(b.BeamNumber): b for b in ds.IonBeamSequence}
    groups = []
    for fg in ds.FractionGroupSequence:
        items = [_read_beam(beams[int(r.ReferencedBeamNumber)], position, path) for r in fg.ReferencedBeamSequence]
        groups.append(
            {
                "n_fx": int(fg.NumberOfFractionsPlanned),
                "description": str(fg.get("FractionGroupDescription", "")),
                "beams": items,
            }
        )
    return {"patient_position": position, "fraction_groups": groups}


def _read_beam(beam: Dataset, position: str, path) -> dict:
    if beam.get("PrimaryDosimeterUnit") != "NP":
        raise DosepaintInputError(f"beam {beam.BeamNumber}: meterset unit is not NP (particles)", path=path)
    first = beam.IonControlPointSequence[0]
    gantry = float(first.GantryAngle)
    energy, xy, weight = [], [], []
    for cp in beam.IonControlPointSequence:
        w = np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, float))
        if not np.any(w > 0):
            continue
        energy.append(np.full(w.size, float(cp.NominalBeamEnergy)))
        xy.append(np.asarray(cp.ScanSpotPositionMap, float).reshape(-1, 2))
        weight.append(w / PARTICLES_PER_WEIGHT)
    cat = lambda parts, empty: np.concatenate(parts) if parts else empty  # noqa: E731
    return {
        "gantry_deg": gantry,
        "isocentre": np.asarray(first.IsocenterPosition, float),
        "energy": cat(energy, np.zeros(0)),
        "weight": cat(weight, np.zeros(0)),
        "offset": iec.spot_offsets(cat(xy, np.zeros((0, 2))), gantry_deg=gantry, patient_position=position),
    }
