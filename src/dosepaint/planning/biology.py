"""RBE-weighted dose and LETd on dose-influence matrices (docs/method.md §1–2).

Carbon ions: pyRadPlan's LEM base data give per spot α·d and √β·d, so the per-fraction effect
of spot weights w is ``e = A w + (B w)²`` and the RBE-weighted dose is the LQ projection
``D_RBE = (√(α_x² + 4 β_x e) − α_x) / (2 β_x)`` (Gy(RBE)).  Protons: a constant RBE
(1.1 by default) times the physical dose.

LETd: protons from pyRadPlan's LET·dose matrix.  Carbon base data carry no LET, so we
approximate the primary-ion LET of each (voxel, spot) pair from the residual range
``r = R_spot − z_wet`` with the Bragg–Kleeman range–energy relation ``R = a ε^p`` (ε in MeV/u)
fitted to the spots' own (energy, Bragg-peak depth) pairs: LET(r) = A·dε/dr (MeV/mm = keV/µm,
A the mass number, ε(r) = (r/a)^{1/p}), dose-averaged over the voxel's water-equivalent
thickness and Gaussian range straggling (:func:`primary_let`).  Beyond a spot's range the primary LET is
taken as 0 (only fragments reach there), which dilutes LETd in the distal fall-off.  The same
approximation on protons is checked against pyRadPlan's own LETd (tests/test_planning.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from .influence import row_block, subset_shared

MASS_NUMBER = {"protons": 1, "carbon": 12, "helium": 4, "oxygen": 16}


def rbe_dose_from_effect(effect, *, alpha_x: float, beta_x: float) -> np.ndarray:
    """LQ projection of a per-fraction effect onto photon-equivalent dose (docs/method.md §1).

    D_RBE = (√(α_x² + 4 β_x ε) − α_x) / (2 β_x), ε clipped at 0.

    Parameters
    ----------
    effect : array_like
        ε per voxel of one fraction (dimensionless).
    alpha_x, beta_x : float
        Of the reference photon radiation, Gy⁻¹ and Gy⁻² (LEM-I: 0.1, 0.05).

    Returns
    -------
    ndarray
        Gy(RBE) per fraction, float64.

    Examples
    --------
    >>> round(float(rbe_dose_from_effect(0.4, alpha_x=0.1, beta_x=0.05)), 6)
    2.0
    """
    e = np.maximum(np.asarray(effect, dtype=np.float64), 0.0)
    return (np.sqrt(alpha_x**2 + 4.0 * beta_x * e) - alpha_x) / (2.0 * beta_x)


class RowBlocks:
    """A CSR matrix cut into row blocks of about equal non-zeros whose products run in threads.

    SciPy's sparse matrix–vector products are single-threaded but release the GIL, so on
    ``threads`` cores the blocks' products run side by side.  The blocks are views of the
    matrix's arrays (no copy).
    """

    _pool = None

    def __init__(self, m, threads: int = 1):
        m = sp.csr_array(m)
        self.shape, self.nnz = m.shape, m.nnz
        n = m.shape[0]
        k = max(1, min(int(threads), n))
        cuts: np.ndarray | list = np.searchsorted(m.indptr, np.linspace(0, m.nnz, k + 1)[1:-1]) if k > 1 else []
        bounds = np.unique(np.clip(np.r_[0, cuts, n], 0, n)).astype(np.int64)
        self.blocks = []
        for a, b in itertools.pairwise(bounds):
            self.blocks.append((a, b, row_block(m, a, b)))
        if len(self.blocks) > 1 and RowBlocks._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            RowBlocks._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="spmv")

    def _map(self, f):
        if len(self.blocks) == 1:
            return [f(self.blocks[0])]
        return list(RowBlocks._pool.map(f, self.blocks))

    def __matmul__(self, x):
        """``m @ x`` (length n_rows)."""
        return np.concatenate(self._map(lambda blk: blk[2] @ x))

    def rmatvec(self, y):
        """``m.T @ y`` (length n_cols)."""
        parts = self._map(lambda blk: blk[2].T @ y[blk[0] : blk[1]])
        out = parts[0]
        for q in parts[1:]:
            out = out + q
        return out


class RbeModel:
    """Per-fraction RBE-weighted dose of spot weights, with its Jacobian-vector products.

    Parameters
    ----------
    physical, alpha_dose, sqrt_beta_dose : sparse (n_vox, n_spot)
        Rows of a :class:`~dosepaint.planning.influence.DoseInfluence` (restricted as wanted).
    alpha_x, beta_x : float
        Reference LQ parameters (Gy⁻¹, Gy⁻²) of the biological base data.
    constant_rbe : float or None
        If given (protons), D_RBE = constant_rbe · physical dose and α/√β matrices are ignored.
    threads : int
        Threads for the matrix products (:class:`RowBlocks`).
    """

    def __init__(
        self,
        *,
        physical,
        alpha_dose=None,
        sqrt_beta_dose=None,
        alpha_x=0.1,
        beta_x=0.05,
        constant_rbe: float | None = None,
        threads: int = 1,
    ):
        self.constant_rbe = constant_rbe
        if constant_rbe is None and (alpha_dose is None or sqrt_beta_dose is None):
            raise ValueError("a variable-RBE model needs α-dose and √β-dose matrices")
        self.threads = int(threads)
        self.P = sp.csr_array(physical)
        self.A = None if constant_rbe is not None else sp.csr_array(alpha_dose)
        self.B = None if constant_rbe is not None else sp.csr_array(sqrt_beta_dose)
        self._ops = {
            k: RowBlocks(m, self.threads) for k, m in (("P", self.P), ("A", self.A), ("B", self.B)) if m is not None
        }
        self.alpha_x, self.beta_x = float(alpha_x), float(beta_x)

    def subset(self, *, rows=None, cols=None) -> RbeModel:
        """The same model on some voxels (rows) and/or spots (columns)."""
        if self.constant_rbe is not None:
            (p,) = subset_shared([self.P], rows=rows, cols=cols)
            return RbeModel(physical=p, constant_rbe=self.constant_rbe, threads=self.threads)
        p, a, b = subset_shared([self.P, self.A, self.B], rows=rows, cols=cols)
        return RbeModel(
            physical=p, alpha_dose=a, sqrt_beta_dose=b, alpha_x=self.alpha_x, beta_x=self.beta_x, threads=self.threads
        )

    def operators(self) -> list:
        """The row-blocked products one evaluation runs (forward and transposed): the physical dose's for a
        constant RBE, the α-dose's and √β-dose's for LEM (benchmarks time them as the floor).
        """
        return [self._ops["P"]] if self.constant_rbe is not None else [self._ops["A"], self._ops["B"]]

    def dose(self, w: np.ndarray) -> tuple[np.ndarray, object]:
        """D_RBE per fraction (float64, Gy(RBE)) and a context for :meth:`vjp`."""
        w32 = np.asarray(w, np.float32)
        op = self._ops
        if self.constant_rbe is not None:
            return self.constant_rbe * (op["P"] @ w32).astype(np.float64), None
        a = (op["A"] @ w32).astype(np.float64)
        b = (op["B"] @ w32).astype(np.float64)
        e = np.maximum(a + b * b, 0.0)
        root = np.sqrt(self.alpha_x**2 + 4.0 * self.beta_x * e)
        return (root - self.alpha_x) / (2.0 * self.beta_x), (b, root)

    def vjp(self, g: np.ndarray, ctx) -> np.ndarray:
        """Gradient w.r.t. spot weights of Σ_i g_i D_RBE,i (g in objective units per Gy(RBE))."""
        if self.constant_rbe is None:
            b, root = ctx
            de = g / root  # ∂D/∂e = 1/√(α_x² + 4β_x e)
            v = self._ops["A"].rmatvec(de.astype(np.float32)).astype(np.float64)
            v += self._ops["B"].rmatvec((2.0 * b * de).astype(np.float32)).astype(np.float64)
            return v
        return self.constant_rbe * self._ops["P"].rmatvec(np.asarray(g, np.float32)).astype(np.float64)


def fit_bragg_kleeman(energy_mev_u, range_mm) -> tuple[float, float]:
    """Fit the Bragg–Kleeman rule R = a ε^p by least squares in log–log.

    Parameters
    ----------
    energy_mev_u : array_like
        Kinetic energy per nucleon ε, MeV/u.
    range_mm : array_like
        CSDA range in water, mm.

    Returns
    -------
    (float, float)
        a (mm (MeV/u)^−p) and p.

    Examples
    --------
    >>> a, p = fit_bragg_kleeman([100.0, 200.0], [77.0, 77.0 * 2**1.75])
    >>> round(a * 100.0**1.75, 6), round(p, 6)
    (77.0, 1.75)
    """
    e = np.asarray(energy_mev_u, float)
    r = np.asarray(range_mm, float)
    ok = (e > 0) & (r > 0)
    if np.unique(e[ok]).size < 2:
        raise ValueError("at least two distinct spot energies are needed to fit the range–energy relation")
    p, ln_a = np.polyfit(np.log(e[ok]), np.log(r[ok]), 1)
    return float(np.exp(ln_a)), float(p)


def _energy_at_residual_range(r, a: float, p: float) -> np.ndarray:
    return (np.maximum(r, 0.0) / a) ** (1.0 / p)


# Quadrature over one voxel (uniform, 5 points) ⊗ range straggling (Gauss–Hermite, 3 points).
_U = (np.arange(5) + 0.5) / 5 - 0.5
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(3)
_GH_W = _GH_W / _GH_W.sum()


def primary_let(
    residual_range_mm, *, a: float, p: float, mass_number: int, voxel_mm: float, straggling=0.0
) -> np.ndarray:
    """Dose-averaged primary-ion LET at residual ranges, from the Bragg–Kleeman rule.

    LET(r) = A·dε/dr = A·ε(r)^{1−p}/(a p). Dose-averaged (ΣL²/ΣL) over the voxel's water-equivalent
    thickness and over Gaussian range straggling of SD ``straggling`` (mm, scalar or per element); range
    straggling is ~1.2 % of the range for protons and scales with 1/√A for heavier ions (Bortfeld 1997).

    Parameters
    ----------
    residual_range_mm : array_like
        Residual range r, mm water.
    a, p : float
        Bragg–Kleeman coefficients (:func:`fit_bragg_kleeman`).
    mass_number : int
        A of the ion.
    voxel_mm : float
        Water-equivalent thickness averaged over, mm.
    straggling : float or array_like
        SD of the range, mm.

    Returns
    -------
    ndarray
        keV/µm, the shape of ``residual_range_mm``; 0 beyond the range.
    """
    r = np.asarray(residual_range_mm, float)[..., None, None]
    sig = np.asarray(straggling, float)
    sig = sig[..., None, None] if sig.ndim else sig
    rr = r + voxel_mm * _U[:, None] + sig * _GH_X[None, :]
    e = _energy_at_residual_range(rr, a, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        let = np.where(rr > 0, mass_number * e ** (1.0 - p) / (a * p), 0.0)
    # Cap the r→0 singularity at the LET of the last 0.1 mm of the track.
    cap = mass_number * _energy_at_residual_range(0.1, a, p) ** (1.0 - p) / (a * p)
    let = np.minimum(let, cap)
    wts = _GH_W[None, :]
    num = np.sum(wts * let * let, axis=(-2, -1))
    den = np.sum(wts * let, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


def residual_range_let_dose(
    influence, *, voxel_mm: float, straggling_fraction: float = 0.012, rows=None, chunk: int = 1_000_000
) -> sp.csr_array:
    """LET·dose matrix from the residual-range approximation (carbon LETd; docs/method.md §1).

    Parameters
    ----------
    influence : DoseInfluence
        Needs ``radiological_depth`` (n_beam, n_vox), ``spot_range_mm``, ``spot_energy``.
    voxel_mm : float
        Voxel size, mm.
    straggling_fraction : float
        Range straggling SD as a fraction of the range (protons; scaled by 1/√A).
    rows : array_like, optional
        Rows to compute (default all).
    chunk : int
        Non-zeros per block.

    Returns
    -------
    scipy.sparse.csr_array, (n_rows, n_spots)
        keV/µm · Gy per unit weight; pairs whose depth is unknown get LET 0.
    """
    if influence.radiological_depth is None:
        raise ValueError("the dose influence has no radiological depths")
    a, p = fit_bragg_kleeman(influence.spot_energy, influence.spot_range_mm)
    m_num = MASS_NUMBER[influence.modality]
    P = sp.csr_array(influence.physical)
    depth = influence.radiological_depth
    if rows is not None:
        P = sp.csr_array(P[rows])
        depth = depth[:, rows]
    row_of = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
    out = np.empty(P.nnz, np.float32)
    for s in range(0, P.nnz, chunk):
        cols = P.indices[s : s + chunk]
        z = depth[influence.spot_beam[cols], row_of[s : s + chunk]]
        r = influence.spot_range_mm[cols] - z
        rng = influence.spot_range_mm[cols]
        let = primary_let(
            r, a=a, p=p, mass_number=m_num, voxel_mm=voxel_mm, straggling=straggling_fraction / np.sqrt(m_num) * rng
        )
        let[~np.isfinite(z)] = 0.0
        out[s : s + chunk] = let * P.data[s : s + chunk]
    return sp.csr_array((out, P.indices.copy(), P.indptr.copy()), shape=P.shape)


def letd(let_dose: sp.csr_array, physical: sp.csr_array, weights) -> np.ndarray:
    """Dose-averaged LET per row, (LD·w)/(D·w).

    Parameters
    ----------
    let_dose : scipy.sparse.csr_array, (n_rows, n_spots)
        LET·dose per unit weight, keV/µm · Gy.
    physical : scipy.sparse.csr_array, (n_rows, n_spots)
        Physical dose per unit weight, Gy.
    weights : array_like, (n_spots,)
        Spot weights.

    Returns
    -------
    ndarray, (n_rows,)
        keV/µm; NaN where the dose is 0.
    """
    w32 = np.asarray(weights, np.float32)
    num = (let_dose @ w32).astype(np.float64)
    den = (physical @ w32).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)
