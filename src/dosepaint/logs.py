"""Logging for rule scripts: everything, including the failure, goes to the rule's log file."""

from __future__ import annotations

import logging
import re
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logged(path, *, level=logging.INFO):
    """Send log records and warnings to ``path``; log an exception before re-raising it.

    The log's last line is the job's CPU time (:func:`usage_line`), even when it fails.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("dosepaint")
    except Exception as exc:
        root.error("%s: %s", type(exc).__name__, exc, exc_info=True)
        print(f"dosepaint error: {exc}", file=sys.stderr)
        raise
    finally:
        root.log(max(level, logging.INFO), usage_line())
        root.removeHandler(handler)
        handler.close()


@contextmanager
def timed(seconds: dict, key: str):
    """Add the wall time of the ``with`` block to ``seconds[key]`` (s), even when it raises."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


#: The last line of a job's log: ``benchmarks/pipeline_cost.py`` reads it (:func:`read_usage`).
USAGE_PREFIX = "job usage:"
_USAGE = re.compile(USAGE_PREFIX + r" cpu_s=([0-9.]+) user_s=([0-9.]+) system_s=([0-9.]+) max_rss_mb=([0-9.]+)")


def usage_line() -> str:
    """The CPU time of the process since it started (start-up and imports included) and of the children it
    waited for, and its peak resident memory.

    Snakemake's benchmark files sample a job's processes every 30 s after its first 30 s, so they miss up
    to 30 s of each job's CPU time (the part after the last sample); this line does not, and
    ``benchmarks/pipeline_cost.py`` takes a job's CPU time from it where the log has one.
    """
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime
    rss_mb = max(me.ru_maxrss, kids.ru_maxrss) / 1024  # kB on Linux
    return f"{USAGE_PREFIX} cpu_s={user + system:.2f} user_s={user:.2f} system_s={system:.2f} max_rss_mb={rss_mb:.0f}"


def read_usage(path) -> dict | None:
    """The last :func:`usage_line` of a log file: cpu_s, user_s, system_s (s) and max_rss_mb (MB).

    None when the log has none (written before this line existed, or its job was killed).
    """
    found = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _USAGE.search(line)
            if m:
                found = m
    if found is None:
        return None
    return dict(zip(("cpu_s", "user_s", "system_s", "max_rss_mb"), map(float, found.groups())))
