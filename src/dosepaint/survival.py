"""Survival statistics of local control (lifelines): Kaplan–Meier, log-rank, Cox, concordance.

Time is in months from the start of treatment; ``event`` is 1 for a local relapse, 0 for local control
at last follow-up (censored). A higher predicted TCP should mean a longer relapse-free time, so the
concordance index is computed with TCP as the score (lifelines' convention: higher score, longer time).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import concordance_index


def split_groups(score, *, threshold: float | str = "median") -> tuple[np.ndarray, float]:
    """Two groups by ``score``: ``"high"`` at or above the threshold, else ``"low"`` (docs/method.md §6).

    Parameters
    ----------
    score : array_like, (n,)
        Predicted TCP per patient.
    threshold : "median" or float
        The median of ``score`` (ties go high), or a fixed value.

    Returns
    -------
    groups : ndarray of str, (n,)
        ``"high"`` or ``"low"``.
    threshold : float
        The threshold used.

    Examples
    --------
    >>> split_groups([0.2, 0.5, 0.9])
    (array(['low', 'high', 'high'], dtype='<U4'), 0.5)
    """
    s = np.asarray(score, float)
    t = float(np.median(s)) if threshold == "median" else float(threshold)
    return np.where(s >= t, "high", "low"), t


def kaplan_meier(time, event, groups) -> pd.DataFrame:
    """Kaplan–Meier curves of local control per group (lifelines; docs/method.md §6).

    Parameters
    ----------
    time : array_like, (n,)
        Time to relapse or last follow-up, months.
    event : array_like, (n,)
        1 = relapse, 0 = censored.
    groups : array_like, (n,)
        Group labels.

    Returns
    -------
    DataFrame
        Columns group, time, survival, ci_lower, ci_upper (95 %, lifelines' exponential Greenwood),
        at_risk, events.
    """
    time, event, groups = np.asarray(time, float), np.asarray(event, int), np.asarray(groups)
    frames = []
    for g in pd.unique(groups):
        sel = groups == g
        km = KaplanMeierFitter().fit(time[sel], event[sel], label=str(g))
        sf = km.survival_function_.iloc[:, 0]
        ci = km.confidence_interval_survival_function_
        table = km.event_table
        frames.append(
            pd.DataFrame(
                {
                    "group": str(g),
                    "time": sf.index.to_numpy(float),
                    "survival": sf.to_numpy(float),
                    "ci_lower": ci.iloc[:, 0].to_numpy(float),
                    "ci_upper": ci.iloc[:, 1].to_numpy(float),
                    "at_risk": table["at_risk"].reindex(sf.index).to_numpy(float),
                    "events": table["observed"].reindex(sf.index).to_numpy(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logrank(time, event, groups) -> dict:
    """Log-rank test between the groups (lifelines; docs/method.md §6).

    Parameters
    ----------
    time : array_like, (n,)
        Months.
    event : array_like, (n,)
        1 = relapse.
    groups : array_like, (n,)
        Group labels (two or more; one group gives NaN).

    Returns
    -------
    dict
        ``chi2``, ``df`` and ``p``.
    """
    time, event, groups = np.asarray(time, float), np.asarray(event, int), np.asarray(groups)
    labels = pd.unique(groups)
    if labels.size < 2 or not event.any():
        return {"chi2": float("nan"), "df": 0, "p": float("nan")}
    if labels.size == 2:
        a, b = groups == labels[0], groups == labels[1]
        r = logrank_test(time[a], time[b], event_observed_A=event[a], event_observed_B=event[b])
        df = 1
    else:
        r = multivariate_logrank_test(time, groups, event)
        df = int(labels.size - 1)
    return {"chi2": float(r.test_statistic), "df": df, "p": float(r.p_value)}


def cox(table: pd.DataFrame, *, duration: str, event: str, covariates, penalizer: float = 0.0) -> dict:
    """Cox proportional-hazards fit (lifelines, Efron ties) of ``duration``/``event`` on ``covariates``.

    Without any relapse there is nothing to fit (``converged`` False, with a message).

    Parameters
    ----------
    table : DataFrame
        One row per patient.
    duration : str
        Column of the times, months.
    event : str
        Column of the events (1 = relapse).
    covariates : sequence of str
        Columns of the covariates.
    penalizer : float
        lifelines' L2 penalizer (0: none).

    Returns
    -------
    dict
        ``summary`` (DataFrame: covariate, coef, exp(coef), se, z, p, 95 % CI of the hazard ratio),
        ``concordance`` (Harrell's C of the fitted partial hazard), ``log_likelihood_ratio`` (χ², df, p),
        ``converged`` and, when lifelines could not fit (e.g. complete separation in a small cohort),
        ``message``.
    """
    covariates = list(covariates)
    data = table[[duration, event, *covariates]].astype(float)
    out = {"covariates": covariates, "n": int(len(data)), "events": int(data[event].sum()), "penalizer": penalizer}
    if out["events"] == 0:
        return {**out, "converged": False, "message": "no relapse: nothing to fit"}
    cph = CoxPHFitter(penalizer=penalizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            cph.fit(data, duration_col=duration, event_col=event)
        except (ConvergenceError, np.linalg.LinAlgError, ValueError) as err:
            return {**out, "converged": False, "message": str(err).splitlines()[0]}
    conv = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, ConvergenceWarning)]
    s = cph.summary
    summary = pd.DataFrame(
        {
            "covariate": s.index,
            "coef": s["coef"].to_numpy(),
            "hazard_ratio": s["exp(coef)"].to_numpy(),
            "se": s["se(coef)"].to_numpy(),
            "z": s["z"].to_numpy(),
            "p": s["p"].to_numpy(),
            "hazard_ratio_ci95_lower": s["exp(coef) lower 95%"].to_numpy(),
            "hazard_ratio_ci95_upper": s["exp(coef) upper 95%"].to_numpy(),
        }
    )
    lr = cph.log_likelihood_ratio_test()
    out.update(
        summary=summary,
        concordance=float(cph.concordance_index_),
        converged=not conv,
        log_likelihood_ratio={"chi2": float(lr.test_statistic), "df": int(lr.degrees_freedom), "p": float(lr.p_value)},
    )
    if conv:
        out["message"] = "; ".join(conv)
    return out


def concordance(time, score, event) -> float:
    """Harrell's C of ``score`` for the relapse times (higher score = longer time; 0.5 = chance).

    Parameters
    ----------
    time : array_like, (n,)
        Months.
    score : array_like, (n,)
        Predicted TCP (or any score expected to grow with the time to relapse).
    event : array_like, (n,)
        1 = relapse.

    Returns
    -------
    float
        C in [0, 1]; NaN without a comparable pair.

    Examples
    --------
    >>> concordance([10, 20, 30], [0.1, 0.5, 0.9], [1, 1, 1])
    1.0
    """
    try:
        return float(concordance_index(np.asarray(time, float), np.asarray(score, float), np.asarray(event, int)))
    except ZeroDivisionError:  # no comparable pair (e.g. no relapse at all)
        return float("nan")
