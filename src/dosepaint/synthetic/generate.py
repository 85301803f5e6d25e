"""Synthetic sacral-chordoma cohort: real DICOM in, ground truth kept apart.

One patient is generated from ``(seed, index)`` alone, so patients can be
generated in parallel and any one reproduced bit for bit.  The DICOM folder
holds only what a clinic would export (with a fake identity, to test that
nothing from it leaks); the truth folder holds NIfTI maps and JSON
parameters that pipeline stages never read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import radiobiology
from ..geometry import ORIENTATIONS, Grid, resample
from ..io import dicom_write as dcm
from ..io import files
from ..microstructure import two_compartment_signal
from ..structures import mask_to_contours
from . import anatomy as an
from .presets import PRESETS, Preset  # noqa: F401 (Preset re-exported for callers)

F18_HALF_LIFE_S = 6586.2
PRESCRIPTION_GY = 73.6
N_FRACTIONS = 16
N_FRACTIONS_LD = 9


SURNAMES = (
    "Quillfeather",
    "Brannigan",
    "Okonkwo-Test",
    "Vasquez-Fake",
    "Lindqvist",
    "Moreau",
    "Takahashi",
    "Abernathy",
    "Castellano",
    "Nakamura",
)

ROI_VARIANTS = {
    "GTV": ["GTV", "GTV_primary", "GTVp", "GTV 1"],
    "CTV_HD": ["CTV_HD", "CTV 74", "CTV_high", "CTV 73.6"],
    "CTV_LD": ["CTV_LD", "CTV 41", "CTV_low", "CTV 41.4"],
    "BODY": ["BODY", "External", "Outer Contour"],
    "SKIN": ["Skin", "SKIN_3mm"],
    "RECTUM": ["Rectum", "RECTUM", "Rectum_wall"],
    "SIGMA": ["Sigma", "Sigmoid", "Colon_Sigmoid"],
    "BOWEL": ["Bowel", "BowelBag", "Bowel_Bag"],
    "NERVES": ["Sacral_nerves", "Nerves", "SacralPlexus"],
}


def box_grid(box, spacing, iop) -> Grid:
    """Grid with orientation ``iop`` and ``spacing`` covering an LPS box ((x0,x1),(y0,y1),(z0,z1))."""
    from itertools import product

    corners = np.array(list(product(*box)), float)
    row = np.asarray(iop[:3], float)
    col = np.asarray(iop[3:], float)
    mat = np.column_stack([row, col, np.cross(row, col)])
    local = corners @ mat
    lo, hi = local.min(0), local.max(0)
    n = np.floor((hi - lo) / np.asarray(spacing)).astype(int) + 1
    lo = lo + 0.5 * ((hi - lo) - (n - 1) * np.asarray(spacing))  # centre the grid in the box
    return Grid(
        (int(n[2]), int(n[1]), int(n[0])), tuple(float(s) for s in spacing), tuple(mat @ lo), tuple(mat.ravel())
    )


def rigid(angles_deg, translation_mm) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetRotation(*np.deg2rad(angles_deg))
    t.SetTranslation(tuple(float(v) for v in translation_mm))
    return t


def _apply(transform: sitk.Euler3DTransform, x, y, z):
    """Apply a rigid transform to LPS coordinate arrays."""
    mat = np.asarray(transform.GetMatrix()).reshape(3, 3)
    centre = np.asarray(transform.GetCenter())
    trans = np.asarray(transform.GetTranslation())
    pts = np.stack([x, y, z], axis=-1) - centre
    out = pts @ mat.T + centre + trans
    return out[..., 0], out[..., 1], out[..., 2]


def _transform_record(t: sitk.Euler3DTransform) -> dict:
    return {
        "matrix": list(t.GetMatrix()),
        "translation_mm": list(t.GetTranslation()),
        "center_mm": list(t.GetCenter()),
        "angles_deg": list(np.rad2deg([t.GetAngleX(), t.GetAngleY(), t.GetAngleZ()])),
    }


# --- per-modality signal models -------------------------------------------------

HU = {
    an.AIR: -1000,
    an.FAT: -95,
    an.MUSCLE: 45,
    an.BONE_CORTEX: 1100,
    an.BONE_MARROW: 280,
    an.GTV: 30,
    an.RECTUM: 35,
    an.SIGMA: 35,
    an.BOWEL: 25,
    an.NERVE: 40,
    an.BOWEL_GAS: -850,
    an.RECTAL_GAS: -850,
}
T2W = {
    an.AIR: 0,
    an.FAT: 900,
    an.MUSCLE: 260,
    an.BONE_CORTEX: 30,
    an.BONE_MARROW: 650,
    an.GTV: 1300,
    an.RECTUM: 420,
    an.SIGMA: 420,
    an.BOWEL: 700,
    an.NERVE: 500,
    an.BOWEL_GAS: 10,
    an.RECTAL_GAS: 10,
}
# DWI b=0 signal (fat suppressed) and apparent diffusivity (mm²/s) of non-tumour tissue.
DWI_S0 = {
    an.AIR: 0,
    an.FAT: 60,
    an.MUSCLE: 380,
    an.BONE_CORTEX: 20,
    an.BONE_MARROW: 120,
    an.GTV: 1000,
    an.RECTUM: 450,
    an.SIGMA: 450,
    an.BOWEL: 600,
    an.NERVE: 420,
    an.BOWEL_GAS: 5,
    an.RECTAL_GAS: 5,
}
DWI_ADC = {
    an.AIR: 0.0,
    an.FAT: 0.3e-3,
    an.MUSCLE: 1.45e-3,
    an.BONE_CORTEX: 0.2e-3,
    an.BONE_MARROW: 0.5e-3,
    an.GTV: 0.0,
    an.RECTUM: 1.6e-3,
    an.SIGMA: 1.6e-3,
    an.BOWEL: 1.9e-3,
    an.NERVE: 1.3e-3,
    an.BOWEL_GAS: 0.0,
    an.RECTAL_GAS: 0.0,
}
SUV = {
    an.AIR: 0.0,
    an.FAT: 0.35,
    an.MUSCLE: 0.85,
    an.BONE_CORTEX: 0.6,
    an.BONE_MARROW: 1.4,
    an.GTV: 1.5,
    an.RECTUM: 1.6,
    an.SIGMA: 1.6,
    an.BOWEL: 1.9,
    an.NERVE: 0.9,
    an.BOWEL_GAS: 0.0,
    an.RECTAL_GAS: 0.0,
}


def _lut(labels, table):
    lut = np.zeros(max(table) + 1)
    for k, v in table.items():
        lut[k] = v
    return lut[labels]


def _rician(signal, sigma, rng):
    return np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)


def dwi_signals(a: an.Anatomy, x, y, z, *, bvalues, delta_s, Delta_s, ivim_f=0.04, ivim_dstar=15e-3):
    """Noise-free multi-b signal at LPS points: tumour two-compartment, tissue mono-exponential + IVIM."""
    lab = a.labels(x, y, z)
    b = np.asarray(bvalues, float)
    s0 = _lut(lab, DWI_S0)
    sig = np.exp(-_lut(lab, DWI_ADC)[..., None] * b)
    tumour = lab == an.GTV
    if tumour.any():
        m = a.microstructure(x[tumour], y[tumour], z[tumour])
        sig[tumour] = two_compartment_signal(
            b, radius=m["radius"], vf=m["vf"], d_in=m["d_in"], d_free=m["d_free"], delta=delta_s, Delta=Delta_s
        )
    perf = ivim_f * np.exp(-b * ivim_dstar)
    return s0[..., None] * ((1 - ivim_f) * sig + perf)


class _ExportLayout:
    """Where a patient's files go: nested by series with readable names, or flat with UID names,
    as different clinics' exports do; ingest must not depend on either.
    """

    def __init__(self, root: Path, *, nested: bool, key):
        self.root, self.nested, self.key = Path(root), nested, key

    def folder(self, series: str) -> Path:
        return self.root / "study1" / series if self.nested else self.root

    def pattern(self, prefix: str) -> str:
        return f"{prefix}_" + "{index:04d}.dcm" if self.nested else "{uid}.dcm"

    def single(self, series: str, name: str) -> Path:
        return self.folder(series) / name if self.nested else self.root / f"{dcm.uid(*self.key, name)}.dcm"


@dataclass
class _Draw:
    """One patient being generated: its preset, random stream, anatomy, geometry, identity and export
    layout; the CT-grid coordinates, labels and masks once the CT is written.
    """

    p: Preset
    rng: np.random.Generator
    a: an.Anatomy
    seed: int
    index: int
    orientation: str
    ct_grid: Grid
    mr_grid: Grid
    dwi_grid: Grid
    pet_grid: Grid
    mr_to_ct: sitk.Euler3DTransform
    dwi_to_t2: sitk.Euler3DTransform
    identity: dict
    study_date: dt.date
    layout: _ExportLayout
    truth_dir: Path
    gtv_volume_target_cc: float
    coords: tuple = ()
    labels: Any = None  # int array (z, y, x) once the CT is written
    masks: dict = field(default_factory=dict)

    @property
    def patient_tags(self) -> dict:
        keys = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
        return {k: self.identity[k] for k in keys}

    @property
    def study(self) -> dict:
        return {
            "StudyInstanceUID": dcm.uid(self.seed, self.index, "study"),
            "StudyDate": self.study_date.strftime("%Y%m%d"),
            "StudyTime": "083000",
            "StudyID": "1",
            "AccessionNumber": self.identity["AccessionNumber"],
            "ReferringPhysicianName": self.identity["ReferringPhysicianName"],
            "InstitutionName": self.identity["InstitutionName"],
        }

    def frame(self, which: str) -> str:
        """FrameOfReferenceUID of the CT (and PET, RT objects) or of the MR series."""
        return dcm.uid(self.seed, self.index, f"for-{which}")

    def series(self, name, number, modality, description, for_uid, **extra) -> dict:
        d = {
            "SeriesInstanceUID": dcm.uid(self.seed, self.index, name),
            "SeriesNumber": number,
            "Modality": modality,
            "SeriesDescription": description,
            "Manufacturer": "dosepaint-synthetic",
            "PatientPosition": self.orientation if modality != "MR" else "HFS",
            **extra,
        }
        if for_uid:
            d["FrameOfReferenceUID"] = for_uid
        return d

    def write_series(self, array, grid, folder, prefix, *, modality, sop_class, series, **kw) -> list:
        return dcm.write_image_series(
            array,
            grid,
            self.layout.folder(folder),
            modality=modality,
            sop_class=sop_class,
            patient=self.patient_tags,
            study=self.study,
            series=series,
            file_pattern=self.layout.pattern(prefix),
            **kw,
        )


def _identity(rng: np.random.Generator, index: int) -> dict:
    """A fake identity planted in every header, so that leaks can be tested."""
    surname = SURNAMES[index % len(SURNAMES)]
    return {
        "PatientName": f"{surname}^Zelda^{index:03d}",
        "PatientID": f"MRN{int(rng.integers(10**6, 10**7))}",
        "PatientBirthDate": (
            f"19{int(rng.integers(40, 75))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 28)):02d}"
        ),
        "PatientSex": str(rng.choice(["F", "M"])),
        "InstitutionName": "Fakeville General Hospital",
        "ReferringPhysicianName": "Nobody^Doctor",
        "AccessionNumber": f"ACC{int(rng.integers(10**5, 10**6))}",
        "OtherPatientIDs": f"ALT{int(rng.integers(10**5, 10**6))}",
    }


def _draw(out_dicom: Path, out_truth: Path, *, preset: str, seed: int, index: int, n_patients: int) -> _Draw:
    """The patient's anatomy, orientation, image grids, misalignments and identity (the first draws)."""
    p = PRESETS[preset]
    rng = np.random.default_rng([seed, index])
    volumes = np.geomspace(*p.gtv_volume_range_cc, n_patients)
    volume_cc = float(volumes[np.random.default_rng(seed).permutation(n_patients)[index]])
    a = an.Anatomy.draw(rng, gtv_volume_cc=volume_cc)
    if p.microstructure == "foreign":  # a side stream: the other presets' draws stay as they were
        side = np.random.default_rng([seed, index, 7])
        a.micro_centre = {"ln_radius": float(side.uniform(np.log(4.8e-3), np.log(10e-3))),
                          "vf": float(side.uniform(0.15, 0.5)), "d_in": float(side.uniform(1.2e-3, 1.8e-3)),
                          "snr_b0": float(side.uniform(*p.snr_b0_range)) if p.snr_b0_range else p.snr_b0}  # fmt: skip
    orientation = "HFP" if index % 7 != 1 else ("HFS" if index % 2 else "FFP")
    iop = ORIENTATIONS[orientation]
    mr_to_ct = rigid(rng.uniform(-3, 3, 3), rng.uniform(-10, 10, 3))
    dwi_to_t2 = rigid(rng.uniform(-1, 1, 3), rng.uniform(-2.5, 2.5, 3))
    dwi_box = (p.mr_box[0], (p.mr_box[1][0] + 10, p.mr_box[1][1] - 10), p.mr_box[2])
    identity = _identity(rng, index)
    study_date = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 2500)))
    return _Draw(
        p, rng, a, seed, index, orientation,
        ct_grid=box_grid(p.ct_box, p.ct_spacing, iop),
        mr_grid=box_grid(p.mr_box, p.t2_spacing, ORIENTATIONS["HFS"]),
        dwi_grid=box_grid(dwi_box, p.dwi_spacing, ORIENTATIONS["HFS"]),
        pet_grid=box_grid(p.ct_box, (p.pet_spacing,) * 3, iop),
        mr_to_ct=mr_to_ct, dwi_to_t2=dwi_to_t2, identity=identity, study_date=study_date,
        layout=_ExportLayout(out_dicom, nested=index % 3 != 2, key=(seed, index)), truth_dir=out_truth,
        gtv_volume_target_cc=volume_cc,
    )  # fmt: skip


def _write_ct_and_structures(d: _Draw) -> dict:
    """The planning CT and the RTSTRUCT (clinic-style ROI names); returns the ROI names chosen."""
    d.coords = d.ct_grid.world()
    d.labels = labels = d.a.labels(*d.coords)
    hu = _lut(labels, HU) + d.rng.normal(0, 12.0, labels.shape)
    hu = np.where(labels == an.AIR, -1000.0, hu)
    ct_series = d.series("ct", 2, "CT", "Planning CT pelvis", d.frame("ct"), KVP="120")
    ct_written = d.write_series(hu, d.ct_grid, "CT", "CT", modality="CT", sop_class=dcm.CT_IMAGE,
                                series=ct_series, rescale="hu")  # fmt: skip
    normal = d.ct_grid.matrix[:, 2]
    ct_refs = dcm.slice_refs(ct_written, d.ct_grid)
    d.masks = an.structure_masks(d.a, d.ct_grid, labels)
    roi_names = {canon: str(d.rng.choice(v)) for canon, v in ROI_VARIANTS.items()}
    structures = {roi_names[c]: mask_to_contours(m, d.ct_grid) for c, m in d.masks.items() if m.any()}
    dcm.write_rtstruct(
        d.layout.single("RTSTRUCT", "RS.dcm"),
        structures=structures,
        ct_refs=ct_refs,
        ct_normal=normal,
        frame_of_reference=d.frame("ct"),
        patient=d.patient_tags,
        study=d.study,
        series=d.series("rtstruct", 3, "RTSTRUCT", "Structures", None),
    )
    return roi_names


def _write_truth_maps(d: _Draw) -> dict:
    """Microstructure, masks and labels on the CT grid (truth); returns the microstructure maps.

    Microstructure matters inside the GTV only: evaluated there (the random fields are the generator's
    main cost on the whole CT grid) and zero elsewhere.
    """
    cx, cy, cz = d.coords
    in_gtv = d.masks["GTV"]
    micro = {}
    for name, values in d.a.microstructure(cx[in_gtv], cy[in_gtv], cz[in_gtv]).items():
        micro[name] = np.zeros(d.labels.shape)
        micro[name][in_gtv] = values
    for name in ("radius", "vf", "d_in", "d_free", "cell_density"):
        files.write_array(micro[name], d.ct_grid, d.truth_dir / f"{name}.nii.gz")
    for c, m in d.masks.items():
        files.write_array(m.astype(np.uint8), d.ct_grid, d.truth_dir / "masks" / f"{c}.nii.gz", dtype=np.uint8)
    files.write_array(d.labels, d.ct_grid, d.truth_dir / "labels.nii.gz", dtype=np.uint8)
    return micro


def _write_t2w(d: _Draw) -> None:
    """T2w MR on its own frame of reference: bias field and Rician noise."""
    mx, my, mz = d.mr_grid.world()
    lab_mr = d.a.labels(*_apply(d.mr_to_ct, mx, my, mz))
    t2 = _rician(_lut(lab_mr, T2W) * (1.0 + 0.15 * d.a.fields["bias"](mx, my, mz)), 15.0, d.rng)
    tags = {"RepetitionTime": "4500", "EchoTime": "95", "MagneticFieldStrength": "1.5"}
    series = d.series("t2w", 4, "MR", "T2 TSE axial pelvis", d.frame("mr"), **tags)
    d.write_series(t2, d.mr_grid, "MR_T2", "T2", modality="MR", sop_class=dcm.MR_IMAGE, series=series)


def _write_dwi(d: _Draw, *, delta_ms: float, Delta_ms: float) -> float:
    """Multi-b DWI (slice-profile supersampling, Rician noise, PGSE timing); returns the noise σ."""
    dx, dy, dz = d.dwi_grid.world()
    sub = np.array([-1 / 3, 0.0, 1 / 3]) * d.dwi_grid.spacing[2]
    nrm = d.dwi_grid.matrix[:, 2]
    sig = 0.0
    for s in sub:
        q = _apply(d.dwi_to_t2, dx + s * nrm[0], dy + s * nrm[1], dz + s * nrm[2])
        q = _apply(d.mr_to_ct, *q)
        sig = sig + dwi_signals(d.a, *q, bvalues=d.p.bvalues, delta_s=delta_ms / 1e3, Delta_s=Delta_ms / 1e3) / len(sub)
    snr = d.a.micro_centre["snr_b0"] if d.a.micro_centre else d.p.snr_b0
    sigma = DWI_S0[an.GTV] / snr
    averages = np.asarray(d.p.dwi_averages or (1,) * len(d.p.bvalues), float)
    sig = _rician(sig, sigma / np.sqrt(averages), d.rng)  # σ per b-value: NumberOfAverages
    tags = {"EchoTime": "70", "RepetitionTime": "5200", "MagneticFieldStrength": "1.5"}
    dwi_series = d.series("dwi", 5, "MR", "ep2d_diff DWI multi-b", d.frame("mr"), **tags)

    def timing(ds, k):
        dcm.add_private_pgse_timing(ds, delta_ms=delta_ms, Delta_ms=Delta_ms)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]

    for ib, b in enumerate(d.p.bvalues):
        d.write_series(sig[..., ib], d.dwi_grid, "DWI", f"DWI_b{int(b)}", modality="MR", sop_class=dcm.MR_IMAGE,
                       series=dict(dwi_series), instance_offset=ib * d.dwi_grid.shape[0],
                       per_slice_tags=lambda k, b=b, n=averages[ib]: {"DiffusionBValue": float(b), **(
                           {"NumberOfAverages": float(n)} if d.p.dwi_averages else {})},
                       extra_per_slice=timing,
                       rescale="global")  # fmt: skip
    return sigma


def _suv_truth(d: _Draw) -> tuple[np.ndarray, np.ndarray]:
    """SUV on the CT grid and the active part of the GTV (truth, written)."""
    cx, cy, cz = d.coords
    gtv = d.masks["GTV"]
    pet_field = d.a.fields["pet"](cx[gtv], cy[gtv], cz[gtv])
    active = np.zeros_like(gtv)
    active[gtv] = pet_field > np.quantile(pet_field, d.a.pet["active_quantile"])
    suv = np.where(gtv, d.a.pet["suv_gtv_rest"], _lut(d.labels, SUV))
    suv[active] = d.a.pet["suv_active"] * (1.0 + 0.12 * d.a.fields["pet_het"](cx[active], cy[active], cz[active]))
    files.write_array(suv, d.ct_grid, d.truth_dir / "suv.nii.gz")
    files.write_array(active.astype(np.uint8), d.ct_grid, d.truth_dir / "masks" / "PET_ACTIVE.nii.gz", dtype=np.uint8)
    return suv, active


def _write_pet(d: _Draw, *, fwhm: float = 6.0) -> dict:
    """PET on the planning CT's frame: SUV truth → PSF → noise → Bq/mL (BQML, decay correction START);
    returns the acquisition record.
    """
    suv, active = _suv_truth(d)
    blurred = ndimage.gaussian_filter(suv, sigma=(fwhm / 2.3548) / np.asarray(d.ct_grid.spacing[::-1]))
    suv_pet = sitk.GetArrayFromImage(resample(d.ct_grid.image(blurred.astype(np.float32)), d.pet_grid))
    noise = d.rng.normal(0, 1, suv_pet.shape) * 0.08 * np.sqrt(np.maximum(suv_pet, 0.05))
    suv_pet = np.maximum(suv_pet + noise, 0)
    weight_kg = float(np.round(d.rng.uniform(55, 105), 1))
    dose_bq = float(np.round(d.rng.uniform(200e6, 350e6), -5))
    uptake_s = float(d.rng.uniform(3300, 4200))
    cross_midnight = d.index % 5 == 3
    start = dt.datetime.combine(d.study_date, dt.time(0, 25, 0) if cross_midnight else dt.time(10, 15, 0))
    injection = start - dt.timedelta(seconds=uptake_s)
    a_dec = dose_bq * 2 ** (-uptake_s / F18_HALF_LIFE_S)
    bqml = suv_pet * a_dec / (weight_kg * 1000.0)
    # Only some exports carry the full injection date-time; the others need SeriesDate.
    rp = dcm.radiopharmaceutical_sequence(
        name="Fluorodeoxyglucose",
        total_dose_bq=dose_bq,
        half_life_s=F18_HALF_LIFE_S,
        start_time=injection.strftime("%H%M%S"),
        start_datetime=injection.strftime("%Y%m%d%H%M%S") if cross_midnight else None,
    )
    date, time_ = start.strftime("%Y%m%d"), start.strftime("%H%M%S")
    pet_series = d.series("pet", 6, "PT", "PET WB FDG AC", d.frame("ct"), Units="BQML", DecayCorrection="START",
                          CorrectedImage=["ATTN", "DECY", "SCAT"], PatientWeight=f"{weight_kg}", SeriesDate=date,
                          SeriesTime=time_, AcquisitionDate=date, AcquisitionTime=time_,
                          RadiopharmaceuticalInformationSequence=rp)  # fmt: skip
    d.write_series(bqml, d.pet_grid, "PET", "PT", modality="PT", sop_class=dcm.PET_IMAGE, series=pet_series,
                   dtype=np.int16, rescale="per_slice")  # fmt: skip
    return {
        **d.a.pet,
        "weight_kg": weight_kg,
        "dose_bq": dose_bq,
        "uptake_s": uptake_s,
        "cross_midnight": cross_midnight,
        "psf_fwhm_mm": fwhm,
        "active_volume_cc": float(active.sum() * d.ct_grid.voxel_volume / 1000.0),
    }


def _delivered_dose(d: _Draw) -> tuple[np.ndarray, float]:
    """The delivered clinical plan (analytic, Gy(RBE)) on the CT grid and its OAR cold-spot depth."""
    d_ld = PRESCRIPTION_GY * N_FRACTIONS_LD / N_FRACTIONS
    d_hd = PRESCRIPTION_GY - d_ld
    sig_vox = 3.0 / np.asarray(d.ct_grid.spacing[::-1])

    def covered(mask, margin):
        dist = ndimage.distance_transform_edt(~mask, sampling=d.ct_grid.spacing[::-1])
        return ndimage.gaussian_filter((dist <= margin).astype(float), sigma=sig_vox)

    masks = d.masks
    dose = d_ld * covered(masks["CTV_LD"], 5.0) + d_hd * covered(masks["CTV_HD"], 5.0)
    oars = masks["RECTUM"] | masks["BOWEL"] | masks["SIGMA"]
    cold = float(d.rng.uniform(0.08, 0.25)) if d.rng.random() < 0.5 else 0.0
    if cold > 0 and oars.any():
        d_oar = ndimage.distance_transform_edt(~oars, sampling=d.ct_grid.spacing[::-1])
        dose *= 1.0 - cold * np.exp(-(d_oar**2) / (2 * 8.0**2))
    body = masks["BODY"]
    cx, cy, cz = d.coords
    dose = np.where(body, dose, 0.0)
    dose[body] *= 1.0 + 0.015 * d.a.fields["vf"](cx[body] + 17, cy[body], cz[body])
    return dose, cold


def _write_rtdose(d: _Draw, dose: np.ndarray) -> tuple[np.ndarray, Grid]:
    """The delivered dose as RTDOSE (EFFECTIVE) on a grid around the body; returns it and its grid."""
    body = d.masks["BODY"]
    body_pts = np.stack([c[body] for c in d.coords], axis=1)
    lo, hi = body_pts.min(0) - 6, body_pts.max(0) + 6
    dose_grid = box_grid(tuple(zip(lo, hi)), (d.p.rtdose_spacing,) * 3, ORIENTATIONS[d.orientation])
    dose_arr = sitk.GetArrayFromImage(resample(d.ct_grid.image(dose.astype(np.float32)), dose_grid))
    dcm.write_rtdose(
        d.layout.single("RTDOSE", "RD.dcm"),
        dose_arr,
        dose_grid,
        frame_of_reference=d.frame("ct"),
        patient=d.patient_tags,
        study=d.study,
        series=d.series("rtdose", 7, "RTDOSE", "Delivered plan dose", None),
    )
    files.write_array(dose, d.ct_grid, d.truth_dir / "delivered_dose.nii.gz")
    return dose_arr, dose_grid


def _outcome(d: _Draw, rho: np.ndarray, dose_arr, dose_grid: Grid, *, model: dict) -> dict:
    """Local control drawn from the known Poisson TCP model on the delivered dose; the model record."""
    rho_dose = sitk.GetArrayFromImage(resample(d.ct_grid.image(rho.astype(np.float32)), dose_grid))
    gtv = d.masks["GTV"].astype(np.float32)
    gtv_dose = sitk.GetArrayFromImage(resample(d.ct_grid.image(gtv), dose_grid)) >= 0.5
    clonogens = model["clonogenic_fraction"] * np.where(gtv_dose, rho_dose, 0.0) * dose_grid.voxel_volume
    beta = model["alpha"] / model["alpha_beta"]
    tcp = radiobiology.poisson_tcp(clonogens, dose_arr, alpha=model["alpha"], beta=beta, n_fractions=N_FRACTIONS)
    event = int(d.rng.random() > tcp)
    time_months = float(np.round(d.rng.lognormal(np.log(28.0), 0.5) if event else d.rng.uniform(36, 120), 1))
    return {
        "model": {
            "alpha": model["alpha"],
            "beta": beta,
            "alpha_beta": model["alpha_beta"],
            "clonogenic_fraction": model["clonogenic_fraction"],
            "n_fractions": N_FRACTIONS,
            "clonogens_total": float(clonogens.sum()),
            "tcp": tcp,
        },
        "outcome": {"event": event, "time_months": time_months},
    }


def generate_patient(
    out_dicom,
    out_truth,
    *,
    patient_id: str,
    index: int,
    preset: str,
    seed: int,
    n_patients: int,
    alpha: float,
    alpha_beta: float,
    clonogenic_fraction: float,
) -> dict:
    """Generate one synthetic patient.

    Parameters
    ----------
    out_dicom, out_truth : path-like
        Folders for the DICOM export and for the truth (kept apart).
    patient_id : str
        Pseudonymous id (never written into DICOM).
    index : int
        0-based position in the cohort; with ``seed`` it fixes every random draw.
    preset : str
        Key of :data:`PRESETS`.
    seed : int
        Cohort seed.
    n_patients : int
        Cohort size (the GTV volumes are spread over the preset's range across the cohort).
    alpha, alpha_beta, clonogenic_fraction : float
        Truth of the outcome model (Gy⁻¹, Gy, 1).

    Returns
    -------
    dict
        The truth record (also written as ``truth.json``).
    """
    out_dicom = Path(out_dicom)
    d = _draw(out_dicom, Path(out_truth), preset=preset, seed=seed, index=index, n_patients=n_patients)
    roi_names = _write_ct_and_structures(d)
    micro = _write_truth_maps(d)
    _write_t2w(d)
    delta_ms, Delta_ms = 20.0, 40.0
    sigma = _write_dwi(d, delta_ms=delta_ms, Delta_ms=Delta_ms)
    pet = _write_pet(d)
    dose, cold = _delivered_dose(d)
    dose_arr, dose_grid = _write_rtdose(d, dose)
    (out_dicom / "README.txt").write_text("synthetic export; not patient data\n")  # a non-DICOM file, as in exports
    model = {"alpha": alpha, "alpha_beta": alpha_beta, "clonogenic_fraction": clonogenic_fraction}
    drawn = _outcome(d, micro["cell_density"], dose_arr, dose_grid, model=model)
    voxel_mm3 = d.ct_grid.voxel_volume
    truth = {
        "patient_id": patient_id,
        "index": index,
        "preset": preset,
        "seed": seed,
        "orientation": d.orientation,
        "gtv_volume_cc": float(d.masks["GTV"].sum() * voxel_mm3 / 1000.0),
        "gtv_volume_target_cc": d.gtv_volume_target_cc,
        "structure_volumes_cc": {c: float(m.sum() * voxel_mm3 / 1000.0) for c, m in d.masks.items()},
        "roi_names": roi_names,
        "mr_to_ct": _transform_record(d.mr_to_ct),
        "dwi_to_t2w": _transform_record(d.dwi_to_t2),
        "pgse_ms": {"delta": delta_ms, "Delta": Delta_ms},
        "bvalues": list(d.p.bvalues),
        "dwi_noise_sigma": sigma,
        "pet": pet,
        "plan": {"prescription_gy_rbe": PRESCRIPTION_GY, "n_fractions": N_FRACTIONS, "cold_spot_depth": cold},
        **drawn,
        "identity": d.identity,
    }
    files.write_json(truth, d.truth_dir / "truth.json")
    files.write_transform(d.mr_to_ct, d.truth_dir / "mr_to_ct.tfm")
    files.write_transform(d.dwi_to_t2, d.truth_dir / "dwi_to_t2w.tfm")
    return truth
