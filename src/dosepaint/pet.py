"""PET quantification: uptake interval and SUVbw conversion factor (docs/method.md §4).

Pure functions on values already read from the headers (``dosepaint.io.dicom.pet_metadata``
reads them); they know no file format.  pysuv does the same for single DICOM files, but it
reads the files itself, takes injection times of day only and accepts units we must refuse, so
the rules we need (date-times first, midnight, ATTN/DECY required, GML) are written here and
checked against pysuv's factors in the tests.
"""

from __future__ import annotations

import datetime as dt
import math

DAY_S = 86400.0
#: An injection recorded up to this long after the series start is a clock disagreement (kept,
#: decay factor ≈ 1, as pysuv does); anything earlier than this is a scan after midnight.
CLOCK_SLACK_S = 3600.0

#: Corrections an image must carry for its SUV to mean anything.
REQUIRED_CORRECTIONS = ("ATTN", "DECY")


class SuvError(ValueError):
    """An SUV cannot be computed; ``attribute`` names the DICOM attribute at fault."""

    def __init__(self, problem: str, *, attribute: str):
        super().__init__(f"{attribute}: {problem}")
        self.attribute = attribute


def uptake_interval_s(
    *,
    series_date: str | None,
    series_time: str | None,
    start_datetime: str | None = None,
    start_time: str | None = None,
) -> tuple[float, str]:
    """Seconds from injection to series start, and where the injection time came from.

    The rule (docs/method.md §4): RadiopharmaceuticalStartDateTime when present; else
    SeriesDate + RadiopharmaceuticalStartTime, taking the previous day when that would put the
    injection more than an hour after the series start (a scan just after midnight); an injection
    recorded less than an hour after the series start is a clock disagreement and is kept as a
    small negative interval (as pysuv does), said so in the source.  Anonymised exports often
    blank or shift dates independently: when the dates are unusable (absent, ``00000000``) or
    the full date-time gives an interval outside [0, 24 h) while the times of day are
    consistent, the interval is taken from the times of day alone and the source says so.

    Parameters
    ----------
    series_date, series_time : str or None
        ISO date and time of the series start.
    start_datetime : str, optional
        ISO date-time of the injection.
    start_time : str, optional
        ISO time of day of the injection.

    Returns
    -------
    seconds : float
    source : str
        Which attributes gave the injection time (kept in the per-patient metadata).

    Raises
    ------
    SuvError
        No series time, or no injection time at all.
    """
    if not series_time:
        raise SuvError("missing or unreadable: the series start time is needed", attribute="SeriesTime")
    s_time = dt.time.fromisoformat(series_time)
    if start_datetime and series_date:
        series = dt.datetime.combine(dt.date.fromisoformat(series_date), s_time)
        seconds = (series - dt.datetime.fromisoformat(start_datetime)).total_seconds()
        if 0.0 <= seconds < DAY_S:
            return seconds, "RadiopharmaceuticalStartDateTime"
        if -CLOCK_SLACK_S < seconds < 0.0:
            return seconds, "RadiopharmaceuticalStartDateTime (negative: injection after series start, clocks disagree)"
        if not start_time:
            raise SuvError(
                f"gives an uptake interval of {seconds / 3600:.1f} h (outside 0-24 h) and "
                "RadiopharmaceuticalStartTime is absent",
                attribute="RadiopharmaceuticalStartDateTime",
            )
        note = f" (StartDateTime gave {seconds / 3600:.1f} h: dates inconsistent)"
    elif start_datetime and not start_time:
        start_time = dt.datetime.fromisoformat(start_datetime).time().isoformat()
        note = " (of StartDateTime; SeriesDate unusable)"
    else:
        note = "" if series_date else " (SeriesDate unusable)"
    if not start_time:
        raise SuvError(
            "missing: no injection time (RadiopharmaceuticalStartDateTime or RadiopharmaceuticalStartTime)",
            attribute="RadiopharmaceuticalStartTime",
        )
    inj = dt.time.fromisoformat(start_time)
    seconds = _seconds_of_day(s_time) - _seconds_of_day(inj)
    source = "SeriesDate+RadiopharmaceuticalStartTime" + note
    if seconds <= -CLOCK_SLACK_S:
        seconds += DAY_S
        source += " (previous day: crosses midnight)"
    elif seconds < 0:
        source += " (negative: injection after series start, clocks disagree)"
    return seconds, source


def _seconds_of_day(t: dt.time) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


def suv_bw_factor(
    *,
    units: str,
    decay_correction: str,
    corrected_image,
    weight_kg: float | None,
    dose_bq: float | None,
    half_life_s: float | None,
    uptake_s: float | None,
    philips_suv_scale: float | None = None,
) -> float:
    """Factor f with SUVbw = f · pixel value (after RescaleSlope/Intercept).

    - ``BQML``, DecayCorrection ``START``: f = weight[g] / (dose · 2^(−Δt/T½)).
    - ``BQML``, ``ADMIN`` (images decay-corrected to the injection): f = weight[g] / dose.
    - ``GML``: pixel values are already SUVbw (g/mL): f = 1.
    - ``CNTS`` (Philips): f = the private SUV scale factor (7053,1000).
    - Anything else, or an image without attenuation or decay correction: :class:`SuvError`.

    Parameters
    ----------
    units, decay_correction : str
        DICOM Units and DecayCorrection.
    corrected_image : sequence of str
        DICOM CorrectedImage; must hold ATTN and DECY.
    weight_kg, dose_bq, half_life_s : float or None
        PatientWeight (kg), RadionuclideTotalDose (Bq), RadionuclideHalfLife (s).
    uptake_s : float or None
        Injection → series start (s), from :func:`uptake_interval_s`.
    philips_suv_scale : float, optional
        Philips (7053,1000).

    Returns
    -------
    float
        g/mL per pixel unit (1/(Bq/mL)·g/mL for BQML).
    """
    missing = [c for c in REQUIRED_CORRECTIONS if c not in {str(v).upper() for v in corrected_image or ()}]
    if missing:
        raise SuvError(
            f"lacks {' and '.join(missing)} (has {list(corrected_image or [])}); SUV needs an "
            "attenuation- and decay-corrected image",
            attribute="CorrectedImage",
        )
    units = (units or "").upper()
    if units == "GML":
        return 1.0
    if units == "CNTS":
        if philips_suv_scale is None or not philips_suv_scale > 0:
            raise SuvError(
                "Units CNTS need Philips' private SUV scale factor, which is missing or zero",
                attribute="(7053,1000) SUVScaleFactor",
            )
        return float(philips_suv_scale)
    if units != "BQML":
        raise SuvError(f"unsupported Units {units!r} (BQML, GML or Philips CNTS)", attribute="Units")
    if weight_kg is None or not weight_kg > 0:
        raise SuvError("missing or zero", attribute="PatientWeight")
    if dose_bq is None or not dose_bq > 0:
        raise SuvError("missing or zero", attribute="RadionuclideTotalDose")
    decay_correction = (decay_correction or "").upper()
    if decay_correction == "ADMIN":
        return weight_kg * 1000.0 / dose_bq
    if decay_correction != "START":
        raise SuvError(
            f"unsupported DecayCorrection {decay_correction!r} (START or ADMIN)", attribute="DecayCorrection"
        )
    if half_life_s is None or not half_life_s > 0:
        raise SuvError("missing or zero", attribute="RadionuclideHalfLife")
    if uptake_s is None or not math.isfinite(uptake_s):
        raise SuvError(
            "no uptake interval: the injection or series time is missing", attribute="RadiopharmaceuticalStartTime"
        )
    return weight_kg * 1000.0 / (dose_bq * 2.0 ** (-uptake_s / half_life_s))


def suv_factor_from_metadata(meta: dict) -> tuple[float, dict]:
    """:func:`suv_bw_factor` from a :func:`dosepaint.io.dicom.pet_metadata` dict (docs/method.md §4).

    Parameters
    ----------
    meta : dict
        The PET header's SUV attributes (units, decay correction, corrected image, weight, dose, half
        life, series and injection dates and times), as :func:`dosepaint.io.dicom.pet_metadata` gives.

    Returns
    -------
    factor : float
        SUV per stored Bq/mL (g/mL per Bq/mL).
    record : dict
        How it was made, identity-free (the uptake interval, never dates or times).

    Raises
    ------
    SuvError
        Naming the attribute that is missing or unsupported.
    """
    uptake, source = None, None
    if meta["Units"] == "BQML" and meta["DecayCorrection"] == "START":
        uptake, source = uptake_interval_s(
            series_date=meta["SeriesDate"],
            series_time=meta["SeriesTime"],
            start_datetime=meta["RadiopharmaceuticalStartDateTime"],
            start_time=meta["RadiopharmaceuticalStartTime"],
        )
    factor = suv_bw_factor(
        units=meta["Units"],
        decay_correction=meta["DecayCorrection"],
        corrected_image=meta["CorrectedImage"],
        weight_kg=meta["PatientWeight_kg"],
        dose_bq=meta["RadionuclideTotalDose_Bq"],
        half_life_s=meta["RadionuclideHalfLife_s"],
        uptake_s=uptake,
        philips_suv_scale=meta.get("PhilipsSUVScaleFactor"),
    )
    record = {
        k: meta.get(k)
        for k in (
            "Units",
            "DecayCorrection",
            "CorrectedImage",
            "PatientWeight_kg",
            "RadionuclideTotalDose_Bq",
            "RadionuclideHalfLife_s",
            "PhilipsSUVScaleFactor",
        )
    }
    return factor, {**record, "uptake_interval_s": uptake, "injection_time_source": source, "suv_factor": factor}
