"""PET timing helpers (SCIENCE.md §4).  SUV conversion itself is the PET stage's."""

from __future__ import annotations

import datetime as dt


def uptake_interval_s(*, series_datetime: str, start_datetime: str | None = None,
                      start_time: str | None = None) -> tuple[float, str]:
    """Seconds from injection to series start, and where the injection time came from.

    Uses RadiopharmaceuticalStartDateTime when present; otherwise the series
    date + RadiopharmaceuticalStartTime, taking the previous day when that
    would put the injection after the series start (a scan just after midnight).

    Parameters
    ----------
    series_datetime : str
        ISO date-time of the series start.
    start_datetime : str, optional
        ISO date-time of the injection.
    start_time : str, optional
        DICOM TM ``HHMMSS[.ffffff]`` of the injection.
    """
    series = dt.datetime.fromisoformat(series_datetime)
    if start_datetime:
        return (series - dt.datetime.fromisoformat(start_datetime)).total_seconds(), \
            "RadiopharmaceuticalStartDateTime"
    if not start_time:
        raise ValueError("no injection time (RadiopharmaceuticalStartDateTime / StartTime)")
    t = str(start_time).split(".")[0].ljust(6, "0")
    inj = dt.datetime.combine(series.date(), dt.time(int(t[:2]), int(t[2:4]), int(t[4:6])))
    source = "SeriesDate+RadiopharmaceuticalStartTime"
    if inj > series:
        inj -= dt.timedelta(days=1)
        source += " (previous day: crosses midnight)"
    return (series - inj).total_seconds(), source
