"""Dose-influence matrices restricted to the voxels that matter, and their per-patient cache.

Rows are voxels (a subset of the dose grid, flat C-order indices of the ``(z, y, x)`` array),
columns are spots (pencil beams).  Entries are per unit spot weight and per fraction:
physical dose (Gy), α·dose (Gy⁻¹·Gy = dimensionless effect per weight), √β·dose
(Gy⁻¹·Gy) and LET·dose (keV/µm·Gy).  Matrices are CSR float32 (the engines compute in float32);
products are accumulated in float64 by the callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

_MATRICES = ("physical", "alpha_dose", "sqrt_beta_dose", "let_dose")


@dataclass
class DoseInfluence:
    """Dose influence of each spot on a voxel subset.

    Attributes
    ----------
    voxels : ndarray of int64, shape (n_vox,)
        Flat C-order indices into the dose-grid array ``(z, y, x)``, increasing.
    grid_shape : tuple of int
        Shape ``(nz, ny, nx)`` of the dose grid.
    physical : scipy.sparse.csr_array, shape (n_vox, n_spot)
        Physical dose per unit weight per fraction (Gy).
    alpha_dose, sqrt_beta_dose : csr_array or None
        α_ij·d_ij and √β_ij·d_ij (LEM, carbon); None for engines without a biological model.
    let_dose : csr_array or None
        LET_ij·d_ij (keV/µm·Gy); None when the engine has no LET.
    spot_beam : ndarray of int, shape (n_spot,)
        Beam index of each spot.
    spot_energy : ndarray of float, shape (n_spot,)
        Spot energy (MeV/u).
    spot_range_mm : ndarray of float, shape (n_spot,)
        Range in water (mm) of each spot's energy (Bragg-peak depth), for LET approximations.
    radiological_depth : ndarray of float, shape (n_beam, n_vox) or None
        Water-equivalent depth (mm) of each voxel along each beam.
    modality : str
        ``"carbon"`` or ``"protons"`` (pyRadPlan names).
    alpha_x, beta_x : float
        Reference photon LQ parameters of the biological base data (Gy⁻¹, Gy⁻²).
    target_rows : ndarray of int or None
        Rows of the voxels of the target the spots were placed on (to rebuild the same spots).
    meta : dict
        Engine settings and timings (JSON-able).
    """

    voxels: np.ndarray
    grid_shape: tuple[int, int, int]
    physical: sp.csr_array
    spot_beam: np.ndarray
    spot_energy: np.ndarray
    spot_range_mm: np.ndarray
    modality: str
    alpha_x: float
    beta_x: float
    alpha_dose: sp.csr_array | None = None
    sqrt_beta_dose: sp.csr_array | None = None
    let_dose: sp.csr_array | None = None
    radiological_depth: np.ndarray | None = None
    target_rows: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return int(self.voxels.size)

    @property
    def n_spots(self) -> int:
        return int(self.physical.shape[1])

    def rows_of(self, mask: np.ndarray) -> np.ndarray:
        """Row indices of the voxels of a dose-grid mask ``(z, y, x)``; raises if some are not rows."""
        flat = np.flatnonzero(np.asarray(mask, bool).ravel())
        pos = np.searchsorted(self.voxels, flat)
        ok = (pos < self.voxels.size) & (self.voxels[np.minimum(pos, self.voxels.size - 1)] == flat)
        if not np.all(ok):
            raise ValueError(f"{int((~ok).sum())} mask voxels have no dose-influence row")
        return pos

    def scatter(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Row values placed on the full dose grid ``(z, y, x)``; ``fill`` elsewhere."""
        out = np.full(int(np.prod(self.grid_shape)), fill, dtype=np.float64)
        out[self.voxels] = values
        return out.reshape(self.grid_shape)

    def save(self, path) -> None:
        """Write an uncompressed ``.npz`` (fast to reload; the matrices dominate the size)."""
        arrays = {"voxels": self.voxels, "grid_shape": np.asarray(self.grid_shape),
                  "spot_beam": self.spot_beam, "spot_energy": self.spot_energy,
                  "spot_range_mm": self.spot_range_mm,
                  "scalars": np.asarray([self.alpha_x, self.beta_x]),
                  "modality": np.asarray(self.modality), "meta": np.asarray(_json(self.meta))}
        if self.target_rows is not None:
            arrays["target_rows"] = self.target_rows
        if self.radiological_depth is not None:
            arrays["radiological_depth"] = self.radiological_depth.astype(np.float32)
        ref = sp.csr_array(self.physical)
        for name in _MATRICES:
            m = getattr(self, name)
            if m is not None:
                m = sp.csr_array(m)
                arrays[f"{name}_data"] = m.data.astype(np.float32, copy=False)
                arrays[f"{name}_shape"] = np.asarray(m.shape)
                # α-dose, √β-dose (and usually LET·dose) share the physical dose's sparsity
                # pattern: store it once.
                if name != "physical" and m.nnz == ref.nnz and np.array_equal(m.indptr, ref.indptr) \
                        and np.array_equal(m.indices, ref.indices):
                    continue
                arrays[f"{name}_indices"] = m.indices.astype(np.int32, copy=False)
                arrays[f"{name}_indptr"] = m.indptr.astype(np.int64, copy=False)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path, *, matrices: bool = True) -> "DoseInfluence":
        """Read a cached influence; ``matrices=False`` reads the geometry and spots only (the
        matrices are empty with the right shape: enough for a forward calculation)."""
        import json

        with np.load(path, allow_pickle=False) as z:
            mats = {}
            if not matrices:
                mats["physical"] = sp.csr_array(tuple(int(v) for v in z["physical_shape"]), dtype=np.float32)
            for name in _MATRICES if matrices else ():
                if f"{name}_data" in z:
                    own = f"{name}_indices" in z
                    indices = z[f"{name}_indices"] if own else mats["physical"].indices
                    indptr = z[f"{name}_indptr"] if own else mats["physical"].indptr
                    mats[name] = sp.csr_array((z[f"{name}_data"], indices, indptr),
                                              shape=tuple(z[f"{name}_shape"]))
            a_x, b_x = z["scalars"]
            return cls(voxels=z["voxels"], grid_shape=tuple(int(v) for v in z["grid_shape"]),
                       spot_beam=z["spot_beam"], spot_energy=z["spot_energy"],
                       spot_range_mm=z["spot_range_mm"], modality=str(z["modality"]),
                       alpha_x=float(a_x), beta_x=float(b_x),
                       radiological_depth=z["radiological_depth"].astype(np.float64)
                       if "radiological_depth" in z else None,
                       target_rows=z["target_rows"] if "target_rows" in z else None,
                       meta=json.loads(str(z["meta"])), **mats)


def _json(obj) -> str:
    import json

    return json.dumps(obj, default=float)
