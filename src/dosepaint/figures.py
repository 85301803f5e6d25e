"""The paper's figures (matplotlib): data in, a ``Figure`` out; the stage saves PNG and PDF.

Image arrays are indexed (z, y, x) = (slice, row, column) on the dose grid.  The maps on the anatomy
(Fig. 1c, Fig. 3, the worst-case view) are drawn by :mod:`dosepaint.figures_anatomy`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PLAN_COLOURS = {"uniform": "#4d4d4d", "de": "#d7301f", "dr": "#2166ac"}
PLAN_LABELS = {"uniform": "Uniform", "de": "DE", "dr": "DR"}
SCENARIO_MARKERS = {"nominal": "o", "best": "^", "worst": "v"}


def oar_boxplots(metrics: pd.DataFrame, *, limits: dict, plans=("uniform", "de", "dr")) -> plt.Figure:
    """Fig. 1a: near-maximum dose (D2 %, Gy(RBE)) of each OAR per plan, one box per plan, with the limit.

    ``metrics``: rows (patient_id, plan) with columns ``{OAR}_D2``; ``limits``: OAR → Gy(RBE).
    """
    oars = [o for o in limits if f"{o}_D2" in metrics]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(oars), 3.6))
    width = 0.8 / len(plans)
    for k, plan in enumerate(plans):
        data = [metrics.loc[metrics["plan"] == plan, f"{o}_D2"].dropna().to_numpy() for o in oars]
        pos = np.arange(len(oars)) + (k - (len(plans) - 1) / 2) * width
        bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True, showfliers=True)
        for box in bp["boxes"]:
            box.set(facecolor=PLAN_COLOURS.get(plan, "grey"), alpha=0.45)
        ax.plot([], [], "s", color=PLAN_COLOURS.get(plan, "grey"), alpha=0.6, label=PLAN_LABELS.get(plan, plan))
    for i, o in enumerate(oars):
        ax.hlines(
            limits[o],
            i - 0.45,
            i + 0.45,
            colors="k",
            linestyles="--",
            linewidth=1.2,
            label="limit" if i == 0 else "_nolegend_",
        )
    ax.set_xticks(np.arange(len(oars)), oars)
    top = max([float(limits[o]) for o in oars] + [float(np.nanmax(metrics[[f"{o}_D2" for o in oars]].to_numpy()))])
    ax.set_ylim(0, 1.25 * top)  # room for the legend above the limits
    ax.set_ylabel("near-max dose D2% (Gy(RBE))")
    ax.set_title("OAR near-maximum dose of the held-out patients")
    ax.legend(frameon=False, fontsize=8, ncol=len(plans) + 1, loc="upper left")
    fig.tight_layout()
    return fig


def mean_dvh(dvhs: dict, *, structures=("GTV", "CTV_HD"), plans=("uniform", "de")) -> plt.Figure:
    """Fig. 1b: mean cumulative DVH ± 1 SD over patients, per structure and plan.

    ``dvhs``: plan → list of DataFrames with ``dose_gy`` and one volume-fraction column per structure,
    all on the same dose bins.
    """
    fig, axes = plt.subplots(1, len(structures), figsize=(4.2 * len(structures), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, s in zip(axes, structures):
        for plan in plans:
            frames = dvhs[plan]
            dose = frames[0]["dose_gy"].to_numpy()
            v = 100.0 * np.stack([f[s].to_numpy(float) for f in frames])
            m, sd = v.mean(axis=0), v.std(axis=0, ddof=1) if len(frames) > 1 else np.zeros(v.shape[1])
            c = PLAN_COLOURS.get(plan, "grey")
            ax.plot(dose, m, color=c, label=f"{PLAN_LABELS.get(plan, plan)} (n = {len(frames)})")
            ax.fill_between(dose, np.clip(m - sd, 0, 100), np.clip(m + sd, 0, 100), color=c, alpha=0.2, lw=0)
        ax.set_xlim(60, 82)
        ax.set_xlabel("dose (Gy(RBE))")
        ax.set_title(s.replace("_", " "))
    axes[0].set_ylabel("volume (%)")
    axes[0].legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def tcp_per_patient(tcp: pd.DataFrame, *, plans=("uniform", "de")) -> plt.Figure:
    """Fig. 2a: TCP (%) of each held-out patient for nominal, best- and worst-case cell counts, per plan.

    ``tcp``: columns patient_id, plan, cell_count, tcp (0–1).
    """
    order = tcp[(tcp["plan"] == plans[0]) & (tcp["cell_count"] == "nominal")].sort_values("tcp")["patient_id"].tolist()
    fig, ax = plt.subplots(figsize=(1.5 + 0.55 * len(order), 3.8))
    for k, plan in enumerate(plans):
        sub = tcp[tcp["plan"] == plan]
        off = (k - (len(plans) - 1) / 2) * 0.25
        w = sub.pivot(index="patient_id", columns="cell_count", values="tcp").reindex(order)
        xs = np.arange(len(order)) + off
        if {"best", "worst"} <= set(w.columns):
            ax.vlines(xs, 100 * w["worst"], 100 * w["best"], color=PLAN_COLOURS.get(plan, "grey"), lw=1.2)
        for scen, mk in SCENARIO_MARKERS.items():
            if scen in w:
                ax.plot(
                    xs,
                    100 * w[scen],
                    mk,
                    color=PLAN_COLOURS.get(plan, "grey"),
                    ms=5 if scen == "nominal" else 4,
                    mfc="white" if scen != "nominal" else None,
                    label=f"{PLAN_LABELS.get(plan, plan)} {scen}",
                )
    ax.set_xticks(np.arange(len(order)), [p for p in order], rotation=60, fontsize=8)
    ax.set_ylabel("TCP (%)")
    ax.set_ylim(0, 100)
    ax.set_title("TCP per held-out patient under cell-count uncertainty", fontsize=10)
    ax.legend(frameon=False, fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def tertile_bars(tertiles: pd.DataFrame, *, value: str = "delta_tcp_subvolume_pp") -> plt.Figure:
    """Fig. 2b: ΔTCP (pp) against the uniform plan in the low / medium / high cell-count tertile, DR vs
    DE: mean ± SD over patients, patients as dots.
    """
    labels = ["low", "medium", "high"]
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for k, plan in enumerate(["dr", "de"]):
        sub = tertiles[tertiles["plan"] == plan]
        off = (k - 0.5) * 0.36
        for i, lab in enumerate(labels):
            v = sub.loc[sub["tertile"] == lab, value].to_numpy(float)
            if v.size == 0:
                continue
            ax.bar(
                i + off,
                v.mean(),
                width=0.34,
                color=PLAN_COLOURS[plan],
                alpha=0.55,
                yerr=v.std(ddof=1) if v.size > 1 else None,
                capsize=3,
                label=PLAN_LABELS[plan] if i == 0 else None,
            )
            ax.plot(np.full(v.size, i + off), v, ".", color=PLAN_COLOURS[plan], ms=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(3), [f"{lab} count" for lab in labels])
    ax.set_ylabel("ΔTCP vs uniform (pp)")
    ax.set_title("ΔTCP by cell-count tertile", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def scenario_volumes(*, dose, cells, weights: dict, alpha: float, beta: float, n_fractions: int, gtv) -> dict:
    """Per cell-count scenario the clonogens per voxel and log10(−ln TCP_i), NaN outside the GTV (Fig. 3).

    The voxel TCP_i = exp(−N_i w_i e^{−E_i}) is within 1e-5 of 1 in every voxel of a realistic plan, so
    the map is −ln TCP_i = N_i w_i e^{−E_i} (expected surviving clonogens; log10), whose sum over the
    GTV is −ln TCP.

    Parameters
    ----------
    dose : ndarray (z, y, x)
        Total dose (Gy(RBE)) on the dose grid.
    cells : ndarray (z, y, x)
        Clonogens per voxel N_i.
    weights : dict
        Scenario → w_i (same shape).
    alpha, beta : float
        Gy⁻¹, Gy⁻²; ``n_fractions`` the course's fractions.
    gtv : ndarray of bool (z, y, x)

    Returns
    -------
    dict
        Scenario → (clonogens per voxel, log10(−ln TCP_i)), both (z, y, x).
    """
    d = np.asarray(dose, float)
    e = alpha * d + beta * d * d / n_fractions
    out = {}
    for scen, w in weights.items():
        n = np.where(gtv, np.asarray(cells, float) * w, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[scen] = (n, np.where(n > 0, np.log10(n) - e / np.log(10.0), np.nan))
    return out


def kaplan_meier_plot(km: pd.DataFrame, *, logrank: dict, threshold: float, population: str) -> plt.Figure:
    """Kaplan–Meier curves of local control by predicted-TCP group, 95 % CI bands, log-rank p."""
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    colours = {"high": "#1b7837", "low": "#762a83"}
    for g, sub in km.groupby("group"):
        n = int(sub["at_risk"].iloc[0])
        c = colours.get(g, None)
        ax.step(
            sub["time"],
            100 * sub["survival"],
            where="post",
            color=c,
            label=f"TCP {'≥' if g == 'high' else '<'} {100 * threshold:.1f} % (n = {n})",
        )
        ax.fill_between(
            sub["time"], 100 * sub["ci_lower"], 100 * sub["ci_upper"], step="post", color=c, alpha=0.15, lw=0
        )
    ax.set_ylim(0, 102)
    ax.set_xlabel("time (months)")
    ax.set_ylabel("local control (%)")
    ax.set_title(f"Local control by predicted TCP ({population}); log-rank p = {logrank['p']:.3g}", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def calibration_plot(tables: dict, *, n_bins: int = 4) -> plt.Figure:
    """Observed local-control rate against predicted TCP in quantile bins (Wilson 95 % intervals), per
    split; with the generator's true TCP of each patient where known (synthetic cohort).

    ``tables``: split → DataFrame with ``tcp_predicted``, ``local_control`` and optionally ``tcp_true``.
    """
    from statsmodels.stats.proportion import proportion_confint

    fig, axes = plt.subplots(
        1, 2 if any("tcp_true" in t for t in tables.values()) else 1, figsize=(9, 4), squeeze=False
    )
    ax = axes[0, 0]
    ax.plot([0, 100], [0, 100], "k:", lw=1)
    markers = {"train": "o", "test": "s"}
    for split, t in tables.items():
        p = t["tcp_predicted"].to_numpy(float)
        y = t["local_control"].to_numpy(float)
        k = min(n_bins, max(1, p.size // 3))
        edges = np.unique(np.quantile(p, np.linspace(0, 1, k + 1)))
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
        for b in range(len(edges) - 1):
            sel = idx == b
            if not sel.any():
                continue
            lo, hi = proportion_confint(y[sel].sum(), sel.sum(), method="wilson")
            obs = y[sel].mean()
            ax.errorbar(
                100 * p[sel].mean(),
                100 * obs,
                yerr=[[100 * (obs - lo)], [100 * (hi - obs)]],
                fmt=markers.get(split, "o"),
                color="#d7301f" if split == "test" else "#4d4d4d",
                capsize=3,
                label=f"{split} (n = {p.size})" if b == 0 else None,
            )
    ax.set_xlabel("predicted TCP (%)")
    ax.set_ylabel("observed local control (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 105)
    ax.set_title("Calibration (quantile bins, Wilson 95 % CI)", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    if axes.shape[1] == 2:
        ax = axes[0, 1]
        ax.plot([0, 100], [0, 100], "k:", lw=1)
        for split, t in tables.items():
            if "tcp_true" in t:
                ax.plot(
                    100 * t["tcp_true"],
                    100 * t["tcp_predicted"],
                    markers.get(split, "o"),
                    color="#d7301f" if split == "test" else "#4d4d4d",
                    mfc="none",
                    label=split,
                )
        ax.set_xlabel("true TCP of the generator (%)")
        ax.set_ylabel("predicted TCP (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_title("Predicted against true TCP (synthetic cohort)", fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


SWEEP_LABELS = {
    "de_mean_fraction": "DE GTV mean dose (× D_P)",
    "alpha_beta": "α/β (Gy)",
    "sigma_scale": "σ of the cell-count weights (× training σ)",
}


def sweep_gain(summary: pd.DataFrame, *, columns, default: dict) -> plt.Figure:
    """Sweep figure: mean ± SD TCP gain (pp) of the TCP-optimal DE over uniform against each swept column
    (one panel per column that varies, the others at ``default``), with the band of the best- and
    worst-case cell-count gains.
    """
    varied = [c for c in columns if summary[c].nunique() > 1]
    fig, axes = plt.subplots(1, max(len(varied), 1), figsize=(4.2 * max(len(varied), 1), 3.4), squeeze=False)
    for ax, col in zip(axes[0], varied):
        others = [c for c in columns if c != col]
        sel = np.all([np.isclose(summary[c], default[c]) for c in others], axis=0)
        s = summary[sel].sort_values(col)
        ax.errorbar(
            s[col],
            s["gain_mean_pp"],
            yerr=s["gain_sd_pp"],
            fmt="o-",
            color="#d7301f",
            capsize=3,
            label="nominal counts",
        )
        ax.fill_between(
            s[col],
            s["gain_worst_mean_pp"],
            s["gain_best_mean_pp"],
            color="#d7301f",
            alpha=0.15,
            label="best–worst counts (mean)",
        )
        ax.set_xlabel(SWEEP_LABELS.get(col, col))
        ax.set_ylabel("ΔTCP ideal DE − uniform (pp)")
        ax.axhline(0, color="k", lw=0.6)
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle(
        f"TCP gain of TCP-optimal DE over the delivered uniform plan, {int(summary['n_patients'].max())} "
        "held-out patients (other parameters at their defaults)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, png, pdf, *, dpi: int = 150) -> None:
    """PNG and PDF of one figure (the caller writes to temporary paths when atomicity matters)."""
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    plt.close(fig)
