"""Dose engines behind one small interface; pyRadPlan (matRad's Python port) is the default.

The only module that calls pyRadPlan (:mod:`.kernel_interp` and :mod:`.beamlet_repr` speed up two of
its slow paths, bit for bit, within these calls: :func:`pyradplan_speedups`).  We did not write a
dose engine: pyRadPlan's analytical pencil-beam engine (HongPB, matRad's base data "Generic")
computes the dose influence of every spot.  What pyRadPlan lacks and we add here: restriction of
the influence matrix to a voxel subset given as a mask on *our* dose grid (any orientation;
pyRadPlan wants LPS-ordered axes), the mapping of its rows back to our ``(z, y, x)`` voxel indices,
and spot ranges for LET approximations.

Beam angles follow matRad's patient-fixed convention: gantry 0° enters from anterior
(source at −y in LPS), 90° from the patient's left (+x), 180° from posterior (+y), 270° from
the right.  A prone sacral-chordoma set-up (two opposed laterals + one vertical beam, which in
patient coordinates enters posteriorly) is therefore ``[90, 180, 270]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import SimpleITK as sitk

from .beamlet_repr import short_beamlet_reprs
from .influence import DoseInfluence
from .kernel_interp import faster_depth_kernels

log = logging.getLogger(__name__)


@contextmanager
def pyradplan_speedups() -> Iterator[None]:
    """PyRadPlan calls within the block run with :func:`.kernel_interp.faster_depth_kernels` and
    :func:`.beamlet_repr.short_beamlet_reprs` (the same numbers, less CPU time); both restored on exit.
    """
    with faster_depth_kernels(), short_beamlet_reprs():
        yield


class DoseEngine(Protocol):
    """What the planner needs from a dose engine."""

    modality: str

    def influence(self, ct_hu: sitk.Image, *, target: np.ndarray, calc_voxels: np.ndarray) -> DoseInfluence:
        """Dose influence of spots placed on ``target`` for the voxels of ``calc_voxels``.

        ``ct_hu`` is the CT (HU) on the dose grid; masks are ``(z, y, x)`` arrays on that grid.
        """

    def forward(
        self,
        ct_hu: sitk.Image,
        influence: DoseInfluence,
        weights: np.ndarray,
        *,
        body: np.ndarray,
        shift_mm=(0.0, 0.0, 0.0),
        range_scale: float = 1.0,
    ) -> dict[str, np.ndarray]:
        """Per-fraction quantities on the whole dose grid for spot ``weights``, optionally with the
        isocentre moved by ``shift_mm`` (patient LPS) and the stopping powers × ``range_scale``.
        """


def _to_lps(image: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(image, "LPS")


def _index_map(reference: sitk.Image) -> np.ndarray:
    """For each voxel of the LPS-reoriented grid (flat C order), its flat index on ``reference``."""
    shape = sitk.GetArrayViewFromImage(reference).shape
    idx = sitk.GetImageFromArray(np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape))
    idx.CopyInformation(reference)
    return sitk.GetArrayFromImage(_to_lps(idx)).ravel().astype(np.int64)


def _mask_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(mask, np.uint8))
    img.CopyInformation(reference)
    return _to_lps(img)


class PyRadPlanEngine:
    """pyRadPlan pencil-beam dose influence for ions.

    Parameters
    ----------
    modality : {"carbon", "protons"}
        Ion species; carbon uses pyRadPlan's LEM α/β base data (α_x = 0.1 Gy⁻¹, β_x = 0.05 Gy⁻²).
    gantry_angles_deg, couch_angles_deg : sequence of float
        One entry per beam, matRad convention (module docstring).
    bixel_width_mm : float
        Lateral spot spacing at the isocentre.
    layer_spacing_mm : float
        Longitudinal (energy-layer) spacing in water-equivalent mm.
    lateral_cutoff : float
        pyRadPlan's dosimetric lateral cut-off (fraction of the integral dose kept, ≤ 1).
    machine : str
        pyRadPlan machine name.
    """

    def __init__(
        self,
        *,
        modality: str = "carbon",
        gantry_angles_deg=(90.0, 180.0, 270.0),
        couch_angles_deg=None,
        bixel_width_mm: float = 5.0,
        layer_spacing_mm: float = 5.0,
        lateral_cutoff: float = 0.99,
        machine: str = "Generic",
    ):
        if modality not in ("carbon", "protons"):
            raise ValueError(f"modality must be 'carbon' or 'protons', not {modality!r}")
        self.modality = modality
        self.gantry = [float(a) for a in gantry_angles_deg]
        self.couch = [0.0] * len(self.gantry) if couch_angles_deg is None else [float(a) for a in couch_angles_deg]
        if len(self.couch) != len(self.gantry):
            raise ValueError("one couch angle per gantry angle is needed")
        self.bixel_width_mm = float(bixel_width_mm)
        self.layer_spacing_mm = float(layer_spacing_mm)
        self.lateral_cutoff = float(lateral_cutoff)
        self.machine = machine

    @classmethod
    def from_influence(cls, influence: DoseInfluence) -> PyRadPlanEngine:
        """The engine set up as the one that computed ``influence`` (from its meta)."""
        m = influence.meta
        return cls(
            modality=influence.modality,
            gantry_angles_deg=m["gantry_angles_deg"],
            couch_angles_deg=m["couch_angles_deg"],
            bixel_width_mm=m["bixel_width_mm"],
            layer_spacing_mm=m["layer_spacing_mm"],
            lateral_cutoff=m["lateral_cutoff"],
            machine=m["machine"],
        )

    # -- pyRadPlan objects ------------------------------------------------------------------
    def _plan(self, ct, beams=None):
        from pyRadPlan import IonPlan

        beams = range(len(self.gantry)) if beams is None else beams
        pln = IonPlan(radiation_mode=self.modality, machine=self.machine)
        pln.prop_stf = {
            "gantry_angles": [self.gantry[b] for b in beams],
            "couch_angles": [self.couch[b] for b in beams],
            "bixel_width": self.bixel_width_mm,
            "longitudinal_spot_spacing": self.layer_spacing_mm,
        }
        pln.prop_dose_calc = {
            "calc_bio_dose": self.modality == "carbon",
            "calc_let": self.modality == "protons",
            "dose_grid": ct.grid,
            "dosimetric_lateral_cutoff": self.lateral_cutoff,
            # Voxels outside the computed subset still stop particles.
            "ignore_outside_densities": False,
        }
        return pln

    def _ct_cst(self, ct_hu: sitk.Image, *, target: np.ndarray, helper: np.ndarray):
        from pyRadPlan import CT, StructureSet
        from pyRadPlan.cst import create_voi

        ct = CT(cube_hu=_to_lps(sitk.Cast(ct_hu, sitk.sitkFloat32)))
        vois = [create_voi(name="TARGET", voi_type="TARGET", mask=_mask_image(target, ct_hu), ct_image=ct)]
        if np.any(helper):
            vois.append(create_voi(name="CALC", voi_type="HELPER", mask=_mask_image(helper, ct_hu), ct_image=ct))
        return ct, StructureSet(vois=vois, ct_image=ct)

    def _spot_table(self, stf):
        from pyRadPlan.machines._load import load_from_name

        machine = load_from_name(self.modality, self.machine)
        energy = np.asarray([float(bl.energy) for bm in stf.beams for ray in bm.rays for bl in ray.beamlets])
        # Bragg-peak depth in water of each spot from the machine's own energy table.
        return energy, np.interp(energy, np.asarray(machine.energies, float), np.asarray(machine.peak_positions, float))

    @staticmethod
    def _radiological_depths(ct, beams) -> np.ndarray:
        """Water-equivalent depth (mm) of every LPS voxel along each beam, (n_beam, n_vox); NaN where
        no ray passed.

        pyRadPlan's own Siddon ray tracer on its default HU→stopping-power table (its engine's
        ``keep_rad_depth_cubes`` option fails its own Dij validation in 0.5.0, so we trace here).
        """
        from pyRadPlan.ct import default_hlut
        from pyRadPlan.raytracer import RayTracerSiddon

        tracer = RayTracerSiddon([ct.compute_wet(default_hlut())])
        tracer.lateral_cut_off = 50.0
        with pyradplan_speedups():
            values = np.stack([_cube_values(tracer.trace_cubes(beam)[0]) for beam in beams])
        values[values <= 0] = np.nan
        return values

    # -- interface --------------------------------------------------------------------------
    def influence(self, ct_hu: sitk.Image, *, target: np.ndarray, calc_voxels: np.ndarray) -> DoseInfluence:
        """See :class:`DoseEngine`.  One pyRadPlan call per beam (spots are placed per beam, so the
        result is the same as one call for all beams), which keeps its peak memory — float64 triplets
        of every non-zero before the float32 row subset is taken — to a single beam's.
        """
        target = np.asarray(target, bool)
        calc = np.asarray(calc_voxels, bool) | target
        if not np.any(target):
            raise ValueError("the target mask is empty")
        ct, cst = self._ct_cst(ct_hu, target=target, helper=calc & ~target)
        lps_to_ours = _index_map(ct_hu)
        ours_to_lps = np.empty_like(lps_to_ours)
        ours_to_lps[lps_to_ours] = np.arange(lps_to_ours.size)
        voxels = np.flatnonzero(calc.ravel())
        beams = self._beam_influences(ct, cst, rows=ours_to_lps[voxels])
        mats = _share_pattern({k: _csr_of_columns(v) for k, v in beams["parts"].items()})
        spot_beam = np.concatenate(beams["spot_beam"])
        meta = {"engine": "pyRadPlan", "pyradplan_version": _version(), "machine": self.machine,
                "gantry_angles_deg": self.gantry, "couch_angles_deg": self.couch,
                "bixel_width_mm": self.bixel_width_mm, "layer_spacing_mm": self.layer_spacing_mm,
                "lateral_cutoff": self.lateral_cutoff, "n_spots": int(spot_beam.size), "n_voxels": int(voxels.size),
                "nnz": int(mats["physical_dose"].nnz), "stf_s": beams["stf_s"], "dij_s": beams["dij_s"],
                "peak_rss_mb": _peak_rss_mb()}  # fmt: skip
        return DoseInfluence(
            voxels=voxels, grid_shape=target.shape, physical=mats["physical_dose"], alpha_dose=mats["alpha_dose"],
            sqrt_beta_dose=mats["sqrt_beta_dose"], let_dose=mats["let_dose"], spot_beam=spot_beam,
            spot_energy=np.concatenate(beams["energy"]), spot_range_mm=np.concatenate(beams["spot_range"]),
            radiological_depth=np.concatenate(beams["depth"]),
            target_rows=np.searchsorted(voxels, np.flatnonzero(target.ravel())), modality=self.modality,
            alpha_x=beams["alpha_x"], beta_x=beams["beta_x"], meta=meta,
        )  # fmt: skip

    def _beam_influences(self, ct, cst, *, rows: np.ndarray) -> dict:
        """PyRadPlan's spots and dose influence, beam by beam, restricted to our ``rows`` (LPS voxel order)."""
        from pyRadPlan import calc_dose_influence, generate_stf

        out: dict = {"parts": {k: [] for k in ("physical_dose", "alpha_dose", "sqrt_beta_dose", "let_dose")},
                     "spot_beam": [], "energy": [], "spot_range": [], "depth": [], "stf_s": 0.0, "dij_s": 0.0,
                     "alpha_x": 0.1, "beta_x": 0.05}  # fmt: skip
        for b in range(len(self.gantry)):
            t0 = time.perf_counter()
            pln = self._plan(ct, beams=[b])
            with pyradplan_speedups():
                stf = generate_stf(ct, cst, pln)
                t1 = time.perf_counter()
                dij = calc_dose_influence(ct, cst, stf, pln)
            out["stf_s"], out["dij_s"] = out["stf_s"] + t1 - t0, out["dij_s"] + time.perf_counter() - t1
            for k, v in out["parts"].items():
                v.append(_rows_float32(getattr(dij, k, None), rows))
            e, r = self._spot_table(stf)
            if out["parts"]["physical_dose"][-1].shape[1] != e.size:
                n_cols = out["parts"]["physical_dose"][-1].shape[1]
                raise RuntimeError(f"pyRadPlan returned {n_cols} columns for {e.size} spots of beam {b}")
            out["spot_beam"].append(np.full(e.size, b, np.int32))
            out["energy"].append(e)
            out["spot_range"].append(r)
            out["depth"].append(self._radiological_depths(ct, stf.beams)[:, rows])
            if getattr(dij, "alphax", None) is not None:
                out["alpha_x"] = float(np.median(np.asarray(dij.alphax).ravel()[rows]))
                out["beta_x"] = float(np.median(np.asarray(dij.betax).ravel()[rows]))
            del dij
        return out

    def forward(
        self,
        ct_hu: sitk.Image,
        influence: DoseInfluence,
        weights: np.ndarray,
        *,
        body: np.ndarray,
        shift_mm=(0.0, 0.0, 0.0),
        range_scale: float = 1.0,
    ) -> dict[str, np.ndarray]:
        """Per-fraction physical dose, α-dose and √β-dose (or LET·dose) on the whole grid.

        pyRadPlan recomputes the spots (same set-up, so the same spots as ``influence``) with
        the weights applied, on every voxel of ``body``; nothing is stored per spot, and spots of
        weight 0 are left out.

        Scenarios (pyRadPlan has no scenario model of its own; we change its inputs):

        shift_mm : (3,) float
            Setup error: every beam's isocentre moved by this vector (mm, patient LPS
            coordinates), the spots placed on the nominal geometry; i.e. the patient moved by
            −``shift_mm`` relative to the beams.
        range_scale : float
            Range error: every voxel's water-equivalent density (pyRadPlan's HU → WET table)
            × this factor (1.03 = +3 %: particles stop 3 % shallower), the spot energies
            planned on the nominal CT.
        """
        from pyRadPlan import calc_dose_forward, generate_stf

        ct, cst = self._forward_ct_cst(ct_hu, influence, body)
        pln = self._plan(ct)
        with pyradplan_speedups():
            stf = generate_stf(ct, cst, pln)
        if stf.total_number_of_bixels != influence.n_spots:
            raise RuntimeError("spot set differs from the cached dose influence")
        weights = np.asarray(weights, np.float64)
        stf, kept = _prune(stf, weights > 0)
        _move_isocentres(stf, shift_mm)
        if float(range_scale) != 1.0:
            ct = self._scaled_wet_ct(ct, float(range_scale))
            pln.prop_dose_calc = {**pln.prop_dose_calc, "use_given_eq_density_cube": True}
        with pyradplan_speedups():
            res = calc_dose_forward(ct, cst, stf, pln, weights[kept])
        lps_to_ours = _index_map(ct_hu)
        return {
            key: _from_lps(_cube_values(res[key]), lps_to_ours, influence.grid_shape)
            for key in ("physical_dose", "alpha_dose", "sqrt_beta_dose", "let_dose", "effect", "let")
            if key in res and res[key] is not None
        }

    def forward_many(
        self,
        ct_hu: sitk.Image,
        influence: DoseInfluence,
        weights: list,
        *,
        body: np.ndarray,
        shift_mm=(0.0, 0.0, 0.0),
        range_scale: float = 1.0,
    ) -> list[dict]:
        """:meth:`forward` for several spot-weight vectors of one scenario at the price of about one.

        pyRadPlan's forward calculation computes every spot of its steering information once per
        weight vector, and its time is the spots' (per-spot Python work), not the voxels'.  Here each
        beam's spots that any vector uses are computed once, as a dose-influence matrix on the voxels of
        ``body`` (one pyRadPlan call per beam: the peak memory is one beam's), and every vector is
        applied to it with pyRadPlan's own formulas (``Dij.get_result_arrays_from_intensity``):
        physical dose D·w, effect α_D·w + (√β_D·w)², LETd = L_D·w / D·w where D·w > 5 % of its maximum
        (else 0).  Matches :meth:`forward` to float rounding (tested); with a setup shift it equals the
        sum of one-beam forward calculations (6e-7 of the maximum), whereas pyRadPlan's forward of all
        beams at once with moved isocentres differs from that sum by up to 6e-5 (measured on a phantom).

        Returns one dict per weight vector, with the keys of :meth:`forward` that the engine computes
        (``physical_dose``, ``effect`` for carbon, ``let`` for protons), each on the whole ``(z, y, x)``
        grid.
        """
        scenarios = [(shift_mm, range_scale)]
        return next(self.forward_scenarios(ct_hu, influence, weights, body=body, scenarios=scenarios))

    def forward_scenarios(
        self, ct_hu: sitk.Image, influence: DoseInfluence, weights: list, *, body: np.ndarray, scenarios
    ):
        """:meth:`forward_many` for each scenario of ``scenarios``, one at a time (a generator).

        ``scenarios``: ``(shift_mm, range_scale)`` pairs.  The spots are placed once (pyRadPlan's
        ``generate_stf`` per beam on the nominal CT, 2.3 s a beam on a 3 mm grid) and serve every
        scenario: a scenario moves the isocentres of the kept rays and restores them after its
        calculation, so each scenario's doses are those of :meth:`forward_many` alone, bit for bit
        (tested).  pyRadPlan lacks a cache of its own between calculations of one plan.

        Yields
        ------
        list of dict
            Per scenario, what :meth:`forward_many` returns.
        """
        from pyRadPlan import generate_stf

        ct, cst = self._forward_ct_cst(ct_hu, influence, body)
        W = np.stack([np.asarray(w, np.float64) for w in weights], axis=1)  # (n_spots, n_vectors)
        if W.shape[0] != influence.n_spots:
            raise ValueError(f"{W.shape[0]} weights for {influence.n_spots} spots")
        beams, start = [], 0
        for b in range(len(self.gantry)):
            with pyradplan_speedups():  # spots placed on the nominal CT, as planned
                stf = generate_stf(ct, cst, self._plan(ct, beams=[b]))
            n_b = stf.total_number_of_bixels
            w_b = W[start : start + n_b]
            start += n_b
            stf, kept = _prune(stf, np.any(w_b > 0, axis=1))
            beams.append((b, stf, w_b[kept]))
        if start != influence.n_spots:
            raise RuntimeError("spot set differs from the cached dose influence")
        lps_to_ours = _index_map(ct_hu)
        for shift_mm, range_scale in scenarios:
            sums = self._beam_sums(ct, cst, beams, shift_mm=shift_mm, range_scale=float(range_scale))
            yield _vector_results(sums, lambda v: _from_lps(v, lps_to_ours, influence.grid_shape))

    def _beam_sums(self, ct, cst, beams: list, *, shift_mm, range_scale: float) -> dict:
        """Σ over beams of each influence matrix times the beam's kept weights: ``{key: (n_vox_lps, n_vectors)}``."""
        from pyRadPlan import calc_dose_influence

        calc_ct = self._scaled_wet_ct(ct, range_scale) if range_scale != 1.0 else ct
        sums: dict[str, np.ndarray] = {}
        for b, stf, wk in beams:
            pln = self._plan(ct, beams=[b])
            if calc_ct is not ct:
                pln.prop_dose_calc = {**pln.prop_dose_calc, "use_given_eq_density_cube": True}
            isos = [beam.iso_center for beam in stf.beams]
            _move_isocentres(stf, shift_mm)
            try:
                with pyradplan_speedups():
                    dij = calc_dose_influence(calc_ct, cst, stf, pln)
            finally:
                for beam, iso in zip(stf.beams, isos):
                    beam.iso_center = iso
            for key in ("physical_dose", "alpha_dose", "sqrt_beta_dose", "let_dose"):
                m = getattr(dij, key, None)
                if m is None:
                    continue
                m = m.flat[0] if isinstance(m, np.ndarray) and m.dtype == object else m
                part = np.asarray(m @ wk, np.float64)  # (n_vox_lps, n_vectors)
                sums[key] = part if key not in sums else sums[key] + part
            del dij
        return sums

    def spot_map(self, ct_hu: sitk.Image, influence: DoseInfluence) -> dict:
        """The geometry of the spots of ``influence``, as pyRadPlan places them, for a DICOM RT Ion Plan.

        Returns
        -------
        dict
            ``isocentre`` (n_beam, 3) and ``source`` (n_beam, 3, from the isocentre) in patient LPS mm;
            ``gantry_deg``/``couch_deg`` (n_beam,) in pyRadPlan's convention; per spot, in the order of
            the influence's columns: ``beam`` (n_spot,), ``energy`` (n_spot,, MeV/u) and ``offset``
            (n_spot, 3): where its ray crosses the isocentre plane, LPS mm from the isocentre.
        """
        from pyRadPlan import generate_stf

        ct, cst = self._forward_ct_cst(ct_hu, influence, np.zeros(influence.grid_shape, bool))
        with pyradplan_speedups():
            stf = generate_stf(ct, cst, self._plan(ct))
        if stf.total_number_of_bixels != influence.n_spots:
            raise RuntimeError("spot set differs from the cached dose influence")
        spots = [(b, float(s.energy), np.asarray(r.ray_pos, float)) for b, beam in enumerate(stf.beams)
                 for r in beam.rays for s in r.beamlets]  # fmt: skip
        return {
            "isocentre": np.array([np.asarray(b.iso_center, float) for b in stf.beams]),
            "source": np.array([np.asarray(b.source_point, float) for b in stf.beams]),
            "gantry_deg": np.array(self.gantry),
            "couch_deg": np.array(self.couch),
            "beam": np.array([s[0] for s in spots], np.int32),
            "energy": np.array([s[1] for s in spots]),
            "offset": np.array([s[2] for s in spots]),
        }

    def _forward_ct_cst(self, ct_hu: sitk.Image, influence: DoseInfluence, body: np.ndarray):
        """PyRadPlan CT and structures of a forward calculation: the target of ``influence`` (spot
        placement depends on it only, so the spots are rebuilt exactly as in :meth:`influence`) and
        ``body`` as the voxels to compute.
        """
        tmask = np.zeros(int(np.prod(influence.grid_shape)), bool)
        tmask[influence.voxels[influence.target_rows]] = True
        tmask = tmask.reshape(influence.grid_shape)
        return self._ct_cst(ct_hu, target=tmask, helper=np.asarray(body, bool) & ~tmask)

    @staticmethod
    def _scaled_wet_ct(ct, scale: float):
        """A pyRadPlan CT whose cube is the water-equivalent density (its own HLUT) × ``scale``,
        for ``use_given_eq_density_cube`` (the engine then skips its HU conversion).
        """
        from pyRadPlan import CT
        from pyRadPlan.ct import default_hlut

        wet = ct.compute_wet(default_hlut())
        scaled = sitk.Cast(wet, sitk.sitkFloat32) * float(scale)
        scaled.CopyInformation(wet)
        return CT(cube_hu=scaled)


def _prune(stf, keep: np.ndarray):
    """``stf`` reduced, in place, to its rays with a spot where ``keep`` (beam → ray → spot order),
    and the mask of the spots it keeps (every spot of a kept ray; a beam keeps at least its first ray).

    pyRadPlan's forward calculation computes every spot, weighted or not, and a boost leaves whole
    rays at 0.  Whole rays only: leaving out single spots of a ray changes pyRadPlan's dose of the
    others (by up to 0.5 % of the maximum, measured), whole rays leave it exact (< 1e-6).
    """
    keep = np.asarray(keep, bool).copy()
    i = 0
    for beam in stf.beams:
        rays: list = []
        for ray in beam.rays:
            k = keep[i : i + len(ray.beamlets)]  # a view into ``keep``
            i += len(ray.beamlets)
            if np.any(k) or (not rays and ray is beam.rays[-1]):
                k[:] = True
                rays.append(ray)
        beam.rays = rays
    return stf, keep


def _move_isocentres(stf, shift_mm) -> None:
    """Setup error: every beam's isocentre of ``stf`` moved, in place, by ``shift_mm`` (patient LPS)."""
    shift = np.asarray(shift_mm, np.float64).reshape(3)
    if np.any(shift != 0.0):
        for beam in stf.beams:
            beam.iso_center = np.asarray(beam.iso_center, np.float64) + shift


def _vector_results(sums: dict, ours) -> list[dict]:
    """Per weight vector, the doses of :meth:`PyRadPlanEngine.forward_many` from the beams' summed
    products (pyRadPlan's formulas); ``ours`` maps flat LPS values onto our grid.
    """
    results = []
    for j in range(sums["physical_dose"].shape[1]):
        phys = sums["physical_dose"][:, j]
        r = {"physical_dose": ours(phys)}
        if "alpha_dose" in sums and "sqrt_beta_dose" in sums:
            r["effect"] = ours(sums["alpha_dose"][:, j] + sums["sqrt_beta_dose"][:, j] ** 2)
        if "let_dose" in sums:
            let = np.zeros_like(phys)
            hit = phys > 0.05 * phys.max()
            let[hit] = sums["let_dose"][hit, j] / phys[hit]
            r["let"] = ours(let)
        results.append(r)
    return results


def _from_lps(values: np.ndarray, lps_to_ours: np.ndarray, shape) -> np.ndarray:
    """Flat values in pyRadPlan's LPS voxel order as an array on our ``(z, y, x)`` grid."""
    out = np.empty_like(values)
    out[lps_to_ours] = values
    return out.reshape(shape)


def _cube_values(cube) -> np.ndarray:
    """A pyRadPlan cube (SimpleITK image or array in LPS C order) as a flat float64 array."""
    if isinstance(cube, sitk.Image):
        return sitk.GetArrayFromImage(cube).ravel().astype(np.float64)
    return np.asarray(cube, dtype=np.float64).ravel()


def _csr_of_columns(blocks):
    """Column blocks (CSC) stacked side by side, as CSR; each block is freed once copied."""
    if blocks[0] is None:
        return None
    csc = sp.csc_array(sp.hstack(blocks, format="csc"))
    blocks.clear()
    return sp.csr_array(csc.tocsr())


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("pyradplan")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _rows_float32(q, rows: np.ndarray):
    """Our rows of one beam's matrix as float32 CSC with int32 indices (pyRadPlan: CSC, all voxels)."""
    if q is None:
        return None
    m = sp.csc_array(q.flat[0] if isinstance(q, np.ndarray) and q.dtype == object else q)[rows]
    data = (m.data.astype(np.float32, copy=False), m.indices.astype(np.int32, copy=False),
            m.indptr.astype(np.int64, copy=False))  # fmt: skip
    return sp.csc_array(data, shape=m.shape)


def _share_pattern(mats: dict) -> dict:
    """α-dose, √β-dose (and LET·dose) have the physical dose's sparsity pattern: share it."""
    phys = mats["physical_dose"]
    for k, m in mats.items():
        same = m is not None and m is not phys and np.array_equal(m.indptr, phys.indptr)
        if same and np.array_equal(m.indices, phys.indices):
            mats[k] = sp.csr_array((m.data, phys.indices, phys.indptr), shape=m.shape)
    return mats
