"""Held-out cohort stages: TCP of the delivered plans, Table 1 and tests, survival, parameter recovery.

Leakage guard, as in the TCP fit: the rules expand their per-patient inputs over the test split only;
every stage here checks each patient it reads against ``cohort/split.tsv`` (must be ``test``) and
against the IDs the fit used (must not be among them), and refuses anything else. The one exception is
``run_recovery`` (synthetic cohort only), a validation against the generator's truth that reads the
fit's own training table on purpose and labels every row with its split.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .. import statistics as st
from .. import survival as sv
from .. import tcp_fit as tf
from ..errors import DosepaintInputError
from ..io import files
from ..layout import PLAN_NAMES
from ..planning import evaluate as ev
from .tcp_fit import patient_doses

log = logging.getLogger(__name__)


def check_heldout(pids, *, split_path, fit: dict | None = None) -> pd.DataFrame:
    """Refuse any patient that is not ``test`` in the split or that the TCP fit used; returns the split
    table indexed by patient_id.
    """
    split = files.read_tsv(split_path).set_index("patient_id")
    used = set(fit["train_ids"]) if fit is not None else set()
    for pid in pids:
        if pid not in split.index or split.loc[pid, "split"] != "test":
            raise DosepaintInputError(
                "held-out statistics read test patients only; this one is not in the test split",
                patient=pid,
                path=split_path,
            )
        if pid in used:
            raise DosepaintInputError(
                "held-out statistics read patients the TCP fit did not use; the fit used this one",
                patient=pid,
                path=split_path,
            )
    return split


def _sheet_times(sheet_path) -> pd.Series:
    sheet = files.read_tsv(sheet_path)
    sheet["patient_id"] = sheet["patient_id"].astype(str)
    return sheet.set_index("patient_id")["time_months"].astype(float)


def run_tcp(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """TCP of each held-out patient's delivered plan (RTDOSE) under the fitted model, and the model's
    discrimination and calibration on them (AUC, Brier score) beside the training values.

    Inputs: ``fit`` (cohort/tcp_fit.json), ``split``, ``sheet`` (follow-up times), and per test patient
    (in the order of ``params["patient_ids"]``) ``rtdose``, ``cell_density`` and ``masks_dose``.
    Outputs: ``patients`` (cohort/tcp_heldout.tsv) and ``evaluation`` (cohort/tcp_evaluation.json).
    """
    ids = list(params["patient_ids"])
    fit = files.read_json(inputs["fit"])
    split = check_heldout(ids, split_path=inputs["split"], fit=fit)
    times = _sheet_times(inputs["sheet"])
    model = fit["model"]
    patients, table = patient_doses(
        ids,
        inputs,
        split,
        alpha_beta=float(model["alpha_beta"]),
        n_fractions=int(model["n_fractions_delivered"]),
        bin_gy=float(fit["bin_gy"]),
    )
    table.insert(1, "split", "test")
    table.insert(4, "time_months", table["patient_id"].map(times).astype(float))
    y = table["local_control"].to_numpy(float)
    evaluation = {
        "test_ids": ids,
        "n_test": len(ids),
        "n_local_control": int(y.sum()),
        "estimator_used": model["estimator"],
        "estimates": {},
    }
    for est, e in fit["estimates"].items():
        pred = tf.predict(patients, alpha=e["alpha"], log10_fc=e["log10_fc"])
        table[f"tcp_{est}"] = pred
        evaluation["estimates"][est] = {
            "alpha": e["alpha"],
            "log10_fc": e["log10_fc"],
            "train_auc": e["train_auc"],
            "train_brier": e["train_brier"],
            "test_auc": tf.auc(pred, y),
            "test_brier": tf.brier(pred, y),
            "test_mean_tcp": float(pred.mean()),
            "test_local_control_rate": float(y.mean()),
        }
        log.info(
            "%s on %d held-out patients: AUC %.3f, Brier %.3f (train %.3f, %.3f)",
            est,
            len(ids),
            evaluation["estimates"][est]["test_auc"],
            evaluation["estimates"][est]["test_brier"],
            e["train_auc"],
            e["train_brier"],
        )
    table["tcp"] = table[f"tcp_{model['estimator']}"]
    table["clonogens"] = table["gtv_cells"] * model["clonogenic_fraction"]
    files.write_tsv(table, outputs["patients"])
    files.write_json(evaluation, outputs["evaluation"])
    return evaluation


def run_recovery(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Synthetic cohort only: the fitted parameters against the generator's truth (is the truth inside
    the bootstrap 95 % CI?) and each patient's predicted TCP against its true TCP.

    Inputs: ``fit``, ``train`` (cohort/tcp_fit_patients.tsv), ``test`` (cohort/tcp_heldout.tsv),
    ``truth`` (the generator's truth folders, ``truth.json`` in each, any order).
    Outputs: ``recovery`` (JSON) and ``patients`` (TSV: patient, split, predicted and true TCP).
    """
    fit = files.read_json(inputs["fit"])
    truth = {}
    for folder in files.as_paths(inputs["truth"]):
        t = files.read_json(f"{folder}/truth.json")
        truth[t["patient_id"]] = t["model"]
    models = {(m["alpha"], m["alpha_beta"], m["clonogenic_fraction"]) for m in truth.values()}
    if len(models) != 1:
        raise ValueError(f"the synthetic patients were generated with {len(models)} different TCP models")
    alpha, alpha_beta, fc = models.pop()
    true = {"alpha": alpha, "alpha_beta": alpha_beta, "log10_fc": float(np.log10(fc))}
    if abs(alpha_beta - fit["model"]["alpha_beta"]) > 1e-9:
        log.warning("the fit fixed alpha/beta = %g Gy; the truth is %g Gy", fit["model"]["alpha_beta"], alpha_beta)
    out = {"truth": true, "alpha_beta_fixed_in_fit": fit["model"]["alpha_beta"], "estimates": {}}
    for est, e in fit["estimates"].items():
        row = {}
        for k in ("alpha", "log10_fc"):
            ci = e.get(f"{k}_ci95")
            row[k] = {
                "estimate": e[k],
                "truth": true[k],
                "error": e[k] - true[k],
                "ci95": ci,
                "truth_inside_ci95": None if ci is None else bool(ci[0] <= true[k] <= ci[1]),
            }
        # the quantity a small cohort pins down: the dose of 50 % TCP for the median training GTV
        out["estimates"][est] = row
    tables = []
    for split_name, key in (("train", "train"), ("test", "test")):
        t = files.read_tsv(inputs[key])
        est = fit["model"]["estimator"]
        tables.append(
            pd.DataFrame(
                {
                    "patient_id": t["patient_id"],
                    "split": split_name,
                    "local_control": t["local_control"],
                    "tcp_predicted": t[f"tcp_{est}"],
                    "tcp_true": [truth.get(p, {}).get("tcp", np.nan) for p in t["patient_id"]],
                }
            )
        )
    pts = pd.concat(tables, ignore_index=True)
    for s, g in pts.groupby("split"):
        d = g["tcp_predicted"] - g["tcp_true"]
        out[f"{s}_tcp_error"] = {
            "mean": float(d.mean()),
            "mean_abs": float(d.abs().mean()),
            "correlation": float(np.corrcoef(g["tcp_predicted"], g["tcp_true"])[0, 1]) if len(g) > 2 else None,
            "mean_true_tcp": float(g["tcp_true"].mean()),
            "local_control_rate": float(g["local_control"].mean()),
        }
    files.write_tsv(pts, outputs["patients"])
    files.write_json(out, outputs["recovery"])
    return out


def _table1_metrics(pid, plan, dose_path, letd_path, masks) -> dict:
    """Table 1's DVH and LETd metrics of one plan; LETd metrics of a region are NaN unless LETd was
    computed on (almost) all of it (carbon LETd is computed on GTV ∪ CTV_HD only).
    """
    dose, _ = files.read_array(dose_path)
    letd, _ = files.read_array(letd_path)
    row = {"patient_id": pid, "plan": plan}
    for region in st.TABLE1_REGIONS:
        m = masks[region]
        row.update({f"{region}_{k}": v for k, v in ev.dvh_metrics(dose, m).items()})
        covered = float(np.isfinite(letd[m]).mean()) if m.any() else 0.0
        row[f"{region}_let_coverage"] = covered
        lets = ev.dvh_metrics(letd, m, prefix="L")
        row.update({f"{region}_{k}": (v if covered >= 0.99 else np.nan) for k, v in lets.items()})
    return row


def _table1_rows(inputs: dict, ids: list, plan_metrics: pd.DataFrame) -> pd.DataFrame:
    """Per patient and plan, the Table 1 dose and LETd metrics and the TCP (%)."""
    rows = []
    per_plan = {plan: files.as_paths(inputs[f"{plan}_dose"]) for plan in PLAN_NAMES}
    per_plan_let = {plan: files.as_paths(inputs[f"{plan}_letd"]) for plan in PLAN_NAMES}
    for k, (pid, mdir) in enumerate(zip(ids, files.as_paths(inputs["masks_dose"]))):
        masks, _ = files.read_masks(mdir, list(st.TABLE1_REGIONS), pid=pid, needed_by="Table 1")
        for plan in PLAN_NAMES:
            rows.append(_table1_metrics(pid, plan, per_plan[plan][k], per_plan_let[plan][k], masks))
    t1 = pd.DataFrame(rows).merge(plan_metrics[["patient_id", "plan", "tcp"]], on=["patient_id", "plan"], how="left")
    t1["tcp_pct"] = 100.0 * t1["tcp"]
    return t1


def _write_table1(t1: pd.DataFrame, outputs: dict, *, n: int, digits: int) -> None:
    long = st.table1(t1, plans=PLAN_NAMES)
    wide = st.table1_wide(long, digits=digits)
    files.write_tsv(long, outputs["table1"])
    caption = f"Dose and LETd of the {n} held-out patients: median [25th–75th percentile]; D in Gy(RBE), L in keV/µm"
    files.write_text(st.to_markdown(wide), outputs["table1_md"])
    files.write_text(st.to_latex(wide, caption=caption, label="tab:dosimetry"), outputs["table1_tex"])


def _plan_tcp(r, cc: pd.DataFrame, plan: str) -> tuple[dict, dict | None]:
    """A plan's nominal TCP (and, for DE and DR, its difference from the uniform plan) and its range
    under the cell-count scenarios.
    """
    tcp = {"mean": r["tcp_mean_pct"], "sd": r["tcp_sd_pct"]}
    if plan != "uniform":
        tcp |= {"delta_mean_pp": r["delta_vs_reference_mean_pp"], "delta_sd_pp": r["delta_vs_reference_sd_pp"],
                "n_improved": int(r["n_improved"]), "wilcoxon_p": r["wilcoxon_p_vs_reference"],
                "mann_whitney_p": r["mann_whitney_p_vs_reference"]}  # fmt: skip
    w = cc[cc["plan"] == plan].pivot(index="patient_id", columns="cell_count", values="tcp")
    if not {"best", "worst", "nominal"} <= set(w.columns):
        return tcp, None
    spread = {
        "worst_minus_nominal_mean": float(100 * (w["worst"] - w["nominal"]).mean()),
        "best_minus_nominal_mean": float(100 * (w["best"] - w["nominal"]).mean()),
        "worst_minus_nominal_min": float(100 * (w["worst"] - w["nominal"]).min()),
        "best_minus_nominal_max": float(100 * (w["best"] - w["nominal"]).max()),
    }
    if {"posterior_lo", "posterior_hi"} <= set(w.columns):  # the credible interval's ends (more cells: lower TCP)
        spread["posterior_hi_minus_nominal_mean"] = float(100 * (w["posterior_hi"] - w["nominal"]).mean())
        spread["posterior_lo_minus_nominal_mean"] = float(100 * (w["posterior_lo"] - w["nominal"]).mean())
    return tcp, spread


def _headline(ids: list, scen: pd.DataFrame, cc: pd.DataFrame, tert: pd.DataFrame) -> dict:
    nominal = scen[scen["cell_count"] == "nominal"].set_index("plan")
    summary: dict[str, Any] = {"patient_ids": ids, "n_patients": len(ids), "tcp_pct": {}, "cell_count_range_pp": {}}
    for plan in PLAN_NAMES:
        tcp, spread = _plan_tcp(nominal.loc[plan], cc, plan)
        summary["tcp_pct"][plan] = tcp
        if spread is not None:
            summary["cell_count_range_pp"][plan] = spread
    summary["tertiles"] = {
        f"{r.plan} {r.tertile}": {"mean_pp": r.delta_tcp_mean_pp, "sd_pp": r.delta_tcp_sd_pp} for r in tert.itertuples()
    }
    return summary


def run_statistics(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Table 1 (TSV, Markdown, LaTeX), plan comparison tests, TCP per plan and cell-count scenario, ΔTCP
    by cell-count tertile, on the held-out patients only.

    Inputs: ``split``; per test patient (order of ``params["patient_ids"]``): ``metrics`` (plans/metrics.tsv),
    ``masks_dose`` and ``{plan}_dose`` / ``{plan}_letd`` for plan in uniform, de, dr; cohort tables
    ``cell_count_tcp`` and ``tertiles`` (robustness_summary, over the same patients).
    Outputs: table1 (TSV long form), table1_md, table1_tex, tests (TSV), tcp_scenarios (TSV),
    tertiles (TSV), summary (JSON of the headline numbers).
    """
    ids = list(params["patient_ids"])
    plan_metrics = pd.concat([files.read_tsv(p) for p in files.as_paths(inputs["metrics"])], ignore_index=True)
    cc = files.read_tsv(inputs["cell_count_tcp"])
    tert_in = files.read_tsv(inputs["tertiles"])
    # every patient of every table read here, checked against the split once
    check_heldout(
        list(dict.fromkeys([*ids, *plan_metrics["patient_id"], *cc["patient_id"], *tert_in["patient_id"]])),
        split_path=inputs["split"],
    )
    t1 = _table1_rows(inputs, ids, plan_metrics)
    _write_table1(t1, outputs, n=len(ids), digits=int(params.get("digits", 1)))
    columns = [f"{r}_{m}" for r in st.TABLE1_REGIONS for m in (*st.TABLE1_DOSE, *st.TABLE1_LET)] + ["tcp_pct"]
    tests = st.compare_plans(t1, columns=columns, comparisons=[("uniform", "de"), ("uniform", "dr"), ("dr", "de")])
    files.write_tsv(tests, outputs["tests"])
    scen = st.tcp_by_scenario(cc)
    files.write_tsv(scen, outputs["tcp_scenarios"])
    tert = st.tertile_summary(tert_in)
    files.write_tsv(tert, outputs["tertiles"])
    summary = _headline(ids, scen, cc, tert)
    files.write_json(summary, outputs["summary"])
    return summary


def run_survival(inputs: dict, outputs: dict, *, params: dict) -> dict:
    """Kaplan–Meier of local control split by predicted TCP (median split or a fixed threshold), log-rank
    test, Cox proportional hazards and Harrell's C (lifelines).

    ``params``: population (``test``: the held-out patients; ``all``: also the training patients, whose
    TCP is then in-sample, labelled so), split (``median`` or a TCP in [0, 1]), covariates (columns of
    the TCP tables: tcp, gtv_cc, gtv_cell_density_mean), penalizer.
    Inputs: ``split``, ``sheet``, ``test`` (cohort/tcp_heldout.tsv) and, for ``all``, ``train``
    (cohort/tcp_fit_patients.tsv) and ``fit``.
    Outputs: ``km`` (TSV of the curves), ``cox`` (TSV), ``tests`` (JSON).
    """
    test = files.read_tsv(inputs["test"])
    check_heldout(test["patient_id"], split_path=inputs["split"])
    table = test.assign(split="test")
    if params["population"] == "all":
        fit = files.read_json(inputs["fit"])
        train = files.read_tsv(inputs["train"])
        train = train.assign(split="train", tcp=train[f"tcp_{fit['model']['estimator']}"])
        table = pd.concat([table, train], ignore_index=True)
    times = _sheet_times(inputs["sheet"])
    table["time_months"] = table["patient_id"].map(times).astype(float)
    missing = table.loc[~np.isfinite(table["time_months"]), "patient_id"].tolist()
    if missing:
        raise DosepaintInputError(f"no follow-up time (time_months) for {', '.join(missing)}", path=inputs["sheet"])
    groups, threshold = sv.split_groups(table["tcp"], threshold=params["split"])
    table["tcp_group"] = groups
    km = sv.kaplan_meier(table["time_months"], table["event"], groups)
    lr = sv.logrank(table["time_months"], table["event"], groups)
    # TCP enters the Cox model per 10 percentage points, so that its hazard ratio reads on a clinical scale
    table["tcp_per_10pp"] = 10.0 * table["tcp"]
    covariates = ["tcp_per_10pp" if c == "tcp" else c for c in params["covariates"]]
    cox = sv.cox(
        table, duration="time_months", event="event", covariates=covariates, penalizer=float(params["penalizer"])
    )
    c_tcp = sv.concordance(table["time_months"], table["tcp"], table["event"])
    out = {
        "population": params["population"],
        "n": int(len(table)),
        "events": int(table["event"].sum()),
        "patients": table[["patient_id", "split", "tcp", "tcp_group", "time_months", "event"]].to_dict(
            orient="records"
        ),
        "split": params["split"],
        "tcp_threshold": threshold,
        "logrank": lr,
        "concordance_tcp": c_tcp,
        "cox": {k: v for k, v in cox.items() if k != "summary"},
    }
    if params["population"] == "all":
        out["note"] = "training patients' TCP is in-sample (the model was fitted on their outcomes)"
    log.info(
        "survival on %d patients (%d relapses): log-rank chi2 %.3f p %.3f, C(TCP) %.3f",
        out["n"],
        out["events"],
        lr["chi2"],
        lr["p"],
        c_tcp,
    )
    files.write_tsv(km, outputs["km"])
    summary = cox.get("summary")
    files.write_tsv(summary if summary is not None else pd.DataFrame({"covariate": covariates}), outputs["cox"])
    files.write_json(out, outputs["tests"])
    return out
