"""Summary stage: the headline numbers of the held-out cohort next to the study's, as TSV and one HTML
page for the report (Table 1, the tests of TCP, the cell-count scenarios, tertiles, the TCP model and
survival).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .. import statistics as st
from ..io import files

# The reference study's headline numbers (docs/method.md, introduction): mean ± SD over its 10
# held-out patients; None where the study gives no value.
STUDY = {
    "TCP uniform (%)": (75.5, 5.6),
    "TCP DE (%)": (83.3, 3.9),
    "ΔTCP DE − uniform (pp)": (7.8, None),
    "ΔTCP DR − uniform (pp)": (1.8, 1.0),
    "p (uniform vs DE)": ("< 0.001", None),
    "cell-count uncertainty, TCP change (pp)": ("−3 to +5", None),
    "ΔTCP high − low tertile, DE (pp)": (13.0, None),
    "ΔTCP DR, low-count tertile (pp)": (-5.0, None),
    "ΔTCP DR, high-count tertile (pp)": (8.4, 2.3),
}


def _pm(m, s, digits=1) -> str:
    if m is None or (isinstance(m, float) and not np.isfinite(m)):
        return "–"
    if isinstance(m, str):
        return m
    return f"{m:.{digits}f}" + ("" if s is None or not np.isfinite(s) else f" ± {s:.{digits}f}")


def headline(stats: dict, tertiles: pd.DataFrame) -> pd.DataFrame:
    """Our held-out numbers beside the study's (rows of :data:`STUDY`)."""
    tcp = stats["tcp_pct"]
    t = tertiles.set_index(["plan", "tertile"])

    def tert(plan, label):
        if (plan, label) not in t.index:
            return (np.nan, np.nan)
        r = t.loc[(plan, label)]
        return (r["delta_tcp_mean_pp"], r["delta_tcp_sd_pp"])

    cc = stats.get("cell_count_range_pp", {}).get("de", {})
    ours = {
        "TCP uniform (%)": (tcp["uniform"]["mean"], tcp["uniform"]["sd"]),
        "TCP DE (%)": (tcp["de"]["mean"], tcp["de"]["sd"]),
        "ΔTCP DE − uniform (pp)": (tcp["de"]["delta_mean_pp"], tcp["de"]["delta_sd_pp"]),
        "ΔTCP DR − uniform (pp)": (tcp["dr"]["delta_mean_pp"], tcp["dr"]["delta_sd_pp"]),
        "p (uniform vs DE)": (
            f"Wilcoxon {tcp['de']['wilcoxon_p']:.3g}; Mann–Whitney {tcp['de']['mann_whitney_p']:.3g}",
            None,
        ),
        "cell-count uncertainty, TCP change (pp)": (
            f"DE mean {cc.get('worst_minus_nominal_mean', np.nan):+.1f} / "
            f"{cc.get('best_minus_nominal_mean', np.nan):+.1f} (range "
            f"{cc.get('worst_minus_nominal_min', np.nan):+.1f} to {cc.get('best_minus_nominal_max', np.nan):+.1f})",
            None,
        ),
        "ΔTCP high − low tertile, DE (pp)": tert("de", "high − low"),
        "ΔTCP DR, low-count tertile (pp)": tert("dr", "low"),
        "ΔTCP DR, high-count tertile (pp)": tert("dr", "high"),
    }
    return pd.DataFrame([{"quantity": k, "dosepaint": _pm(*ours[k]), "study": _pm(*STUDY[k])} for k in STUDY])


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    return df.to_html(index=False, border=0, na_rep="–", float_format=lambda v: f"{v:.{digits}g}", classes="dp")


def exclusions_html(excluded: pd.DataFrame | None, planning: pd.DataFrame | None = None) -> str:
    """The report's lists of patients left out, with the stage and the reason (or that there were none)."""
    out = ""
    if excluded is not None:
        out += (
            "<h2>Excluded patients</h2><p>None: every patient of the sheet passed the input check and "
            "the imaging stages.</p>"
            if excluded.empty
            else f"<h2>Excluded patients ({len(excluded)})</h2><p>Left out before the split, with the stage, the "
            "file and the problem; no cohort number below includes them.</p>" + _table(excluded)
        )
    if planning is not None and not planning.empty:
        out += (
            f"<h2>Planning failures ({len(planning)})</h2><p>Planned patients whose plans or robustness "
            "evaluation failed, with the stage and the problem; they are left out of every statistic over "
            "plans below.</p>" + _table(planning)
        )
    return out


def structures_html(ingest: pd.DataFrame | None) -> str:
    """The report's list of OARs planned without their constraint and of ROI names nothing mapped."""
    if ingest is None:
        return ""
    out = ""
    unconstrained = ingest[ingest.get("oars_unconstrained", pd.Series("", index=ingest.index)).fillna("") != ""]
    if not unconstrained.empty:
        out += (
            f"<h2>WARNING: plans without an OAR constraint ({len(unconstrained)} patients)</h2><p>These "
            "OARs were absent after alias mapping and are listed in planning.optional_oars: the plans of "
            "these patients do not limit their dose.</p>" + _table(unconstrained[["patient_id", "oars_unconstrained"]])
        )
    unmapped = ingest[ingest.get("unmapped_rois", pd.Series("", index=ingest.index)).fillna("") != ""]
    if not unmapped.empty:
        out += (
            "<h2>ROI names not mapped to a structure</h2><p>Add the ones you mean to "
            "ingest.structure_aliases (a suggestion in brackets).</p>"
            + _table(unmapped[["patient_id", "unmapped_rois"]])
        )
    return out


TEST_COLUMNS = ["comparison", "n_pairs", "median_difference", "shapiro_p_difference", "mann_whitney_p", "wilcoxon_p",
                "wilcoxon_method"]  # fmt: skip
STYLE = (
    "<style>body{font-family:sans-serif;margin:1em}table.dp{border-collapse:collapse;font-size:90%}"
    "table.dp td,table.dp th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "table.dp td:first-child{text-align:left}</style>"
)


def estimates_table(ev: dict, fit: dict) -> pd.DataFrame:
    """The TCP model's estimators: parameters with their bootstrap CIs, AUC and Brier score on both sides."""
    return pd.DataFrame(
        [
            {"estimator": k, "alpha (1/Gy)": e["alpha"], "alpha 95% CI": fit["estimates"][k].get("alpha_ci95"),
             "log10 f_c": e["log10_fc"], "log10 f_c 95% CI": fit["estimates"][k].get("log10_fc_ci95"),
             "train AUC": e["train_auc"], "test AUC": e["test_auc"], "train Brier": e["train_brier"],
             "test Brier": e["test_brier"]}
            for k, e in ev["estimates"].items()
        ]
    )  # fmt: skip


def degenerate_html(fit: dict) -> str:
    """The warning block of a TCP model the training data do not identify (or nothing)."""
    if not fit.get("degenerate"):
        return ""
    return (
        "<h2>WARNING: the TCP model is degenerate</h2><p>The training data do not identify it ("
        + "; ".join(fit["warnings"])
        + "). Planning used it anyway: read every TCP below as conditional on it.</p>"
    )


def recovery_html(paths) -> list:
    """Parameter recovery against the synthetic truth (synthetic cohorts only)."""
    if not paths:
        return []
    rec = files.read_json(paths[0])
    rows = [
        {"estimator": k, "parameter": p, "estimate": v["estimate"], "truth": v["truth"], "95% CI": v["ci95"],
         "truth inside CI": v["truth_inside_ci95"]}
        for k, e in rec["estimates"].items()
        for p, v in e.items()
    ]  # fmt: skip
    return ["<h3>Parameter recovery (synthetic truth)</h3>", _table(pd.DataFrame(rows))]


def survival_html(surv: dict, cox: pd.DataFrame) -> list:
    lr = surv["logrank"]
    return [
        "<h2>Survival (local control)</h2>",
        f"<p>{surv['n']} patients ({html.escape(surv['population'])}), {surv['events']} relapses; "
        f"median-split log-rank χ² = {lr['chi2']:.3g} (p = {lr['p']:.3g}); Harrell's C of TCP = "
        f"{surv['concordance_tcp']:.3g}.</p>",
        _table(cox),
    ]


def _optional_tsv(inputs: dict, key: str) -> pd.DataFrame | None:
    return files.read_tsv(inputs[key]) if inputs.get(key) else None


def run(inputs: dict, outputs: dict, *, params: dict) -> pd.DataFrame:
    """``headline`` (TSV) and ``html`` (the report's summary page).

    ``inputs["excluded"]`` (optional): the inclusion stage's ``excluded.tsv``, listed first on the page.
    """
    stats, fit = files.read_json(inputs["statistics"]), files.read_json(inputs["fit"])
    tert = files.read_tsv(inputs["tertiles"])
    head = headline(stats, tert)
    files.write_tsv(head, outputs["headline"])
    t1 = st.table1_wide(files.read_tsv(inputs["table1"]), digits=int(params.get("digits", 1)))
    tests = files.read_tsv(inputs["tests"])
    planning = _optional_tsv(inputs, "planning_failures")
    n_failed = 0 if planning is None else len(planning)
    parts = [
        exclusions_html(_optional_tsv(inputs, "excluded"), planning),
        structures_html(_optional_tsv(inputs, "ingest_summary")),
        degenerate_html(fit),
        "<h2>Held-out cohort against the study</h2>",
        f"<p>n = {stats['n_patients']} held-out patients with plans"
        + (f" ({n_failed} planned patient(s) left out: planning failures above)" if n_failed else "")
        + f"; TCP model fitted on {fit['n_train']} training patients ({fit['model']['estimator']}).</p>",
        _table(head),
        "<h2>Table 1: median [25th–75th percentile]</h2>",
        _table(t1),
        "<h2>TCP: uniform against DE and DR (paired per patient)</h2>",
        _table(tests[tests["metric"] == "tcp_pct"][TEST_COLUMNS]),
        "<h2>TCP per plan and cell-count scenario (%)</h2>",
        _table(files.read_tsv(inputs["tcp_scenarios"])),
        "<h2>ΔTCP by cell-count tertile (pp)</h2>",
        _table(tert),
        "<h2>TCP model</h2>",
        _table(estimates_table(files.read_json(inputs["evaluation"]), fit)),
        *recovery_html(files.as_paths(inputs.get("recovery") or [])),
        *survival_html(files.read_json(inputs["survival"]), files.read_tsv(inputs["cox"])),
    ]
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'>{STYLE}</head><body>{''.join(parts)}</body></html>"
    files.write_text(page, outputs["html"])
    return head
