"""Held-out cohort statistics: Table 1 (median [IQR]), normality and plan-comparison tests.

Pure functions on tables whose rows are (patient, plan). Tests come from scipy.stats (Shapiro–Wilk,
Mann–Whitney U, Wilcoxon signed-rank); the Holm step-down correction from statsmodels
(``multipletests``). Nothing here reads files.

The study compared plans with the Mann–Whitney U test, which treats the plans of one patient as
independent samples; they are paired (same patient, same anatomy), so the paired Wilcoxon signed-rank
test is reported beside it. Holm's correction runs across the metrics of one comparison (one family
per pair of plans and per test).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

TABLE1_REGIONS = ("GTV", "CTV_HD_minus_GTV", "CTV_LD_minus_GTV")
TABLE1_DOSE = ("D95", "D50", "D1", "Dmean")
TABLE1_LET = ("L98", "L50", "L1")
REGION_LABELS = {"GTV": "GTV", "CTV_HD_minus_GTV": "CTV_HD − GTV", "CTV_LD_minus_GTV": "CTV_LD − GTV"}


def median_iqr(values) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile (linear interpolation) of the finite values (docs/method.md §6).

    Parameters
    ----------
    values : array_like
        Any shape; non-finite values are ignored.

    Returns
    -------
    (float, float, float)
        Median, 25th and 75th percentile; NaNs if there is no finite value.

    Examples
    --------
    >>> median_iqr([1, 2, 3, 4])
    (2.5, 1.75, 3.25)
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    q25, med, q75 = np.percentile(v, [25.0, 50.0, 75.0])
    return float(med), float(q25), float(q75)


def format_median_iqr(med: float, q25: float, q75: float, *, digits: int = 1) -> str:
    """Median [IQR] as the cohort tables print it.

    Parameters
    ----------
    med, q25, q75 : float
        From :func:`median_iqr`.
    digits : int
        Decimals.

    Returns
    -------
    str
        ``"median [q25–q75]"``; ``"–"`` when the median is missing.

    Examples
    --------
    >>> format_median_iqr(73.6, 72.94, 74.1)
    '73.6 [72.9–74.1]'
    """
    if not np.isfinite(med):
        return "–"
    return f"{med:.{digits}f} [{q25:.{digits}f}–{q75:.{digits}f}]"


def table1(
    metrics: pd.DataFrame, *, plans, regions=TABLE1_REGIONS, dose_metrics=TABLE1_DOSE, let_metrics=TABLE1_LET
) -> pd.DataFrame:
    """Table 1 of the study: median [25th–75th percentile] over patients, per region, metric and plan.

    Parameters
    ----------
    metrics : DataFrame
        One row per (patient_id, plan) with columns ``{region}_{metric}`` (D in Gy(RBE), L in keV/µm).
    plans : sequence of str
        Plans to tabulate, in column order.

    Returns
    -------
    DataFrame
        Long form: region, metric, unit, plan, n, median, q25, q75.
    """
    rows = []
    for region in regions:
        for metric in (*dose_metrics, *let_metrics):
            col = f"{region}_{metric}"
            unit = "keV/µm" if metric.startswith("L") else "Gy(RBE)"
            for plan in plans:
                v = metrics.loc[metrics["plan"] == plan, col] if col in metrics else pd.Series(dtype=float)
                v = v.to_numpy(float)
                med, q25, q75 = median_iqr(v)
                rows.append(
                    {
                        "region": region,
                        "metric": metric,
                        "unit": unit,
                        "plan": plan,
                        "n": int(np.isfinite(v).sum()),
                        "median": med,
                        "q25": q25,
                        "q75": q75,
                    }
                )
    return pd.DataFrame(rows)


def table1_wide(long: pd.DataFrame, *, digits: int = 1) -> pd.DataFrame:
    """Table 1 as printed: one row per (region, metric), one ``median [IQR]`` column per plan.

    Parameters
    ----------
    long : DataFrame
        From :func:`table1`.
    digits : int
        Decimals of the cells.

    Returns
    -------
    DataFrame
        Columns region, metric, unit and one per plan.
    """
    long = long.assign(
        cell=[format_median_iqr(m, a, b, digits=digits) for m, a, b in zip(long["median"], long["q25"], long["q75"])]
    )
    plans = list(dict.fromkeys(long["plan"]))
    wide = long.pivot_table(
        index=["region", "metric", "unit"], columns="plan", values="cell", aggfunc="first", sort=False
    )
    wide = wide[plans].reset_index()
    wide["region"] = wide["region"].map(lambda r: REGION_LABELS.get(r, r))
    wide.columns.name = None
    return wide


def to_markdown(wide: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' ``to_markdown`` needs tabulate, which we do not ship).

    Parameters
    ----------
    wide : DataFrame
        Any table (e.g. :func:`table1_wide`).

    Returns
    -------
    str
        The table, one line per row, ending in a newline.
    """
    cols = list(wide.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _latex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("−", "$-$"),
        ("–", "--"),
        ("µ", r"$\mu$"),
    ):
        s = s.replace(a, b)
    return s


def to_latex(wide: pd.DataFrame, *, caption: str, label: str) -> str:
    r"""A booktabs LaTeX table (written by hand: pandas' ``to_latex`` needs jinja2 styling and escapes
    neither the minus sign nor µ).

    Parameters
    ----------
    wide : DataFrame
        Any table (e.g. :func:`table1_wide`).
    caption, label : str
        The table's caption and ``\label``.

    Returns
    -------
    str
        A ``table`` environment.
    """
    cols = list(wide.columns)
    out = [
        r"\begin{table}",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{" + "l" * 3 + "c" * (len(cols) - 3) + "}",
        r"\toprule",
        " & ".join(_latex_escape(str(c)) for c in cols) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(_latex_escape(str(v)) for v in row) + r" \\" for row in wide.itertuples(index=False)]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def paired(metrics: pd.DataFrame, column: str, plan_a: str, plan_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``column`` for the patients that have both plans (finite in both), aligned by patient.

    Parameters
    ----------
    metrics : DataFrame
        One row per (patient_id, plan).
    column : str
        The metric.
    plan_a, plan_b : str
        The two plans.

    Returns
    -------
    a, b : ndarray, (n_pairs,)
        The metric of each plan, patient by patient.
    """
    a = metrics.loc[metrics["plan"] == plan_a].set_index("patient_id")[column]
    b = metrics.loc[metrics["plan"] == plan_b].set_index("patient_id")[column]
    both = a.index.intersection(b.index)
    a, b = a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def shapiro(values) -> tuple[float, float]:
    """Shapiro–Wilk test of normality of the finite values (scipy).

    Parameters
    ----------
    values : array_like
        Any shape.

    Returns
    -------
    (float, float)
        W and p; (NaN, NaN) below 3 values or for constant data.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 3 or np.ptp(v) == 0:
        return float("nan"), float("nan")
    r = stats.shapiro(v)
    return float(r.statistic), float(r.pvalue)


def wilcoxon_paired(a, b) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test of b − a (scipy; docs/method.md §6).

    scipy chooses the exact null distribution for small samples without ties or zeros and the normal
    approximation otherwise; the method used is returned. All-zero differences give p = 1.

    Parameters
    ----------
    a, b : array_like, (n,)
        Paired values.

    Returns
    -------
    (float, float, str)
        Statistic, p and the method ("exact", "normal approximation", "all differences zero", or
        "none" for fewer than one pair).
    """
    d = np.asarray(b, float) - np.asarray(a, float)
    if d.size == 0:
        return float("nan"), float("nan"), "none"
    if np.all(d == 0):
        return 0.0, 1.0, "all differences zero"
    exact = d.size <= 50 and np.all(d != 0) and np.unique(np.abs(d)).size == d.size
    r = stats.wilcoxon(d, alternative="two-sided", method="exact" if exact else "approx")
    return float(r.statistic), float(r.pvalue), "exact" if exact else "normal approximation"


def mann_whitney(a, b) -> tuple[float, float]:
    """Two-sided Mann–Whitney U test of two independent samples (the study's test; scipy).

    Parameters
    ----------
    a, b : array_like
        The two samples; non-finite values are ignored.

    Returns
    -------
    (float, float)
        U of ``a`` and p; NaNs when a sample is empty.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    r = stats.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    return float(r.statistic), float(r.pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels); NaNs pass through untouched.

    Parameters
    ----------
    pvalues : array_like, (m,)
        Raw p-values.

    Returns
    -------
    ndarray, (m,)
        Adjusted p-values.

    Examples
    --------
    >>> holm([0.01, float("nan"), 0.04]).tolist()
    [0.02, nan, 0.04]
    """
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def compare_plans(metrics: pd.DataFrame, *, columns, comparisons) -> pd.DataFrame:
    """Shapiro–Wilk of each plan's values and of the paired differences, Mann–Whitney U and the paired
    Wilcoxon signed-rank test for each (reference, other) pair, Holm-corrected across ``columns``.

    Parameters
    ----------
    metrics : DataFrame
        One row per (patient_id, plan), a column per metric.
    columns : sequence of str
        Metrics to compare.
    comparisons : sequence of (str, str)
        (reference, other) plan pairs.

    Returns
    -------
    DataFrame
        One row per (comparison, column): n, medians, median difference, Shapiro p of each plan and of
        the differences, U and p (Mann–Whitney), W and p (Wilcoxon, with its method), Holm-adjusted p
        of both.
    """
    rows = []
    for ref, other in comparisons:
        for col in columns:
            a, b = paired(metrics, col, ref, other)
            u, p_mw = mann_whitney(a, b)
            w, p_w, method = wilcoxon_paired(a, b)
            rows.append(
                {
                    "comparison": f"{other} vs {ref}",
                    "reference": ref,
                    "plan": other,
                    "metric": col,
                    "n_pairs": int(a.size),
                    "median_reference": float(np.median(a)) if a.size else np.nan,
                    "median_plan": float(np.median(b)) if b.size else np.nan,
                    "median_difference": float(np.median(b - a)) if a.size else np.nan,
                    "shapiro_p_reference": shapiro(a)[1],
                    "shapiro_p_plan": shapiro(b)[1],
                    "shapiro_p_difference": shapiro(b - a)[1],
                    "mann_whitney_u": u,
                    "mann_whitney_p": p_mw,
                    "wilcoxon_w": w,
                    "wilcoxon_p": p_w,
                    "wilcoxon_method": method,
                }
            )
    table = pd.DataFrame(rows)
    for test in ("mann_whitney", "wilcoxon"):
        table[f"{test}_p_holm"] = np.nan
        for _, idx in table.groupby("comparison", sort=False).groups.items():
            table.loc[idx, f"{test}_p_holm"] = holm(table.loc[idx, f"{test}_p"].to_numpy())
    return table


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample SD of the finite values.

    Parameters
    ----------
    values : array_like
        Any shape.

    Returns
    -------
    (float, float)
        Mean and SD (ddof 1); NaN SD for one value, NaN mean for none.

    Examples
    --------
    >>> mean_sd([1.0, 2.0, 3.0])
    (2.0, 1.0)
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def tcp_by_scenario(tcp: pd.DataFrame, *, reference: str = "uniform") -> pd.DataFrame:
    """Mean ± SD TCP (%) per plan and cell-count scenario, and the paired Wilcoxon test of each other
    plan against ``reference`` within each scenario (docs/method.md §6).

    Parameters
    ----------
    tcp : DataFrame
        Columns patient_id, plan, cell_count (nominal / best / worst), tcp (0–1).
    reference : str
        The plan the others are compared with.

    Returns
    -------
    DataFrame
        One row per (cell_count, plan): n_patients, tcp_mean_pct, tcp_sd_pct and, for the other plans,
        the mean and SD of the difference (pp), n_improved, Wilcoxon and Mann–Whitney p.
    """
    rows = []
    for scen, g in tcp.groupby("cell_count", sort=False):
        wide = g.pivot(index="patient_id", columns="plan", values="tcp")
        order = [reference] + [p for p in ("de", "dr") if p != reference]
        wide = wide[[p for p in order if p in wide] + [p for p in wide.columns if p not in order]]
        for plan in wide.columns:
            m, s = mean_sd(100.0 * wide[plan])
            row = {
                "cell_count": scen,
                "plan": plan,
                "n_patients": int(wide[plan].notna().sum()),
                "tcp_mean_pct": m,
                "tcp_sd_pct": s,
            }
            if plan != reference and reference in wide:
                d = 100.0 * (wide[plan] - wide[reference]).dropna()
                row["delta_vs_reference_mean_pp"], row["delta_vs_reference_sd_pp"] = mean_sd(d)
                row["n_improved"] = int((d > 0).sum())
                _, p, method = wilcoxon_paired(wide[reference].loc[d.index], wide[plan].loc[d.index])
                row["wilcoxon_p_vs_reference"], row["wilcoxon_method"] = p, method
                row["mann_whitney_p_vs_reference"] = mann_whitney(wide[reference].dropna(), wide[plan].dropna())[1]
            rows.append(row)
    return pd.DataFrame(rows)


def tertile_summary(tertiles: pd.DataFrame, *, value: str = "delta_tcp_subvolume_pp") -> pd.DataFrame:
    """Mean ± SD over patients of ΔTCP (pp) per plan and cell-count tertile, and the paired Wilcoxon test
    of high against low (docs/method.md §3, §6).

    Parameters
    ----------
    tertiles : DataFrame
        Columns patient_id, plan, tertile (low / medium / high) and ``value``.
    value : str
        The ΔTCP column, pp.

    Returns
    -------
    DataFrame
        One row per (plan, tertile): n_patients, delta_tcp_mean_pp, delta_tcp_sd_pp; and one per plan
        for high − low with its Wilcoxon p.
    """
    rows = []
    for plan, g in tertiles.groupby("plan", sort=False):
        wide = g.pivot(index="patient_id", columns="tertile", values=value)
        for label in ("low", "medium", "high"):
            if label in wide:
                m, s = mean_sd(wide[label])
                rows.append(
                    {
                        "plan": plan,
                        "tertile": label,
                        "n_patients": int(wide[label].notna().sum()),
                        "delta_tcp_mean_pp": m,
                        "delta_tcp_sd_pp": s,
                    }
                )
        if {"low", "high"} <= set(wide.columns):
            both = wide[["low", "high"]].dropna()
            _, p, method = wilcoxon_paired(both["low"], both["high"])
            d = both["high"] - both["low"]
            m, s = mean_sd(d)
            rows.append(
                {
                    "plan": plan,
                    "tertile": "high − low",
                    "n_patients": int(d.size),
                    "delta_tcp_mean_pp": m,
                    "delta_tcp_sd_pp": s,
                    "wilcoxon_p": p,
                    "wilcoxon_method": method,
                }
            )
    return pd.DataFrame(rows)
