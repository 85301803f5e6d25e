"""Logging for rule scripts: everything, including the failure, goes to the rule's log file."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logged(path, *, level=logging.INFO):
    """Send log records and warnings to ``path``; log an exception before re-raising it."""
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
