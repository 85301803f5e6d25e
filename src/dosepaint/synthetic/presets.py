"""Synthetic cohort presets: image sizes, fields of view and cohort size (read by the workflow at parse
time, so this module imports nothing heavy).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Image sizes and cohort size of a synthetic preset (mm, s/mm²)."""

    n_patients: int
    gtv_volume_range_cc: tuple[float, float]
    ct_spacing: tuple[float, float, float]
    ct_box: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    t2_spacing: tuple[float, float, float]
    mr_box: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    dwi_spacing: tuple[float, float, float]
    pet_spacing: float
    rtdose_spacing: float
    bvalues: tuple[float, ...]
    snr_b0: float = 40.0
    #: "chordoma": the generator's chordoma-like microstructure (cell radius 5.5–11.5 µm); "foreign": a
    #: per-patient centre over wider, off-centre ranges (radius 4–12 µm, vf 0.05–0.6, D_in 1–2 and
    #: D_free 2–3 µm²/ms) so that patient-mean densities span more than 4×.
    microstructure: str = "chordoma"
    #: Per-patient SNR at b = 0 drawn from this range (else ``snr_b0`` for all).
    snr_b0_range: tuple[float, float] | None = None
    #: NumberOfAverages per b-value (σ_b = σ/√n); None: one average everywhere.
    dwi_averages: tuple[int, ...] | None = None


PRESETS = {
    "default": Preset(
        n_patients=37,
        gtv_volume_range_cc=(60.0, 1300.0),
        ct_spacing=(2.0, 2.0, 3.0),
        ct_box=((-200, 200), (-150, 150), (-150, 150)),
        t2_spacing=(1.5, 1.5, 4.0),
        mr_box=((-170, 170), (-140, 140), (-130, 130)),
        dwi_spacing=(1.5, 1.5, 6.0),
        pet_spacing=4.0,
        rtdose_spacing=3.0,
        bvalues=(0, 50, 100, 200, 400, 600, 800, 1000),
    ),
    "tiny": Preset(
        n_patients=4,
        gtv_volume_range_cc=(60.0, 300.0),
        ct_spacing=(3.0, 3.0, 4.0),
        ct_box=((-190, 190), (-140, 140), (-100, 100)),
        t2_spacing=(2.5, 2.5, 5.0),
        mr_box=((-170, 170), (-130, 130), (-90, 90)),
        dwi_spacing=(3.0, 3.0, 6.0),
        pet_spacing=5.0,
        rtdose_spacing=4.0,
        bvalues=(0, 50, 100, 400, 700, 1000),
    ),
    # A cohort nobody here chose the microstructure of: the tiny geometry, wider and off-centre
    # microstructure, another b-value set with per-b-value averages, SNR 30–60 (the DWI validation).
    "foreign": Preset(
        n_patients=10,
        gtv_volume_range_cc=(60.0, 300.0),
        ct_spacing=(3.0, 3.0, 4.0),
        ct_box=((-190, 190), (-140, 140), (-100, 100)),
        t2_spacing=(2.5, 2.5, 5.0),
        mr_box=((-170, 170), (-130, 130), (-90, 90)),
        dwi_spacing=(3.0, 3.0, 6.0),
        pet_spacing=5.0,
        rtdose_spacing=4.0,
        bvalues=(0, 100, 300, 600, 900, 1200, 1500),
        microstructure="foreign",
        snr_b0_range=(30.0, 60.0),
        dwi_averages=(1, 1, 2, 2, 3, 4, 4),
    ),
}
