"""pyRadPlan's ray validation without the text of every beamlet it never shows.

pyRadPlan 0.5's ``Ray`` field validators call pydantic's handler as ``handler(v, info)``: the second
argument is pydantic-core's *error location*, which it converts to text at once, so every validation
of a ray's positions formats its ``ValidationInfo`` — the ray's fields validated so far, i.e. the
``repr`` of each of its beamlets (pydantic's generic model repr, NumPy's array printing inside).
pyRadPlan validates every ray when it places the spots (``generate_stf``) and again when it traces
them (``trace_cubes``), so the text is built for every beamlet several times per calculation and
thrown away: 17 % of a dose-influence job's CPU time (SYN003 of the default cohort: 65.1 → 54.3 CPU s,
means of 3 runs, spot placement 7.8 → 3.0 s, the influence bit-identical; ``benchmarks/stage_speedups.py``).
The text is never shown, so :func:`short_beamlet_reprs` makes the beamlets' repr a class name within
the block; no other library offers a way around it (it is in how pyRadPlan calls pydantic; the fix
upstream is ``handler(v)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def _short_repr(self) -> str:
    return f"{type(self).__name__}(…)"


@contextmanager
def short_beamlet_reprs() -> Iterator[bool]:
    """Within the block, pyRadPlan's beamlets (``pyRadPlan.stf.Beamlet`` and its subclasses) print as
    ``IonSpot(…)``; their previous repr is restored on exit. Nothing pyRadPlan computes changes (a repr
    is text only). Yields whether the swap was made (False where the installed pyRadPlan has no
    ``Beamlet`` model or gives it a repr of its own).
    """
    try:
        from pydantic import BaseModel
        from pyRadPlan.stf._beamlet import Beamlet
    except ImportError:
        log.debug("pyRadPlan has no stf._beamlet.Beamlet: its beamlets' repr kept")
        yield False
        return
    if Beamlet.__repr__ is _short_repr:  # nested: the outer block restores it
        yield True
        return
    if Beamlet.__repr__ is not BaseModel.__repr__:
        log.debug("pyRadPlan's Beamlet has a repr of its own: kept")
        yield False
        return
    Beamlet.__repr__ = _short_repr
    try:
        yield True
    finally:
        del Beamlet.__repr__  # pydantic's, inherited, again
