"""Synthetic sacral-chordoma cohort: real DICOM in, ground truth kept apart.

One patient is generated from ``(seed, index)`` alone, so patients can be
generated in parallel and any one reproduced bit for bit.  The DICOM folder
holds only what a clinic would export (with a fake identity, to test that
nothing from it leaks); the truth folder holds NIfTI maps and JSON
parameters that pipeline stages never read.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import radiobiology
from ..geometry import ORIENTATIONS, Grid, resample
from ..io import dicom as dcm
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
    alpha, alpha_beta, clonogenic_fraction : float
        Truth of the outcome model (Gy⁻¹, Gy, 1).

    Returns
    -------
    dict
        The truth record (also written as ``truth.json``).
    """
    p = PRESETS[preset]
    rng = np.random.default_rng([seed, index])
    out_dicom, out_truth = Path(out_dicom), Path(out_truth)
    volumes = np.geomspace(*p.gtv_volume_range_cc, n_patients)
    volume_cc = float(volumes[np.random.default_rng(seed).permutation(n_patients)[index]])
    a = an.Anatomy.draw(rng, gtv_volume_cc=volume_cc)

    orientation = "HFP" if index % 7 != 1 else ("HFS" if index % 2 else "FFP")
    iop = ORIENTATIONS[orientation]
    ct_grid = box_grid(p.ct_box, p.ct_spacing, iop)
    mr_to_ct = rigid(rng.uniform(-3, 3, 3), rng.uniform(-10, 10, 3))
    dwi_to_t2 = rigid(rng.uniform(-1, 1, 3), rng.uniform(-2.5, 2.5, 3))
    mr_grid = box_grid(p.mr_box, p.t2_spacing, ORIENTATIONS["HFS"])
    dwi_box = (p.mr_box[0], (p.mr_box[1][0] + 10, p.mr_box[1][1] - 10), p.mr_box[2])
    dwi_grid = box_grid(dwi_box, p.dwi_spacing, ORIENTATIONS["HFS"])
    pet_grid = box_grid(p.ct_box, (p.pet_spacing,) * 3, iop)

    # Identity planted in every header, so that leaks can be tested.
    surname = SURNAMES[index % len(SURNAMES)]
    identity = {
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
    patient_tags = {
        k: identity[k] for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
    }
    study_date = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 2500)))
    study = {
        "StudyInstanceUID": dcm.uid(seed, index, "study"),
        "StudyDate": study_date.strftime("%Y%m%d"),
        "StudyTime": "083000",
        "StudyID": "1",
        "AccessionNumber": identity["AccessionNumber"],
        "ReferringPhysicianName": identity["ReferringPhysicianName"],
        "InstitutionName": identity["InstitutionName"],
    }
    ct_for = dcm.uid(seed, index, "for-ct")
    mr_for = dcm.uid(seed, index, "for-mr")

    def series(name, number, modality, description, for_uid, **extra):
        d = {
            "SeriesInstanceUID": dcm.uid(seed, index, name),
            "SeriesNumber": number,
            "Modality": modality,
            "SeriesDescription": description,
            "Manufacturer": "dosepaint-synthetic",
            "PatientPosition": orientation if modality != "MR" else "HFS",
            **extra,
        }
        if for_uid:
            d["FrameOfReferenceUID"] = for_uid
        return d

    layout = _ExportLayout(out_dicom, nested=index % 3 != 2, key=(seed, index))

    # --- CT and structures --------------------------------------------------------
    cx, cy, cz = ct_grid.world()
    labels = a.labels(cx, cy, cz)
    hu = _lut(labels, HU) + rng.normal(0, 12.0, labels.shape)
    hu = np.where(labels == an.AIR, -1000.0, hu)
    ct_series = series("ct", 2, "CT", "Planning CT pelvis", ct_for, KVP="120")
    ct_written = dcm.write_image_series(
        hu,
        ct_grid,
        layout.folder("CT"),
        modality="CT",
        sop_class=dcm.CT_IMAGE,
        patient=patient_tags,
        study=study,
        series=ct_series,
        file_pattern=layout.pattern("CT"),
        rescale="hu",
    )
    normal = ct_grid.matrix[:, 2]
    ct_refs = [
        (sop, float(np.dot(np.asarray(ct_grid.origin) + normal * ct_grid.spacing[2] * k, normal)))
        for k, (sop, _) in enumerate(ct_written)
    ]
    masks = an.structure_masks(a, ct_grid, labels)
    roi_names = {canon: str(rng.choice(v)) for canon, v in ROI_VARIANTS.items()}
    structures = {roi_names[c]: mask_to_contours(m, ct_grid) for c, m in masks.items() if m.any()}
    dcm.write_rtstruct(
        layout.single("RTSTRUCT", "RS.dcm"),
        structures=structures,
        ct_refs=ct_refs,
        ct_normal=normal,
        frame_of_reference=ct_for,
        patient=patient_tags,
        study=study,
        series=series("rtstruct", 3, "RTSTRUCT", "Structures", None),
    )

    # --- truth on the CT grid --------------------------------------------------------
    # Microstructure matters inside the GTV only: evaluated there (the random fields are the
    # generator's main cost on the whole CT grid) and zero elsewhere.
    in_gtv = masks["GTV"]
    micro = {}
    for name, values in a.microstructure(cx[in_gtv], cy[in_gtv], cz[in_gtv]).items():
        micro[name] = np.zeros(labels.shape)
        micro[name][in_gtv] = values
    truth_dir = out_truth
    for name in ("radius", "vf", "d_in", "d_free", "cell_density"):
        files.write_array(micro[name], ct_grid, truth_dir / f"{name}.nii.gz")
    for c, m in masks.items():
        files.write_array(m.astype(np.uint8), ct_grid, truth_dir / "masks" / f"{c}.nii.gz", dtype=np.uint8)
    files.write_array(labels, ct_grid, truth_dir / "labels.nii.gz", dtype=np.uint8)

    # --- T2w MR (own frame of reference) --------------------------------------------
    mx, my, mz = mr_grid.world()
    px, py, pz = _apply(mr_to_ct, mx, my, mz)
    lab_mr = a.labels(px, py, pz)
    bias = 1.0 + 0.15 * a.fields["bias"](mx, my, mz)
    t2 = _lut(lab_mr, T2W) * bias
    t2 = _rician(t2, 15.0, rng)
    dcm.write_image_series(
        t2,
        mr_grid,
        layout.folder("MR_T2"),
        modality="MR",
        sop_class=dcm.MR_IMAGE,
        patient=patient_tags,
        study=study,
        series=series(
            "t2w",
            4,
            "MR",
            "T2 TSE axial pelvis",
            mr_for,
            RepetitionTime="4500",
            EchoTime="95",
            MagneticFieldStrength="1.5",
        ),
        file_pattern=layout.pattern("T2"),
    )

    # --- DWI: slice-profile supersampling, Rician noise -----------------------------------
    delta_ms, Delta_ms = 20.0, 40.0
    dx, dy, dz = dwi_grid.world()
    sub = np.array([-1 / 3, 0.0, 1 / 3]) * dwi_grid.spacing[2]
    nrm = dwi_grid.matrix[:, 2]
    sig = 0.0
    for s in sub:
        qx, qy, qz = _apply(dwi_to_t2, dx + s * nrm[0], dy + s * nrm[1], dz + s * nrm[2])
        qx, qy, qz = _apply(mr_to_ct, qx, qy, qz)
        sig = sig + dwi_signals(a, qx, qy, qz, bvalues=p.bvalues, delta_s=delta_ms / 1e3, Delta_s=Delta_ms / 1e3) / len(
            sub
        )
    sigma = DWI_S0[an.GTV] / p.snr_b0
    sig = _rician(sig, sigma, rng)
    dwi_series = series(
        "dwi",
        5,
        "MR",
        "ep2d_diff DWI multi-b",
        mr_for,
        EchoTime="70",
        RepetitionTime="5200",
        MagneticFieldStrength="1.5",
    )
    n_slices = dwi_grid.shape[0]
    for ib, b in enumerate(p.bvalues):

        def tags(k, b=b):
            return {"DiffusionBValue": float(b)}

        def timing(ds, k):
            dcm.add_private_pgse_timing(ds, delta_ms=delta_ms, Delta_ms=Delta_ms)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]

        series_b = dict(dwi_series)
        dcm.write_image_series(
            sig[..., ib],
            dwi_grid,
            layout.folder("DWI"),
            modality="MR",
            sop_class=dcm.MR_IMAGE,
            patient=patient_tags,
            study=study,
            series=series_b,
            file_pattern=layout.pattern(f"DWI_b{int(b)}"),
            instance_offset=ib * n_slices,
            per_slice_tags=tags,
            extra_per_slice=timing,
            rescale="global",
        )

    # --- PET (same frame as the planning CT): SUV truth → PSF → noise → Bq/mL ---------------
    suv = _lut(labels, SUV)
    gtv = masks["GTV"]
    pet_field = a.fields["pet"](cx[gtv], cy[gtv], cz[gtv])
    active = np.zeros_like(gtv)
    active[gtv] = pet_field > np.quantile(pet_field, a.pet["active_quantile"])
    suv = np.where(gtv, a.pet["suv_gtv_rest"], suv)
    suv[active] = a.pet["suv_active"] * (1.0 + 0.12 * a.fields["pet_het"](cx[active], cy[active], cz[active]))
    files.write_array(suv, ct_grid, truth_dir / "suv.nii.gz")
    files.write_array(active.astype(np.uint8), ct_grid, truth_dir / "masks" / "PET_ACTIVE.nii.gz", dtype=np.uint8)
    fwhm = 6.0
    blurred = ndimage.gaussian_filter(suv, sigma=(fwhm / 2.3548) / np.asarray(ct_grid.spacing[::-1]))
    suv_pet = sitk.GetArrayFromImage(resample(ct_grid.image(blurred.astype(np.float32)), pet_grid))
    suv_pet = np.maximum(suv_pet + rng.normal(0, 1, suv_pet.shape) * 0.08 * np.sqrt(np.maximum(suv_pet, 0.05)), 0)
    weight_kg = float(np.round(rng.uniform(55, 105), 1))
    dose_bq = float(np.round(rng.uniform(200e6, 350e6), -5))
    uptake_s = float(rng.uniform(3300, 4200))
    cross_midnight = index % 5 == 3
    series_start = (
        dt.datetime.combine(study_date, dt.time(0, 25, 0))
        if cross_midnight
        else dt.datetime.combine(study_date, dt.time(10, 15, 0))
    )
    injection = series_start - dt.timedelta(seconds=uptake_s)
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
    pet_series = series(
        "pet",
        6,
        "PT",
        "PET WB FDG AC",
        ct_for,
        Units="BQML",
        DecayCorrection="START",
        CorrectedImage=["ATTN", "DECY", "SCAT"],
        PatientWeight=f"{weight_kg}",
        SeriesDate=series_start.strftime("%Y%m%d"),
        SeriesTime=series_start.strftime("%H%M%S"),
        AcquisitionDate=series_start.strftime("%Y%m%d"),
        AcquisitionTime=series_start.strftime("%H%M%S"),
        RadiopharmaceuticalInformationSequence=rp,
    )
    dcm.write_image_series(
        bqml,
        pet_grid,
        layout.folder("PET"),
        modality="PT",
        sop_class=dcm.PET_IMAGE,
        patient=patient_tags,
        study=study,
        series=pet_series,
        file_pattern=layout.pattern("PT"),
        dtype=np.int16,
        rescale="per_slice",
    )

    # --- delivered clinical plan (analytic), RTDOSE EFFECTIVE --------------------------------
    d_ld = PRESCRIPTION_GY * N_FRACTIONS_LD / N_FRACTIONS
    d_hd = PRESCRIPTION_GY - d_ld
    sig_vox = 3.0 / np.asarray(ct_grid.spacing[::-1])

    def covered(mask, margin):
        dist = ndimage.distance_transform_edt(~mask, sampling=ct_grid.spacing[::-1])
        return ndimage.gaussian_filter((dist <= margin).astype(float), sigma=sig_vox)

    dose = d_ld * covered(masks["CTV_LD"], 5.0) + d_hd * covered(masks["CTV_HD"], 5.0)
    oars = masks["RECTUM"] | masks["BOWEL"] | masks["SIGMA"]
    cold = float(rng.uniform(0.08, 0.25)) if rng.random() < 0.5 else 0.0
    if cold > 0 and oars.any():
        d_oar = ndimage.distance_transform_edt(~oars, sampling=ct_grid.spacing[::-1])
        dose *= 1.0 - cold * np.exp(-(d_oar**2) / (2 * 8.0**2))
    body = masks["BODY"]
    dose = np.where(body, dose, 0.0)
    dose[body] *= 1.0 + 0.015 * a.fields["vf"](cx[body] + 17, cy[body], cz[body])
    body_pts = np.stack([c[body] for c in (cx, cy, cz)], axis=1)
    lo, hi = body_pts.min(0) - 6, body_pts.max(0) + 6
    dose_grid = box_grid(tuple(zip(lo, hi)), (p.rtdose_spacing,) * 3, iop)
    dose_img = resample(ct_grid.image(dose.astype(np.float32)), dose_grid)
    dose_arr = sitk.GetArrayFromImage(dose_img)
    dcm.write_rtdose(
        layout.single("RTDOSE", "RD.dcm"),
        dose_arr,
        dose_grid,
        frame_of_reference=ct_for,
        patient=patient_tags,
        study=study,
        series=series("rtdose", 7, "RTDOSE", "Delivered plan dose", None),
    )
    files.write_array(dose, ct_grid, truth_dir / "delivered_dose.nii.gz")

    # A non-DICOM file, as in real exports.
    (out_dicom / "README.txt").write_text("synthetic export; not patient data\n")

    # --- outcome from the known Poisson TCP model ------------------------------------------------
    rho_dose = sitk.GetArrayFromImage(resample(ct_grid.image(micro["cell_density"].astype(np.float32)), dose_grid))
    gtv_dose = sitk.GetArrayFromImage(resample(ct_grid.image(gtv.astype(np.float32)), dose_grid)) >= 0.5
    clonogens = clonogenic_fraction * np.where(gtv_dose, rho_dose, 0.0) * dose_grid.voxel_volume
    beta = alpha / alpha_beta
    tcp = radiobiology.poisson_tcp(clonogens, dose_arr, alpha=alpha, beta=beta, n_fractions=N_FRACTIONS)
    event = int(rng.random() > tcp)
    time_months = float(np.round(rng.lognormal(np.log(28.0), 0.5) if event else rng.uniform(36, 120), 1))

    truth = {
        "patient_id": patient_id,
        "index": index,
        "preset": preset,
        "seed": seed,
        "orientation": orientation,
        "gtv_volume_cc": float(gtv.sum() * ct_grid.voxel_volume / 1000.0),
        "gtv_volume_target_cc": volume_cc,
        "structure_volumes_cc": {c: float(m.sum() * ct_grid.voxel_volume / 1000.0) for c, m in masks.items()},
        "roi_names": roi_names,
        "mr_to_ct": _transform_record(mr_to_ct),
        "dwi_to_t2w": _transform_record(dwi_to_t2),
        "pgse_ms": {"delta": delta_ms, "Delta": Delta_ms},
        "bvalues": list(p.bvalues),
        "dwi_noise_sigma": sigma,
        "pet": {
            **a.pet,
            "weight_kg": weight_kg,
            "dose_bq": dose_bq,
            "uptake_s": uptake_s,
            "cross_midnight": cross_midnight,
            "psf_fwhm_mm": fwhm,
            "active_volume_cc": float(active.sum() * ct_grid.voxel_volume / 1000.0),
        },
        "plan": {"prescription_gy_rbe": PRESCRIPTION_GY, "n_fractions": N_FRACTIONS, "cold_spot_depth": cold},
        "model": {
            "alpha": alpha,
            "beta": beta,
            "alpha_beta": alpha_beta,
            "clonogenic_fraction": clonogenic_fraction,
            "n_fractions": N_FRACTIONS,
            "clonogens_total": float(clonogens.sum()),
            "tcp": tcp,
        },
        "outcome": {"event": event, "time_months": time_months},
        "identity": identity,
    }
    files.write_json(truth, truth_dir / "truth.json")
    files.write_transform(mr_to_ct, truth_dir / "mr_to_ct.tfm")
    files.write_transform(dwi_to_t2, truth_dir / "dwi_to_t2w.tfm")
    return truth
