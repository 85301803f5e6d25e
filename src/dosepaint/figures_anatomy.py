"""Maps on the anatomy: dose colour washes over the CT with isodose lines and contours (matplotlib).

Arrays are 2-D slices already cut in display orientation — axial (row = anterior → posterior, column =
patient's right → left, the radiological convention) or sagittal (row = superior → inferior, column =
anterior → posterior) — with ``extent`` in mm as :func:`matplotlib.pyplot.imshow` takes it.
:func:`display_slices` cuts them from volumes reoriented to LPS, so any acquisition orientation shows
the same way.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

#: Font sizes (pt): the report shows a figure about 900 px wide, so text is set larger than usual.
TITLE_PT, TEXT_PT = 13, 12
#: Soft-tissue window of the CT (HU): level 40, width 400.
CT_WINDOW = (-160.0, 240.0)
#: Isodose lines as fractions of the prescription, with their colours.
ISODOSE = {0.95: "#00c000", 1.00: "#ffd700", 1.07: "#ff00ff"}
#: Contour colours of the structures drawn when present (targets first).
CONTOUR_COLOURS = {
    "GTV": "#ff2020",
    "CTV_HD": "#ff8c00",
    "CTV_LD": "#00bfff",
    "RECTUM": "#8b4513",
    "SIGMA": "#a0522d",
    "BOWEL": "#deb887",
    "NERVES": "#ffff80",
}


def display_slices(volume: np.ndarray, *, axial: int | None = None, sagittal: int | None = None) -> np.ndarray:
    """An axial or sagittal slice of an LPS-ordered (z, y, x) volume, in display orientation.

    Axial: the volume's slice ``axial`` as it is (anterior at the top, the patient's left on the right).
    Sagittal: column ``sagittal``, superior at the top (z reversed), anterior on the left.
    """
    v = np.asarray(volume)
    if axial is not None:
        return v[axial]
    return v[::-1, :, sagittal]


def extent_mm(shape, *, row_mm: float, col_mm: float) -> list[float]:
    """Imshow extent of a (rows, columns) slice with the given spacings, origin at the top left."""
    return [0.0, shape[1] * col_mm, shape[0] * row_mm, 0.0]


def ct_background(ax, ct2d: np.ndarray, *, extent) -> None:
    """The CT slice in grey, soft-tissue window."""
    ax.imshow(ct2d, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], extent=extent, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def wash(ax, values2d, *, extent, cmap: str, vmin: float, vmax: float, floor: float | None = None, alpha=0.55):
    """A colour wash of ``values2d`` over the background; transparent below ``floor`` and where NaN."""
    v = np.asarray(values2d, float)
    shown = np.ma.masked_invalid(np.where(v >= floor, v, np.nan) if floor is not None else v)
    return ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, extent=extent, interpolation="nearest")


def isodose_lines(ax, dose2d, *, prescription_gy: float, extent) -> list:
    """Isodose lines at 95 / 100 / 107 % of the prescription; legend handles returned."""
    handles = []
    for level, colour in ISODOSE.items():
        if np.nanmax(dose2d) >= level * prescription_gy:
            ax.contour(
                dose2d, levels=[level * prescription_gy], colors=colour, linewidths=1.0, extent=extent, origin="upper"
            )
        handles.append(
            Line2D([], [], color=colour, lw=1.2, label=f"{100 * level:.0f} % ({level * prescription_gy:.1f} Gy(RBE))")
        )
    return handles


def structure_lines(ax, masks2d: dict, *, extent) -> list:
    """Contours of the structures in :data:`CONTOUR_COLOURS` that cross the slice; legend handles."""
    handles = []
    for name, colour in CONTOUR_COLOURS.items():
        m = masks2d.get(name)
        if m is None or not np.any(m):
            continue
        ax.contour(
            np.asarray(m, float),
            levels=[0.5],
            colors=colour,
            linewidths=1.3,
            linestyles="solid",
            extent=extent,
            origin="upper",
        )
        handles.append(Line2D([], [], color=colour, lw=1.5, label=name))
    return handles


def _colourbar(fig, im, ax, label: str) -> None:
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(label, fontsize=TEXT_PT)
    bar.ax.tick_params(labelsize=TEXT_PT - 1)


def dose_panel(fig, ax, *, ct2d, dose2d, masks2d, prescription_gy: float, extent, title: str) -> list:
    """CT, dose wash from 30 % to 110 % of the prescription, isodose lines, contours; legend handles."""
    ct_background(ax, ct2d, extent=extent)
    im = wash(
        ax,
        dose2d,
        extent=extent,
        cmap="turbo",
        vmin=0.3 * prescription_gy,
        vmax=1.1 * prescription_gy,
        floor=0.3 * prescription_gy,
    )
    handles = isodose_lines(ax, dose2d, prescription_gy=prescription_gy, extent=extent)
    handles += structure_lines(ax, masks2d, extent=extent)
    _colourbar(fig, im, ax, "Gy(RBE)")
    ax.set_title(title, fontsize=TITLE_PT)
    return handles


def map_panel(fig, ax, *, ct2d, values2d, masks2d, extent, title: str, cmap: str, label: str, lim=None) -> list:
    """CT with a wash of ``values2d`` (NaN transparent) and the contours; legend handles."""
    ct_background(ax, ct2d, extent=extent)
    finite = np.asarray(values2d, float)[np.isfinite(values2d)]
    lo, hi = lim if lim is not None else (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    im = wash(ax, values2d, extent=extent, cmap=cmap, vmin=float(lo), vmax=float(hi), alpha=0.75)
    handles = structure_lines(ax, masks2d, extent=extent)
    _colourbar(fig, im, ax, label)
    ax.set_title(title, fontsize=TITLE_PT)
    return handles


def legend_below(fig, handles: list) -> float:
    """One legend for the figure (duplicates dropped), under the panels; returns the height it takes
    as a fraction of the figure's.
    """
    seen: dict = {}
    for h in handles:
        seen.setdefault(h.get_label(), h)
    fig.legend(handles=list(seen.values()), loc="lower center", ncol=min(len(seen), 5), fontsize=TEXT_PT, frameon=False)
    rows = -(-len(seen) // 5)
    return (0.15 + 0.3 * rows) / fig.get_figheight()


def crop_box(mask2d: np.ndarray, *, margin: int) -> tuple[slice, slice]:
    """Rows and columns around ``mask2d``'s voxels with ``margin`` voxels to spare (whole slice if empty)."""
    r, c = np.nonzero(mask2d)
    if r.size == 0:
        return slice(None), slice(None)
    return (
        slice(max(r.min() - margin, 0), r.max() + margin + 1),
        slice(max(c.min() - margin, 0), c.max() + margin + 1),
    )


def new_figure(n_rows: int, n_cols: int, *, width: float = 4.2, height: float = 4.0):
    """A figure of panels with room for the legend below."""
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows + 1.2), squeeze=False)
    return fig, axes


class _View:
    """One slice of the representative patient cut, cropped around CTV_LD (40 mm to spare), with the
    CT, the contours and the extent every panel of a figure shares.
    """

    def __init__(self, ct, masks: dict, spacing, *, axial: bool):
        gtv = np.nonzero(masks["GTV"])
        self.index = int(round(np.mean(gtv[0] if axial else gtv[2])))
        key = {"axial": self.index} if axial else {"sagittal": self.index}
        self._cut = lambda v: display_slices(v, **key)
        row_mm, col_mm = (spacing[1], spacing[0]) if axial else (spacing[2], spacing[1])
        self.box = crop_box(self._cut(masks.get("CTV_LD", masks["GTV"])), margin=int(np.ceil(40.0 / col_mm)))
        self.ct = self.cut(ct)
        self.masks = {n: self.cut(m) for n, m in masks.items()}
        self.extent = extent_mm(self.ct.shape, row_mm=row_mm, col_mm=col_mm)

    def cut(self, volume) -> np.ndarray:
        return self._cut(volume)[self.box]

    def dose(self, fig, ax, dose, *, prescription_gy: float, title: str) -> list:
        return dose_panel(fig, ax, ct2d=self.ct, dose2d=self.cut(dose), masks2d=self.masks,
                          prescription_gy=prescription_gy, extent=self.extent, title=title)  # fmt: skip

    def map(self, fig, ax, values, *, title: str, cmap: str, label: str, lim=None) -> list:
        return map_panel(fig, ax, ct2d=self.ct, values2d=self.cut(values), masks2d=self.masks, extent=self.extent,
                         title=title, cmap=cmap, label=label, lim=lim)  # fmt: skip


def _symmetric(values2d, floor: float = 0.5) -> tuple[float, float]:
    """Colour limits ±(99th percentile of |values|) for a difference map, at least ± ``floor``."""
    finite = np.abs(values2d[np.isfinite(values2d)])
    lim = max(float(np.percentile(finite, 99)) if finite.size else floor, floor)
    return -lim, lim


def _finish(fig, handles: list, title: str) -> plt.Figure:
    bottom = legend_below(fig, handles)
    fig.suptitle(title, fontsize=TITLE_PT + 1)
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


def slices_on_ct(*, ct, doses: dict, letd, clonogen_density, masks: dict, prescription_gy: float, spacing,
                 patient: str) -> plt.Figure:  # fmt: skip
    """Fig. 1c on the anatomy, the axial slice through the GTV centroid: each plan's dose (colour wash over
    the CT, isodose lines at 95/100/107 % of the prescription); DE − uniform, the DE LETd and the clonogen
    density.

    Parameters
    ----------
    ct : ndarray (z, y, x)
        CT (HU), LPS-ordered; every other volume on the same grid.
    doses : dict
        ``uniform``, ``de``, ``dr`` → total dose (Gy(RBE)).
    letd : ndarray (z, y, x)
        LETd (keV/µm), NaN where not computed.
    clonogen_density : ndarray (z, y, x)
        Clonogens per mm³ in the GTV, NaN elsewhere.
    masks : dict
        Structure name → bool (z, y, x).
    spacing : sequence of float
        Voxel size (x, y, z) in mm.
    """
    v = _View(ct, masks, spacing, axial=True)
    fig, axes = new_figure(2, 3)
    handles: list = []
    for ax, (plan, label) in zip(axes[0], (("uniform", "Uniform"), ("de", "DE"), ("dr", "DR")), strict=True):
        handles += v.dose(fig, ax, doses[plan], prescription_gy=prescription_gy, title=f"{label} dose")
    diff = np.where(doses["uniform"] > 0.3 * prescription_gy, doses["de"] - doses["uniform"], np.nan)
    v.map(fig, axes[1, 0], diff, title="DE − uniform", cmap="RdBu_r", label="Gy(RBE)", lim=_symmetric(v.cut(diff)))
    v.map(fig, axes[1, 1], letd, title="DE LETd", cmap="viridis", label="keV/µm")
    v.map(fig, axes[1, 2], clonogen_density, title="clonogen density (DWI)", cmap="magma", label="clonogens / mm³")
    title = f"{patient}: axial slice {v.index} through the GTV (anterior up, patient's left on the right)"
    return _finish(fig, handles, title)


def worst_case_on_ct(*, ct, nominal, worst, masks: dict, prescription_gy: float, spacing, patient: str,
                     plan: str = "DE") -> plt.Figure:  # fmt: skip
    """The robustness view, axial slice through the GTV centroid: a plan's nominal and voxel-wise worst-case
    dose (washes over the CT with isodose lines; ``worst`` NaN where not evaluated) and their difference.
    """
    v = _View(ct, masks, spacing, axial=True)
    fig, axes = new_figure(1, 3)
    handles = v.dose(fig, axes[0, 0], nominal, prescription_gy=prescription_gy, title=f"{plan} nominal")
    handles += v.dose(fig, axes[0, 1], worst, prescription_gy=prescription_gy,
                      title=f"{plan} worst case (voxel-wise)")  # fmt: skip
    diff = worst - nominal
    v.map(fig, axes[0, 2], diff, title="worst − nominal", cmap="RdBu_r", label="Gy(RBE)", lim=_symmetric(v.cut(diff)))
    return _finish(fig, handles, f"{patient}: {plan} plan under setup and range errors, axial slice {v.index}")


def scenarios_on_ct(*, ct, dose, weights: dict, maps: dict, masks: dict, prescription_gy: float, spacing,
                    patient: str, plan: str = "DE") -> plt.Figure:  # fmt: skip
    """Fig. 3 on the anatomy, sagittal slice through the GTV centroid; one row per cell-count scenario: the
    plan's dose (first row) or the scenario's cell-count weight w_i, the clonogens per voxel and
    log10(−ln voxel TCP), washed over the CT.

    ``weights``: scenario → w_i and ``maps``: scenario → (clonogens per voxel, log10(−ln TCP_i)), NaN
    outside the GTV, all (z, y, x) on the CT's grid.
    """
    v = _View(ct, masks, spacing, axial=False)
    n_max = max(float(np.nanmax(n)) for n, _ in maps.values())
    s_all = np.concatenate([s[np.isfinite(s)] for _, s in maps.values()])
    s_lim = tuple(np.percentile(s_all, [2, 98])) if s_all.size else (0.0, 1.0)
    w_all = np.concatenate([w[np.isfinite(w)] for w in weights.values()])
    w_lim = (float(w_all.min()), float(w_all.max())) if w_all.size else (0.0, 2.0)
    fig, axes = new_figure(len(maps), 3, height=3.6)
    handles = v.dose(fig, axes[0, 0], dose, prescription_gy=prescription_gy, title=f"{plan} dose")
    for r, (scen, (n, s)) in enumerate(maps.items()):
        if r:
            v.map(fig, axes[r, 0], weights[scen], title=f"{scen}: cell-count weight w", cmap="PuOr_r", label="w",
                  lim=w_lim)  # fmt: skip
        v.map(
            fig, axes[r, 1], n, title=f"{scen}: clonogens per voxel", cmap="magma", label="clonogens", lim=(0.0, n_max)
        )
        v.map(fig, axes[r, 2], s, title=f"{scen}: log10(−ln voxel TCP)", cmap="viridis", label="log10", lim=s_lim)
    return _finish(fig, handles, f"{patient}: {plan} plan, sagittal slice {v.index} (superior up, anterior left): "
                   "nominal, best- and worst-case cell counts")  # fmt: skip
