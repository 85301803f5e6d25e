"""Analytic sacral-chordoma phantom in patient coordinates (LPS, mm).

Every tissue label and microstructure field is a function of LPS position,
so any modality grid (CT, MR in its own frame, DWI, PET, dose grid) samples
the same anatomy.  Structures that are defined by margins (CTV_HD = GTV + 5 mm,
CTV_LD = GTV + 15 mm, SKIN) are computed with a Euclidean distance transform
on the grid they are needed on.

Coordinates: x to the patient's left, y posterior, z superior (DICOM LPS).
The sacrum is posterior (y > 0); the rectum and bowel lie anterior to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import Grid
from ..microstructure import cell_density
from ..structures import expand, shell

# Tissue codes of the label map.
AIR, FAT, MUSCLE, BONE_CORTEX, BONE_MARROW, GTV, RECTUM, SIGMA, BOWEL, NERVE, BOWEL_GAS, RECTAL_GAS = range(12)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


@dataclass
class RandomField:
    """Smooth, zero-mean, unit-variance random field: a sum of random plane waves.

    Defined everywhere in space, so it can be evaluated on any grid.
    """

    k: np.ndarray  # (m, 3) wave vectors, rad/mm
    phase: np.ndarray  # (m,)

    @classmethod
    def draw(cls, rng: np.random.Generator, *, length_mm: float, n_modes: int = 48) -> RandomField:
        directions = rng.normal(size=(n_modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = length_mm * rng.uniform(0.6, 1.6, n_modes)
        return cls(directions * (2 * np.pi / wavelengths[:, None]), rng.uniform(0, 2 * np.pi, n_modes))

    def __call__(self, x, y, z) -> np.ndarray:
        out = np.zeros(np.shape(x))
        for kv, ph in zip(self.k, self.phase):
            out += np.cos(kv[0] * x + kv[1] * y + kv[2] * z + ph)
        return out * np.sqrt(2.0 / len(self.phase))


@dataclass
class Anatomy:
    """Parameters of one synthetic patient (all lengths in mm)."""

    body_axes: tuple[float, float]
    body_center_y: float
    fat_thickness: float
    sacrum_y0: float
    sacrum_curv: float
    sacrum_thickness: float
    gtv_center: np.ndarray
    gtv_r0: float
    gtv_axes: np.ndarray
    gtv_lobes: np.ndarray  # (k, 3) unit vectors
    gtv_lobe_amp: np.ndarray  # (k,)
    gtv_lobe_width: float
    rectum_radius: float
    fields: dict = field(default_factory=dict)
    pet: dict = field(default_factory=dict)
    #: A patient's microstructure centre (``ln_radius``, ``vf``, ``d_in``) for the "foreign" presets;
    #: None: the chordoma-like mapping.
    micro_centre: dict | None = None

    # -- construction -------------------------------------------------------
    @classmethod
    def draw(cls, rng: np.random.Generator, *, gtv_volume_cc: float) -> Anatomy:
        n_lobes = int(rng.integers(3, 6))
        lobes = rng.normal(size=(n_lobes, 3))
        lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
        amp = rng.uniform(0.12, 0.35, n_lobes)
        width = float(rng.uniform(0.35, 0.55))
        axes = np.array([rng.uniform(0.85, 1.05), rng.uniform(0.8, 1.0), 0.0])
        axes[2] = 1.0 / (axes[0] * axes[1])  # volume-preserving, elongated cranio-caudally
        a = cls(
            body_axes=(float(rng.uniform(150, 175)), float(rng.uniform(105, 125))),
            body_center_y=float(rng.uniform(0, 10)),
            fat_thickness=float(rng.uniform(12, 30)),
            sacrum_y0=float(rng.uniform(70, 80)),
            sacrum_curv=float(rng.uniform(0.0025, 0.0045)),
            sacrum_thickness=float(rng.uniform(24, 32)),
            gtv_center=np.zeros(3),
            gtv_r0=1.0,
            gtv_axes=axes,
            gtv_lobes=lobes,
            gtv_lobe_amp=amp,
            gtv_lobe_width=width,
            rectum_radius=float(rng.uniform(13, 17)),
        )
        # Radius scale for the requested volume: V = 4π/3 · mean(r(u)³) (star-shaped body).
        u = _fibonacci_sphere(4000)
        a.gtv_r0 = float((gtv_volume_cc * 1000.0 / (4 / 3 * np.pi * np.mean(a._radial(u) ** 3))) ** (1 / 3))
        z0 = float(rng.uniform(-45, 0))
        ys = a.sacrum_center_y(z0)
        a.gtv_center = np.array([rng.normal(0, 6), ys - 0.5 * a.sacrum_thickness - 0.35 * a.gtv_r0 * axes[1], z0])
        a.fields = {
            name: RandomField.draw(rng, length_mm=length)
            for name, length in (
                ("radius", 30.0),
                ("myxoid", 40.0),
                ("vf", 20.0),
                ("d_in", 30.0),
                ("pet", 35.0),
                ("pet_het", 15.0),
                ("bias", 250.0),
            )
        }
        low_contrast = rng.random() < 0.2
        a.pet = {
            "suv_active": float(rng.uniform(2.2, 2.8) if low_contrast else rng.uniform(3.5, 7.0)),
            "active_quantile": float(rng.uniform(0.3, 0.7)),
            "suv_gtv_rest": 1.5,
        }
        return a

    # -- geometry -------------------------------------------------------------
    def _radial(self, u: np.ndarray) -> np.ndarray:
        """r(u)/r0 for unit vectors u (…, 3)."""
        cos = np.tensordot(u, self.gtv_lobes.T, axes=1)
        return 1.0 + np.sum(self.gtv_lobe_amp * np.exp((cos - 1.0) / self.gtv_lobe_width**2), axis=-1)

    def sacrum_center_y(self, z):
        return self.sacrum_y0 - self.sacrum_curv * (np.asarray(z, float) - 40.0) ** 2

    def gtv_level(self, x, y, z) -> np.ndarray:
        """< 1 inside the GTV: |q| / r(q̂) with q the scaled offset from the centre."""
        q = np.stack(
            [
                (x - self.gtv_center[0]) / self.gtv_axes[0],
                (y - self.gtv_center[1]) / self.gtv_axes[1],
                (z - self.gtv_center[2]) / self.gtv_axes[2],
            ],
            axis=-1,
        )
        norm = np.linalg.norm(q, axis=-1)
        u = q / np.maximum(norm, 1e-9)[..., None]
        return norm / (self.gtv_r0 * self._radial(u))

    def in_gtv(self, x, y, z) -> np.ndarray:
        """``gtv_level < 1``, evaluated only inside the GTV's bounding box (r(u)/r0 ≤ 1 + Σ lobe
        amplitudes; the level is the generator's main cost on a whole grid).
        """
        x, y, z = (np.asarray(v, float) for v in (x, y, z))
        reach = self.gtv_r0 * (1.0 + float(np.sum(self.gtv_lobe_amp))) * np.asarray(self.gtv_axes) + 1e-6
        near = (
            (np.abs(x - self.gtv_center[0]) <= reach[0])
            & (np.abs(y - self.gtv_center[1]) <= reach[1])
            & (np.abs(z - self.gtv_center[2]) <= reach[2])
        )
        out = np.zeros(x.shape, bool)
        out[near] = self.gtv_level(x[near], y[near], z[near]) < 1.0
        return out

    def body_level(self, x, y, z) -> np.ndarray:
        a, b = self.body_axes
        a_z = a * (1.0 + 0.06 * np.sin(np.asarray(z) / 60.0))
        return np.sqrt((x / a_z) ** 2 + ((y - self.body_center_y) / b) ** 2)

    def labels(self, x, y, z) -> np.ndarray:
        """Tissue label at LPS points (arrays of any, equal shape)."""
        x, y, z = (np.asarray(v, float) for v in (x, y, z))
        lab = np.full(x.shape, AIR, dtype=np.uint8)
        body = self.body_level(x, y, z)
        inside = body < 1.0
        depth = (1.0 - body) * min(self.body_axes)
        lab[inside] = MUSCLE
        lab[inside & (depth < self.fat_thickness)] = FAT
        # Pelvic fat (mesorectum / presacral), anterior to the sacrum.
        lab[
            inside
            & (depth >= self.fat_thickness)
            & (np.abs(x) < 45)
            & (y < self.sacrum_center_y(z) - 20)
            & (y > self.sacrum_center_y(z) - 70)
            & (z < 40)
        ] = FAT
        # Sacrum: curved slab tapering caudally; cortical rim 3 mm.
        ys = self.sacrum_center_y(z)
        half_w = np.clip(20.0 + 0.35 * (z + 90.0), 12.0, 58.0)
        dy = np.abs(y - ys)
        in_sac = inside & (z > -95) & (z < 70) & (dy < self.sacrum_thickness / 2) & (np.abs(x) < half_w)
        rim = np.minimum(self.sacrum_thickness / 2 - dy, half_w - np.abs(x))
        lab[in_sac] = BONE_MARROW
        lab[in_sac & (rim < 3.0)] = BONE_CORTEX
        # Iliac wings and femoral heads: registration landmarks.
        for sx in (-1.0, 1.0):
            ili = (((x - sx * 100) / 14) ** 2 + ((y - 35) / 50) ** 2 + ((z - 45) / 55) ** 2) < 1
            lab[inside & ili] = BONE_CORTEX
            ili_in = (((x - sx * 100) / 9) ** 2 + ((y - 35) / 45) ** 2 + ((z - 45) / 50) ** 2) < 1
            lab[inside & ili_in] = BONE_MARROW
            fem = ((x - sx * 92) ** 2 + (y + 5) ** 2 + (z + 95) ** 2) < 24**2
            lab[inside & fem] = BONE_CORTEX
            fem_in = ((x - sx * 92) ** 2 + (y + 5) ** 2 + (z + 95) ** 2) < 20**2
            lab[inside & fem_in] = BONE_MARROW
        # Bowel bag: anterior-superior abdomen.
        bowel = inside & (depth > self.fat_thickness + 5) & (y < -15) & (z > 15)
        lab[bowel] = BOWEL
        gas = self.fields["pet_het"](x[bowel], y[bowel], z[bowel]) > 1.6
        lab[bowel] = np.where(gas, BOWEL_GAS, BOWEL)
        # Sigmoid: a tube curving from the rectum to the left and up.
        t = np.clip((z - 20.0) / 60.0, 0, 1)
        yr = self._rectum_y(z)
        sig_c = np.stack([40.0 * t, yr - 10 * t], axis=0)
        sig = inside & (z > 20) & (z < 85) & ((x - sig_c[0]) ** 2 + (y - sig_c[1]) ** 2 < 12.0**2)
        lab[sig] = SIGMA
        # Rectum: tube anterior to the tumour.
        rect = inside & (z < 25) & (z > -125) & (x**2 + (y - yr) ** 2 < self.rectum_radius**2)
        lab[rect] = RECTUM
        lab[rect & (x**2 + (y - yr) ** 2 < (0.4 * self.rectum_radius) ** 2)] = RECTAL_GAS
        # Sacral nerve roots leaving the anterior foramina.
        lab[inside & self._nerves(x, y, z)] = NERVE
        # GTV last: it destroys bone and displaces everything else.
        lab[inside & self.in_gtv(x, y, z)] = GTV
        return lab

    def _gtv_anterior_extent(self, z):
        """Distance (mm) from the GTV centre to its anterior surface at height z (approximate)."""
        ry = self.gtv_r0 * self.gtv_axes[1] * (1 + self.gtv_lobe_amp.max())
        rz = self.gtv_r0 * self.gtv_axes[2] * (1 + self.gtv_lobe_amp.max())
        s = np.clip(1 - ((np.asarray(z, float) - self.gtv_center[2]) / rz) ** 2, 0, 1)
        return ry * np.sqrt(s)

    def _rectum_y(self, z):
        base = self.sacrum_center_y(z) - self.sacrum_thickness / 2 - self.rectum_radius - 25
        pushed = self.gtv_center[1] - self._gtv_anterior_extent(z) - self.rectum_radius - 6
        return np.minimum(base, pushed)

    def _nerves(self, x, y, z) -> np.ndarray:
        out = np.zeros(np.shape(x), bool)
        for z0 in (35.0, 12.0, -10.0):
            y0 = float(self.sacrum_center_y(z0)) - self.sacrum_thickness / 2
            for sx in (-1.0, 1.0):
                p0 = np.array([sx * 22.0, y0, z0])
                d = np.array([sx * 0.55, -0.45, -0.7])
                d /= np.linalg.norm(d)
                # Only points within the segment's bounding box (+ the 4 mm radius) can be in it.
                lo = np.minimum(p0, p0 + 60.0 * d) - 4.0
                hi = np.maximum(p0, p0 + 60.0 * d) + 4.0
                near = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
                rel = np.stack([x[near] - p0[0], y[near] - p0[1], z[near] - p0[2]], axis=-1)
                t = np.clip(rel @ d, 0, 60.0)
                dist = np.linalg.norm(rel - t[..., None] * d, axis=-1)
                out[near] |= dist < 4.0
        return out

    # -- microstructure ----------------------------------------------------------
    def microstructure(self, x, y, z) -> dict[str, np.ndarray]:
        """Tumour microstructure truth at LPS points.

        Returns radius (mm), vf (1), d_in and d_free (mm²/s), myxoid fraction (1)
        and cell density ρ (cells/mm³); ρ is zero outside the GTV.
        """
        f = {k: self.fields[k](x, y, z) for k in ("radius", "myxoid", "vf", "d_in")}
        myx = 1.0 / (1.0 + np.exp(-3.0 * (f["myxoid"] - 0.4)))
        if self.micro_centre is None:
            radius = 8.5e-3 + 3.0e-3 * np.tanh(f["radius"])
            vf = (1 - myx) * (0.36 + 0.14 * np.tanh(f["vf"])) + myx * 0.08
            d_in = 1.1e-3 + 0.2e-3 * np.tanh(f["d_in"])
            d_free = 2.2e-3 + 0.7e-3 * myx
        else:
            c = self.micro_centre
            radius = np.clip(np.exp(c["ln_radius"] + 0.2 * np.tanh(f["radius"])), 4e-3, 12e-3)
            vf = np.clip((1 - myx) * (c["vf"] + 0.08 * np.tanh(f["vf"])) + myx * 0.05, 0.05, 0.6)
            d_in = np.clip(c["d_in"] + 0.2e-3 * np.tanh(f["d_in"]), 1.0e-3, 2.0e-3)
            d_free = 2.0e-3 + 1.0e-3 * myx
        rho = cell_density(radius=radius, vf=vf)
        in_gtv = self.in_gtv(x, y, z)
        return {
            "radius": radius,
            "vf": vf,
            "d_in": d_in,
            "d_free": d_free,
            "myxoid": myx,
            "cell_density": np.where(in_gtv, rho, 0.0),
        }


def structure_masks(anatomy: Anatomy, grid: Grid, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Canonical structure masks on ``grid`` (CTVs by Euclidean margins, clipped to the body)."""
    if labels is None:
        labels = anatomy.labels(*grid.world())
    body = labels != AIR
    gtv = labels == GTV
    return {
        "GTV": gtv,
        "CTV_HD": expand(gtv, grid, margin_mm=5.0) & body,
        "CTV_LD": expand(gtv, grid, margin_mm=15.0) & body,
        "BODY": body,
        "SKIN": shell(body, grid, thickness_mm=3.0),
        "RECTUM": np.isin(labels, (RECTUM, RECTAL_GAS)),
        "SIGMA": labels == SIGMA,
        "BOWEL": np.isin(labels, (BOWEL, BOWEL_GAS)),
        "NERVES": labels == NERVE,
    }
