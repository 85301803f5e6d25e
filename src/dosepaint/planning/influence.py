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
    grid_shape: tuple[int, ...]
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
        arrays = {
            "voxels": self.voxels,
            "grid_shape": np.asarray(self.grid_shape),
            "spot_beam": self.spot_beam,
            "spot_energy": self.spot_energy,
            "spot_range_mm": self.spot_range_mm,
            "scalars": np.asarray([self.alpha_x, self.beta_x]),
            "modality": np.asarray(self.modality),
            "meta": np.asarray(_json(self.meta)),
        }
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
                if (
                    name != "physical"
                    and m.nnz == ref.nnz
                    and np.array_equal(m.indptr, ref.indptr)
                    and np.array_equal(m.indices, ref.indices)
                ):
                    continue
                arrays[f"{name}_indices"] = m.indices.astype(np.int32, copy=False)
                arrays[f"{name}_indptr"] = m.indptr.astype(np.int64, copy=False)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path, *, matrices: bool = True) -> DoseInfluence:
        """Read a cached influence; ``matrices=False`` reads the geometry and spots only (the
        matrices are empty with the right shape: enough for a forward calculation).
        """
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
                    mats[name] = csr(z[f"{name}_data"], indices, indptr, tuple(int(v) for v in z[f"{name}_shape"]))
            a_x, b_x = z["scalars"]
            return cls(
                voxels=z["voxels"],
                grid_shape=tuple(int(v) for v in z["grid_shape"]),
                spot_beam=z["spot_beam"],
                spot_energy=z["spot_energy"],
                spot_range_mm=z["spot_range_mm"],
                modality=str(z["modality"]),
                alpha_x=float(a_x),
                beta_x=float(b_x),
                radiological_depth=z["radiological_depth"].astype(np.float64) if "radiological_depth" in z else None,
                target_rows=z["target_rows"] if "target_rows" in z else None,
                meta=json.loads(str(z["meta"])),
                **mats,
            )


def csr(data, indices, indptr, shape) -> sp.csr_array:
    """A CSR array on these arrays without copies: the index arrays are made int32 when they fit.

    SciPy gives ``indices`` and ``indptr`` one common dtype, so an int64 ``indptr`` (as cached) would
    upcast — copy — the int32 ``indices`` of every matrix (3 × 4 bytes per non-zero for the LEM
    matrices, which share one pattern); int32 arrays are taken as views, and matrices built on the same
    ``indices``/``indptr`` objects keep sharing them.

    Parameters
    ----------
    data, indices, indptr : ndarray
        CSR arrays.
    shape : (int, int)
        Matrix shape.

    Returns
    -------
    scipy.sparse.csr_array
        On the given arrays.
    """
    fits = max(int(indptr[-1]) if len(indptr) else 0, *shape) < np.iinfo(np.int32).max
    dt = np.int32 if fits else np.int64
    return sp.csr_array((data, np.asarray(indices, dt), np.asarray(indptr, dt)), shape=tuple(shape))


def row_block(m: sp.csr_array, a: int, b: int) -> sp.csr_array:
    """Rows ``a:b`` of a CSR array as a view of its data and indices (no copy).

    SciPy's slicing copies, and even a CSR array built on views copies them when they hold less than
    half their base (``_prune_array``): the arrays are set on an empty array of the shape.

    Parameters
    ----------
    m : scipy.sparse.csr_array
        The matrix.
    a, b : int
        First and past-the-last row.

    Returns
    -------
    scipy.sparse.csr_array
        (b − a, n_columns), sharing ``m``'s memory.
    """
    s, e = int(m.indptr[a]), int(m.indptr[b])
    blk = sp.csr_array((b - a, m.shape[1]), dtype=m.dtype)
    blk.indptr = (m.indptr[a : b + 1] - m.indptr[a]).astype(m.indices.dtype)
    blk.indices, blk.data = m.indices[s:e], m.data[s:e]
    return blk


def subset_shared(matrices, *, rows=None, cols=None, chunk: int = 1 << 23) -> list:
    """Rows and/or columns of CSR matrices; matrices with one sparsity pattern (the same ``indices`` array,
    as the LEM matrices of a cached influence) share one pattern in the result.

    SciPy's fancy indexing builds an int64 copy per matrix and per step (rows, then columns) and gives
    every result its own index arrays, about 3× the result at its peak (which decided the plan stage's
    peak memory); this selects the entries of a pattern once, in row chunks of about ``chunk`` entries,
    and fills preallocated results (peak: the results plus chunk temporaries).

    Parameters
    ----------
    matrices : sequence of scipy.sparse.csr_array or None
        Same shape; None passes through.
    rows, cols : ndarray of int, optional
        Increasing indices to keep (default all).
    chunk : int
        Entries per row chunk.

    Returns
    -------
    list
        The subsets, in the order of ``matrices``.
    """
    out = list(matrices)
    if rows is None and cols is None:
        return out
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(matrices):
        if m is not None:
            groups.setdefault(_pattern_key(m), []).append(i)
    for idx in groups.values():
        for i, sub in zip(idx, _subset_group([matrices[i] for i in idx], rows=rows, cols=cols, chunk=chunk)):
            out[i] = sub
    return out


def _pattern_key(m) -> tuple:
    """Identifies a sparsity pattern by the memory of its index arrays (shared arrays, same key)."""
    return (
        m.indices.__array_interface__["data"][0],
        m.indices.size,
        m.indptr.__array_interface__["data"][0],
        m.indptr.size,
        m.shape,
    )


def _subset_group(group, *, rows, cols, chunk):
    """:func:`subset_shared` for matrices of one pattern."""
    first = group[0]
    n_rows, n_cols = first.shape
    indices, indptr = first.indices, np.asarray(first.indptr, np.int64)
    rows = np.arange(n_rows) if rows is None else np.asarray(rows, np.int64)
    starts, lengths = indptr[rows], np.diff(indptr)[rows]
    remap = None
    if cols is not None:
        remap = np.full(n_cols, -1, np.int32)
        remap[np.asarray(cols, np.int64)] = np.arange(len(cols), dtype=np.int32)
    csum = np.cumsum(lengths)
    bounds = np.unique(
        np.r_[0, np.searchsorted(csum, np.arange(chunk, csum[-1] if csum.size else 0, chunk)), rows.size]
    )

    def entries(a, b):
        """Input entry positions and new column indices kept, and kept counts, of rows[a:b]."""
        local = np.zeros(b - a + 1, np.int64)
        np.cumsum(lengths[a:b], out=local[1:])
        take = np.arange(int(local[-1]), dtype=np.int64) + np.repeat(starts[a:b] - local[:-1], lengths[a:b])
        col = indices[take]
        if remap is None:
            return take, col, lengths[a:b]
        col = remap[col]
        keep = col >= 0
        c = np.zeros(keep.size + 1, np.int64)
        np.cumsum(keep, out=c[1:])
        return take[keep], col[keep], c[local[1:]] - c[local[:-1]]

    # With a column selection the kept count of each row is known only after its entries are
    # looked at: a first pass counts (chunk temporaries only), a second fills the preallocated
    # arrays; holding every chunk's selection between the passes would cost what this saves.
    counts = (
        lengths
        if remap is None
        else np.concatenate([entries(a, b)[2] for a, b in zip(bounds[:-1], bounds[1:])] or [np.zeros(0, np.int64)])
    )
    new_ptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(counts, out=new_ptr[1:])
    n_new = int(new_ptr[-1])
    new_cols = n_cols if cols is None else len(cols)
    dt = np.int32 if max(n_new, rows.size, new_cols) < np.iinfo(np.int32).max else np.int64
    new_idx = np.empty(n_new, dt)
    datas = [np.empty(n_new, m.data.dtype) for m in group]
    for a, b in zip(bounds[:-1], bounds[1:]):
        take, col, _ = entries(a, b)
        s, e = new_ptr[a], new_ptr[b]
        new_idx[s:e] = col
        for d, m in zip(datas, group):
            d[s:e] = m.data[take]
    ptr = new_ptr.astype(dt)
    return [csr(d, new_idx, ptr, (rows.size, new_cols)) for d in datas]


def column_max(m, *, chunk: int = 1 << 23) -> np.ndarray:
    """Largest entry of each column of a non-negative CSR matrix, in row blocks of about ``chunk`` entries
    (SciPy's ``max(axis=0)`` converts the whole matrix to CSC).

    Parameters
    ----------
    m : scipy.sparse.csr_array
        Non-negative.
    chunk : int
        Entries per block.

    Returns
    -------
    ndarray, (n_columns,)
        The maxima; 0 for empty columns.
    """
    m = sp.csr_array(m)
    peak = np.zeros(m.shape[1], np.float64)
    for blk in _row_blocks(m, chunk):
        np.maximum(peak, blk.max(axis=0).toarray().ravel(), out=peak)
    return peak


def column_norms(m, *, chunk: int = 1 << 20) -> np.ndarray:
    """Euclidean norm of each column of a CSR matrix, in blocks of about ``chunk`` entries (float64).

    Parameters
    ----------
    m : scipy.sparse.csr_array
        The matrix.
    chunk : int
        Entries per block (the squares are a temporary of this size; 1 M entries: 28 ms for 15 M,
        8 M: 190 ms, the larger temporary's page faults).

    Returns
    -------
    ndarray, (n_columns,)
        ‖m[:, j]‖₂; 0 for empty columns.
    """
    m = sp.csr_array(m)
    sq = np.zeros(m.shape[1], np.float64)
    for blk in _row_blocks(m, chunk):
        blk.data = blk.data * blk.data  # squares of this block only (row_block shares the arrays)
        sq += blk.T @ np.ones(blk.shape[0], blk.data.dtype)  # column sums by SciPy's transposed product
    return np.sqrt(sq)


def _row_blocks(m: sp.csr_array, chunk: int):
    """The non-empty row blocks (views by :func:`row_block`) of about ``chunk`` entries each."""
    cuts = np.unique(np.r_[0, np.searchsorted(m.indptr, np.arange(chunk, m.nnz, chunk)), m.shape[0]])
    for a, b in zip(cuts[:-1], cuts[1:]):
        if m.indptr[b] > m.indptr[a]:
            yield row_block(m, a, b)


def _json(obj) -> str:
    import json

    return json.dumps(obj, default=float)
